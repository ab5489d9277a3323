"""`builtin:` paths: the arithmetic miniature as a training task, with no downloads.

    config.policy.path = "builtin:arith"       the cached SFT warm start (configs/arith_sft.py)
    config.policy.path = "builtin:arith_random"  the same model class, random weights (smoke tests)
    config.prm.path    = "builtin:scripted"    the scripted PRM with the paper's weaknesses
    config.prm.path    = "builtin:arith_learned"  the learned PRM (configs/arith_prm.py, cached)
    config.prm.path    = "/a/dir"              a PRM trained by experiments/train_prm.py
    config.data.train_path = "builtin:arith"   training problems (every one has its answer)
    config.data.eval_paths = ("builtin:arith",)  held-out problems

Which prompts the verifiable reward sees is the reward config's business
(`fraction`), so the same data serves PRM-only, VR-only and PRM+VR runs, and
the monitors can report true accuracy on every rollout.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from purejax.data import Prompt
from purejax.tasks import arith, scripted_prm
from purejax.tasks.scripted_prm import ScriptedPRM
from purejax.tasks.tokenizer import build_tokenizer
from purejax.tasks.warmstart import load_sft_config, model_config, warm_start

TRAIN_PROBLEMS = 4096
SFT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "arith_sft.py"
)


class ScriptedStepRewards:
    """Adapts ScriptedPRM to the `prm` reward source (`step_rewards(tokens)`).

    Like a learned PRM it reads the prompt: each row's problem is found from its
    decoded question, so steps are judged in the context of the question asked.
    """

    def __init__(self, tokenizer, problems: list[arith.Problem], seed: int = 0):
        self.prm = ScriptedPRM(tokenizer, seed=seed)
        self.tokenizer = tokenizer
        self.by_prompt = {p.prompt: p for p in problems}

    def step_rewards(self, tokens):
        ids = np.where(np.asarray(tokens.prompt_mask, bool), np.asarray(tokens.prompt_ids), -1)
        prompts = self.tokenizer.batch_decode([row[row >= 0] for row in ids], skip_special_tokens=True)
        problems = [self.by_prompt.get(p) for p in prompts]
        return self.prm(tokens.response_ids, tokens.response_mask, tokens.step_end, problems)


def arith_warm_start_path(show_progress: bool = True) -> str:
    """The cached warm-start policy directory (trained first if absent)."""
    return warm_start(load_sft_config(SFT_CONFIG), progress=show_progress).path


def learned_prm_scorer(path: str, tokenizer, config):
    """A PRMScorer over the PRM checkpoint at `path` ("builtin:arith_learned" = the cached one).

    The PRM must share the policy's tokenizer (same ids); it does when trained by
    experiments/train_prm.py from the warm start.
    """
    from purejax import sharding
    from purejax.models import load_pretrained
    from purejax.prm_data import step_token_id
    from purejax.rewards.prm import scorer_for

    if path == "builtin:arith_learned":
        from purejax.tasks.arith_prm import learned_prm

        path = learned_prm()[0]
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"config.prm.path={path!r}: not a directory; train one with "
            f"`python -m experiments.train_prm --config configs/arith_prm.py --workdir DIR` and pass DIR/prm."
        )
    model = load_pretrained(path, dtype=jnp.dtype(config.prm.dtype))
    if model.config.vocab_size != len(tokenizer):
        raise ValueError(
            f"config.prm.path={path!r} has vocab_size {model.config.vocab_size} but the policy's tokenizer "
            f"has {len(tokenizer)} tokens; the PRM must be trained on the policy's tokenizer."
        )
    partitioner = sharding.from_config(config)
    step_id = step_token_id(tokenizer, config.prm.step_token)
    return scorer_for(model, step_id, partitioner, int(config.prm.batch_size))


def _prompts(split: str, n: int, seed: int, spec: arith.ArithSpec) -> list[Prompt]:
    return [
        Prompt(f"arith/{split}/{i}", p.question, p.truth)
        for i, p in enumerate(arith.make_problems(split, n, seed=seed, spec=spec))
    ]


def build_task(config, show_progress: bool = True):
    from transformers import AutoTokenizer

    from purejax.models import load_pretrained
    from purejax.trainer import Task

    policies = ("builtin:arith", "builtin:arith_random")
    for field, value, allowed in (
        ("policy.path", config.policy.path, policies),
        ("data.train_path", config.data.train_path, ("builtin:arith",)),
    ):
        if value not in allowed:
            raise ValueError(f"config.{field}={value!r}: a builtin run needs one of {allowed}.")
    sft_config = load_sft_config(SFT_CONFIG)
    spec = arith.ArithSpec(**dict(sft_config.task))
    dtype = jnp.dtype(config.policy.dtype)
    if config.policy.path == "builtin:arith":
        start = warm_start(sft_config, progress=show_progress)
        policy = load_pretrained(start.path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(start.path)
    else:
        from purejax.models import init_model

        tokenizer = build_tokenizer(
            sft_config.tokenizer.vocab_size, sft_config.tokenizer.problems, seed=sft_config.seed, spec=spec
        )
        policy = init_model(model_config(sft_config, tokenizer), seed=int(config.seed), dtype=dtype)
    train_problems = arith.make_problems("train", TRAIN_PROBLEMS, seed=int(config.seed), spec=spec)
    prm = None
    if any(source.type == "prm" for source in config.rewards.values()):
        if config.prm.path == scripted_prm.PATH:
            prm = ScriptedStepRewards(tokenizer, train_problems, seed=int(config.seed))
        elif config.prm.path == "builtin:arith_learned" or not config.prm.path.startswith("builtin:"):
            prm = learned_prm_scorer(config.prm.path, tokenizer, config)
        else:
            raise ValueError(
                f"config.prm.path={config.prm.path!r}: the builtin task's PRM is {scripted_prm.PATH!r}, "
                f"'builtin:arith_learned' or a local PRM directory."
            )
    train = [Prompt(f"arith/train/{i}", p.question, p.truth) for i, p in enumerate(train_problems)]
    heldout = _prompts("heldout", int(config.eval.num_prompts) or 256, seed=0, spec=spec)
    return Task(policy, tokenizer, train, heldout, prm)
