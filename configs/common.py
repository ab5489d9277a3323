"""Reusable config fragments; each returns a fresh ConfigDict (or fills one in).

Experiment configs start from `base()` (every field at its PURE_SPEC §7 default)
and add reward sources from here, so a field's default lives in one place:
`purejax.config.defaults()` for sections, the source registry for reward params.
"""

import ml_collections

from purejax import config as config_lib

# The paper's models (PURE_SPEC §7); paths are resolved by the training pipeline.
POLICY = "Qwen/Qwen2.5-Math-7B"
PRM = "jinachris/PURE-PRM-7B"


def base(lr: float = 1e-6, credit: str = "soft_min") -> ml_collections.ConfigDict:
    """All sections at their defaults, with the paper's policy and PRM, `lr` and `credit`."""
    c = config_lib.defaults()
    c.policy.path = POLICY
    c.prm.path = PRM
    c.optim.lr = lr
    c.advantage.credit = credit
    return c


def prm_reward(weight: float = 1.0) -> ml_collections.ConfigDict:
    """PURE's PRM on every prompt: step rewards sharing the credit-assignment baseline."""
    return config_lib.reward_source("prm", weight=weight, applies_to="all", level="step", baseline="shared")


def vr_reward(
    weight: float = 1.0, baseline: str = "rloo", fraction: float = 1.0
) -> ml_collections.ConfigDict:
    """The verifiable reward on prompts with a ground truth.

    baseline 'rloo': its own plain RLOO, as the paper describes; 'shared': added
    on the last valid token and sharing the token baseline, as the verl code does.
    """
    return config_lib.reward_source(
        "verifiable",
        weight=weight,
        applies_to="with_answer",
        fraction=fraction,
        level="sequence",
        baseline=baseline,
    )


def finish(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Validates and locks an experiment config (what every get_config returns)."""
    config_lib.validate(c)
    c.lock()
    return c
