"""One call from step rewards to token advantages, for the common PURE settings.

    step rewards --(soft-min transform)--> --(token_rate / step_mean baseline)-->
    --(credit: sum / min / worst_step / all_token_min)--> returns (+ dense rewards: sum form,
      or inside the running min for all_token_min)
    --(token_mean / rloo / grpo / dr_grpo baseline)--> (+ RLOO of own-baseline sequence rewards)
    --(zero_step_ends: 0 on step ends)--> --(whitening over the batch)--> advantages

Dense rewards are what the official code adds to the token scores AFTER the
soft-min transform (verl: the VR on the last token and the KL penalty), so the
softmax never re-weights them.

Built only from the public pieces in `credit`, `advantages` and `reductions`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from purejax import _checks
from purejax import advantages as adv_lib
from purejax import credit
from purejax import reductions

BASELINES = ("token_mean", "token_rate", "step_mean", "rloo", "grpo", "dr_grpo", "none")
_REWARD_BASELINES = {"token_rate": adv_lib.token_rate_rewards, "step_mean": adv_lib.step_mean_rewards}
_SEQUENCE_BASELINES = {
    "rloo": adv_lib.rloo_advantages,
    "grpo": adv_lib.grpo_advantages,
    "dr_grpo": adv_lib.dr_grpo_advantages,
}


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
    """How step rewards become advantages. Defaults follow the paper (PURE_SPEC §3, §5).

    credit: one of credit.CREDIT_MODES; `soft_min` is the paper's default.
    temperature: T of `soft_min` (> 0).
    discount: gamma of the sum-form returns, in (0, 1].
    baseline: one of BASELINES. `token_mean` / `rloo` / `grpo` / `dr_grpo` act on
      returns (the sequence ones on the return of the first token, i.e. the
      response's whole credited value); `token_rate` / `step_mean` act on the
      (transformed) step rewards before the return; `none` uses returns as they are
      (REINFORCE++ = `none` + whitening).
    whiten: whiten the advantages over all valid tokens of the batch (official default).
    zero_step_ends: give step-end tokens (the last valid token included) return and
      advantage 0, so they get no policy gradient, and whiten over the tokens whose
      advantage is not 0 (`reductions.masked_whiten_nonzero`), leaving those at 0:
      the OpenRLHF branch's default (`--nomask_separator_adv` not set).
    """

    credit: str = "soft_min"
    temperature: float = 0.1
    discount: float = 1.0
    baseline: str = "token_mean"
    whiten: bool = True
    zero_step_ends: bool = False

    def __post_init__(self):
        fn = "AdvantageConfig"
        _checks.choice(fn, "credit", self.credit, credit.CREDIT_MODES)
        _checks.choice(fn, "baseline", self.baseline, BASELINES)
        if not self.temperature > 0:
            raise ValueError(f"{fn}: `temperature` must be > 0, got {self.temperature}.")
        if not 0 < self.discount <= 1:
            raise ValueError(f"{fn}: `discount` must be in (0, 1], got {self.discount}.")
        for name in ("whiten", "zero_step_ends"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{fn}: `{name}` must be True or False, got {getattr(self, name)!r}.")

    @classmethod
    def from_config(cls, config: Any) -> "AdvantageConfig":
        """From an AdvantageConfig, a mapping or an ml_collections.ConfigDict section."""
        if isinstance(config, cls):
            return config
        values = dict(config.items()) if hasattr(config, "items") else dict(config)
        fields = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"advantage config: unknown key {key!r}; allowed keys are {', '.join(fields)}.{hint}"
                )
        return cls(**values)


class Advantages(NamedTuple):
    advantages: jnp.ndarray  # float[B, T], what the policy loss uses
    returns: jnp.ndarray  # float[B, T], credited returns before any baseline (for logging)


def pure_advantages(
    step_r_bt,
    step_end_bt,
    mask_bt,
    group_size: int,
    config: Any = AdvantageConfig(),
    seq_r_b=None,
    dense_r_bt=None,
) -> Advantages:
    """Token advantages for a batch of B = P * group_size responses, groups contiguous.

    Args:
      step_r_bt: float[B, T] process rewards on step ends (0 elsewhere): what the
        soft-min transform and the token_rate / step_mean baselines act on.
      step_end_bt: bool or 0/1 [B, T] step ends (e.g. vmapped `step_end_mask`).
      mask_bt: bool or 0/1 [B, T] valid response tokens.
      group_size: K responses per prompt; rows [p K, (p + 1) K) share prompt p.
      config: an AdvantageConfig, or a mapping / ConfigDict with its fields.
      seq_r_b: optional float[B] sequence rewards with their own RLOO baseline (the
        paper's VR), added to the advantages of every valid token.
      dense_r_bt: optional float[B, T] per-token rewards added after the transform and
        the reward baselines: the KL penalty, and a sequence reward sharing the token
        baseline (verl's VR) on the last valid token. For `all_token_min` they enter
        the running minimum, as verl's strict min-form takes min over (r + dense); for
        every other mode their sum-form returns are added (`min` and `worst_step` have
        no official code; sum form keeps the KL a per-token cost there).

    Returns:
      Advantages(advantages, returns), each float[B, T], 0 on padding.
    """
    config = AdvantageConfig.from_config(config)
    fn = "pure_advantages"
    _checks.rank(fn, step_r_bt=(step_r_bt, 2), step_end_bt=(step_end_bt, 2), mask_bt=(mask_bt, 2))
    _checks.floating(fn, step_r_bt=step_r_bt)
    _checks.same_shape(fn, step_r_bt=step_r_bt, step_end_bt=step_end_bt, mask_bt=mask_bt)
    batch = step_r_bt.shape[0]
    if not isinstance(group_size, int) or group_size < 1 or batch % group_size:
        raise ValueError(
            f"{fn}: `group_size` must be a positive int dividing the batch size {batch}, got {group_size!r}."
        )
    if seq_r_b is not None:
        _checks.rank(fn, seq_r_b=(seq_r_b, 1))
        if seq_r_b.shape[0] != batch:
            raise ValueError(f"{fn}: `seq_r_b` must have shape ({batch},), got {seq_r_b.shape}.")
    if dense_r_bt is not None:
        _checks.same_shape(fn, step_r_bt=step_r_bt, dense_r_bt=dense_r_bt)
    return _pure_advantages(
        step_r_bt, step_end_bt, mask_bt, seq_r_b, dense_r_bt, group_size=group_size, config=config
    )


@functools.partial(jax.jit, static_argnames=("group_size", "config"))
def _pure_advantages(step_r_bt, step_end_bt, mask_bt, seq_r_b, dense_r_bt, *, group_size, config):
    batch, width = step_r_bt.shape
    groups = batch // group_size
    end_bt = jnp.asarray(step_end_bt).astype(bool) & jnp.asarray(mask_bt).astype(bool)
    valid_bt = jnp.asarray(mask_bt).astype(bool)
    dtype = step_r_bt.dtype

    r_bt = step_r_bt
    mode = config.credit
    if mode == "soft_min":
        # The transform is what the baselines and the sum see (PURE_SPEC §3, §5).
        r_bt = jax.vmap(credit.soft_min_rewards, (0, 0, None))(r_bt, end_bt, config.temperature)
        mode = "sum"
    if config.baseline in _REWARD_BASELINES:
        to_groups = lambda x: x.reshape(groups, group_size, width)
        r_bt = jax.vmap(_REWARD_BASELINES[config.baseline])(
            to_groups(r_bt), to_groups(end_bt), to_groups(valid_bt)
        ).reshape(batch, width)
    if dense_r_bt is not None and mode == "all_token_min":
        # verl's strict min-form minimises the whole token score: KL and VR inside the min.
        r_bt = r_bt + dense_r_bt.astype(dtype)
        dense_r_bt = None
    g_bt = jax.vmap(functools.partial(credit.returns, mode=mode, discount=config.discount))(
        r_bt, end_bt, valid_bt
    )
    if dense_r_bt is not None:
        g_bt = g_bt + jax.vmap(credit.sum_form_returns, (0, 0, None))(
            dense_r_bt.astype(dtype), valid_bt, config.discount
        )

    m_bt = valid_bt.astype(dtype)
    if config.baseline == "token_mean":
        a_bt = jax.vmap(adv_lib.token_mean_advantages)(
            g_bt.reshape(groups, group_size, width), valid_bt.reshape(groups, group_size, width)
        ).reshape(batch, width)
    elif config.baseline in _SEQUENCE_BASELINES:
        first_valid_b = jnp.argmax(valid_bt, axis=1)
        value_b = jnp.take_along_axis(g_bt, first_valid_b[:, None], axis=1)[:, 0]
        a_b = jax.vmap(_SEQUENCE_BASELINES[config.baseline])(value_b.reshape(groups, group_size)).reshape(
            batch
        )
        a_bt = a_b[:, None] * m_bt
    else:
        a_bt = g_bt * m_bt
    if seq_r_b is not None:
        rloo_b = jax.vmap(adv_lib.rloo_advantages)(seq_r_b.astype(dtype).reshape(groups, group_size)).reshape(
            batch
        )
        a_bt = a_bt + rloo_b[:, None] * m_bt
    if config.zero_step_ends:
        # OpenRLHF zeroes the returns on step ends, so the separators get no gradient.
        g_bt = jnp.where(end_bt, 0.0, g_bt)
        a_bt = jnp.where(end_bt, 0.0, a_bt)
        if config.whiten:
            a_bt = reductions.masked_whiten_nonzero(a_bt, valid_bt)
    elif config.whiten:
        a_bt = reductions.masked_whiten(a_bt, valid_bt)
    return Advantages(a_bt, g_bt)
