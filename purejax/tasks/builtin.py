"""`builtin:` paths: the arithmetic miniature as a training task, with no downloads.

    config.policy.path = "builtin:arith"       the cached SFT warm start (configs/arith_sft.py)
    config.policy.path = "builtin:arith@2"     the same SFT with seed 2 (how the README measures
                                               the spread over warm starts)
    config.policy.path = "builtin:arith_guess"   the SFT with 2% answers without work (and @N)
    config.policy.path = "builtin:arith_merged"  the SFT with 10% solutions in one giant step (and @N)
    config.policy.path = "builtin:arith_random"  the same model class, random weights (smoke tests)
    config.prm.path    = "builtin:arith_learned"  the learned PRM (configs/arith_prm.py, cached)
    config.prm.path    = "/a/dir"              a PRM trained by experiments/train_prm.py
    config.rewards.prm = reward_source("scripted_prm")  the scripted PRM with the paper's
                                               weaknesses, a host-side step source (no prm.path)
    config.data.train_path = "builtin:arith"   training problems (every one has its answer)
    config.data.eval_paths = ("builtin:arith",)  held-out problems

Which prompts the verifiable reward sees is the reward config's business
(`fraction`), so the same data serves PRM-only, VR-only and PRM+VR runs, and
the monitors can report true accuracy on every rollout.
"""

from __future__ import annotations

import os

import jax.numpy as jnp

from purejax.data import Prompt
from purejax.rewards.prm import scorer_for
from purejax.rewards.sources import scorers_needed
from purejax.task import Task, step_token_id
from purejax.tasks import arith
from purejax.tasks.scripted_prm import ScriptedStepRewards
from purejax.tasks.tokenizer import build_tokenizer
from purejax.tasks.warmstart import SFT_CONFIG, load_sft_config, model_config, warm_start

PREFIX = "builtin:"
TRAIN_PROBLEMS = 4096
LEARNED_PRM = "builtin:arith_learned"
# The warm starts a policy path names, as overrides of the SFT config (configs/arith_sft.py).
WARM_STARTS = {
    "builtin:arith": (),
    # 2% of the SFT traces answer without work ("The answer is \\boxed{17}."), as the paper's base
    # models sometimes do ("Thank you.", an empty answer): the answer the scripted PRM over-rates
    # (weakness 2) is then in the policy's support, where PRM-only credit can find it, as the
    # paper's runs found theirs (PURE_SPEC §8.2). configs/compare_credit.py starts from it.
    "builtin:arith_guess": ("data.mix.guess=0.02",),
    # 10% of the SFT traces write the whole solution as one step, its lines joined by "\n", as
    # the paper's base models sometimes merge their reasoning: the single giant step the
    # step_mean baseline drives answers toward (PURE_SPEC §8.4) is then in the policy's support.
    "builtin:arith_merged": ("data.mix.merged=0.1",),
}


def warm_start_seed(path: str) -> int:
    """The SFT seed a `builtin:arith[_guess|_merged][@N]` policy path names (0 without `@N`)."""
    _, _, seed = path.partition("@")
    if not seed:
        return 0
    if not seed.isdigit():
        raise ValueError(
            f"config.policy.path={path!r}: after '@' comes the warm start's SFT seed, a non-negative "
            "integer (e.g. 'builtin:arith@2')."
        )
    return int(seed)


def sft_config_for(policy_path: str):
    """The SFT config of the warm start a `builtin:` policy path names (WARM_STARTS, `@N` seed).

    `builtin:arith_random` has no warm start; its tokenizer is the default SFT config's.
    """
    name = policy_path.partition("@")[0]
    seed = warm_start_seed(policy_path) if name in WARM_STARTS else 0
    return load_sft_config(SFT_CONFIG, WARM_STARTS.get(name, ()) + ((f"seed={seed}",) if seed else ()))


def arith_warm_start_path(show_progress: bool = True) -> str:
    """The cached warm-start policy directory (trained first if absent)."""
    return warm_start(load_sft_config(SFT_CONFIG), progress=show_progress).path


def learned_prm_scorer(path: str, tokenizer, config):
    """A PRMScorer over the PRM checkpoint at `path` (LEARNED_PRM = the cached one).

    The PRM must share the policy's tokenizer (same ids); it does when trained by
    experiments/train_prm.py from the warm start.
    """
    from purejax import sharding
    from purejax.models import load_pretrained
    from purejax.tasks.arith_prm import learned_prm

    if path == LEARNED_PRM:
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


def build_task(config, show_progress: bool = True) -> Task:
    """The miniature's policy, tokenizer, problems and the scorers its reward sources need."""
    from transformers import AutoTokenizer

    from purejax.models import init_model, load_pretrained

    policies = (*WARM_STARTS, *(f"{p}@N" for p in WARM_STARTS), "builtin:arith_random")
    policy_path = config.policy.path.partition("@")[0] + ("@N" if "@" in config.policy.path else "")
    for field, value, allowed in (
        ("policy.path", policy_path, policies),
        ("data.train_path", config.data.train_path, ("builtin:arith",)),
    ):
        if value not in allowed:
            raise ValueError(f"config.{field}={value!r}: a builtin run needs one of {allowed}.")
    sft_config = sft_config_for(config.policy.path)
    spec = arith.ArithSpec(**dict(sft_config.task))
    dtype = jnp.dtype(config.policy.dtype)
    if policy_path != "builtin:arith_random":
        start = warm_start(sft_config, progress=show_progress)
        policy = load_pretrained(start.path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(start.path)
    else:
        tokenizer = build_tokenizer(
            sft_config.tokenizer.vocab_size, sft_config.tokenizer.problems, seed=sft_config.seed, spec=spec
        )
        policy = init_model(model_config(sft_config, tokenizer), seed=int(config.seed), dtype=dtype)
    train_problems = arith.make_problems("train", TRAIN_PROBLEMS, seed=int(config.seed), spec=spec)
    scorers = {}
    needed = scorers_needed(config.rewards)
    if "scripted_prm" in needed:
        scorers["scripted_prm"] = ScriptedStepRewards(tokenizer, train_problems, seed=int(config.seed))
    if "prm" in needed:  # a learned PRM: the cached one or a directory from experiments/train_prm.py
        if config.prm.path.startswith(PREFIX) and config.prm.path != LEARNED_PRM:
            raise ValueError(
                f"config.prm.path={config.prm.path!r}: the builtin task's learned PRM is {LEARNED_PRM!r} "
                "or a local PRM directory (the scripted PRM is the 'scripted_prm' reward source)."
            )
        scorers["prm"] = learned_prm_scorer(config.prm.path, tokenizer, config)
    train = [Prompt(f"arith/train/{i}", p.question, p.truth) for i, p in enumerate(train_problems)]
    heldout = _prompts("heldout", int(config.eval.num_prompts) or 256, seed=0, spec=spec)
    return Task(policy, tokenizer, train, heldout, scorers)
