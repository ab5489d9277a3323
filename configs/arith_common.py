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
    # Sampling temperature 0.7, not the paper's 1.0: a 2-layer, d=64 policy sampled at T=1
    # makes arithmetic slips a 7B model does not (sampled accuracy 0.17 against 0.45 greedy;
    # at 0.7 it is ~0.27), and those slips are most of what RL at T=1 then learns to avoid,
    # not the greedy policy's mistakes. Measured (100 steps, 1024 held-out prompts):
    # +5.1 points at T=1, +6.9 at T=0.7; with 4 minibatches +6.7 / +8.2.
    c.rollout.temperature = 0.7
    # Four gradient steps per rollout (PPO minibatches) instead of the paper's one: the same
    # samples, more learning per CPU second.
    c.ppo.minibatches = 4
    # 1024 held-out problems: the standard error of a greedy accuracy is 1.5 points (3.1 at 256).
    c.eval.num_prompts = 1024
    c.eval.batch_size = 128
    c.eval.max_new_tokens = 64
    c.total_steps = 100
    c.eval_every = 25
    c.checkpoint_every = 25
    c.logging.sample_every = 10
    c.logging.tensorboard = False
    return c
