"""The arithmetic miniature's shared settings (purejax/tasks/builtin.py): no downloads, 2 CPU cores."""

import ml_collections

from configs import common
from purejax.tasks.arith import PROMPT_TEMPLATE


def arith_base(credit: str = "min") -> ml_collections.ConfigDict:
    """The warm-started tiny policy on arithmetic problems, scored by the scripted PRM."""
    c = common.base(lr=3e-5, credit=credit)
    c.policy.path = "builtin:arith"
    c.policy.dtype = "float32"
    c.prm.path = "builtin:scripted"
    c.prm.dtype = "float32"
    c.data.train_path = "builtin:arith"
    c.data.eval_names = ("arith_heldout",)
    c.data.eval_paths = ("builtin:arith",)
    c.data.prompt_template = PROMPT_TEMPLATE
    c.rollout.prompts_per_step = 16
    c.rollout.samples_per_prompt = 8
    c.rollout.max_prompt_len = 32
    c.rollout.max_new_tokens = 64
    c.eval.num_prompts = 256
    c.eval.batch_size = 128
    c.eval.max_new_tokens = 64
    c.total_steps = 100
    c.eval_every = 25
    c.checkpoint_every = 25
    c.logging.sample_every = 10
    c.logging.tensorboard = False
    return c
