"""Baselines and advantage estimators (PURE_SPEC §5).

The PURE baselines compare a response with the other K-1 responses to the same
prompt, so they take one GROUP, shaped [K, T] (vmap over prompts). Two act on
returns (`token_mean`), two on step rewards before the return is taken
(`token_rate`, `step_mean`). Sequence-level estimators (RLOO, GRPO, Dr. GRPO)
take one group's rewards [K]. GAE takes one sequence [T].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purejax import _checks
from purejax import credit


def _check_group(fn: str, x_kt, **masks) -> None:
    _checks.rank(fn, **{"x_kt": (x_kt, 2)}, **{n: (m, 2) for n, m in masks.items()})
    _checks.floating(fn, x_kt=x_kt)
    _checks.mask(fn, **masks)
    _checks.same_shape(fn, x_kt=x_kt, **masks)


def _leave_one_out_sum(x_k) -> jnp.ndarray:
    """sum_{j != i} x_j for each i."""
    return jnp.sum(x_k, axis=0, keepdims=True) - x_k


def token_mean_advantages(g_kt, mask_kt) -> jnp.ndarray:
    """verl / paper: A_i,t = (G_i,t - b_i) m_i,t, b_i = sum_{k!=i} sum_t G_k,t / ((K-1) N).

    N is the padded width, as in the official code (not the valid length).

    Args:
      g_kt: float[K, T] returns of one group.
      mask_kt: bool or 0/1 [K, T].

    Returns:
      float[K, T] advantages.
    """
    _check_group("token_mean_advantages", g_kt, mask_kt=mask_kt)
    k, n = g_kt.shape
    m_kt = jnp.asarray(mask_kt).astype(bool).astype(g_kt.dtype)
    total_k = jnp.sum(g_kt * m_kt, axis=1)
    baseline_k = _leave_one_out_sum(total_k) / (max(k - 1, 1) * n)
    return (g_kt - baseline_k[:, None]) * m_kt


def step_lengths(step_end_t, mask_t) -> jnp.ndarray:
    """int32[T]: at each step end, the number of valid tokens in its step; 0 elsewhere."""
    end_t = jnp.asarray(step_end_t).astype(bool) & jnp.asarray(mask_t).astype(bool)
    valid_so_far_t = jnp.cumsum(jnp.asarray(mask_t).astype(bool).astype(jnp.int32))
    # Valid tokens counted up to the previous step end (exclusive running max of positions).
    t = jnp.arange(end_t.shape[0])
    prev_end_t = jax.lax.cummax(jnp.where(end_t, t, -1))
    prev_end_t = jnp.concatenate([jnp.array([-1]), prev_end_t[:-1]])
    before_t = jnp.where(prev_end_t >= 0, valid_so_far_t[jnp.maximum(prev_end_t, 0)], 0)
    return jnp.where(end_t, valid_so_far_t - before_t, 0)


def token_rate_rewards(r_kt, step_end_kt, mask_kt) -> jnp.ndarray:
    """OpenRLHF's PURE script: subtract b_i x (tokens in the step) at each step end.

    b_i = sum_{k!=i} R_k / sum_{k!=i} L_k, with R_k the summed step rewards and L_k
    the full response length: the other responses' reward per token. The tokens of
    a step are counted WITHOUT its step-end token (`step_lengths` - 1), as OpenRLHF's
    `num_tokens_per_step` does, while L_k counts every token; so the baselines of a
    response do not add up to b_i L_i (they fall short by b_i x its number of steps).

    Args:
      r_kt: float[K, T] step rewards (transformed, e.g. soft-min r*) on step ends.
      step_end_kt, mask_kt: bool or 0/1 [K, T].

    Returns:
      float[K, T] baselined step rewards; take returns of them afterwards.
    """
    _check_group("token_rate_rewards", r_kt, step_end_kt=step_end_kt, mask_kt=mask_kt)
    end_kt = jnp.asarray(step_end_kt).astype(bool) & jnp.asarray(mask_kt).astype(bool)
    reward_k = jnp.sum(jnp.where(end_kt, r_kt, 0.0), axis=1)
    length_k = jnp.sum(jnp.asarray(mask_kt).astype(bool), axis=1).astype(r_kt.dtype)
    rate_k = _leave_one_out_sum(reward_k) / jnp.maximum(_leave_one_out_sum(length_k), 1.0)
    # Step ends have step_lengths >= 1, so the count without the step end is >= 0.
    tokens_kt = (jax.vmap(step_lengths)(end_kt, mask_kt) - 1).astype(r_kt.dtype)
    return jnp.where(end_kt, r_kt - rate_k[:, None] * tokens_kt, 0.0)


def step_mean_rewards(r_kt, step_end_kt, mask_kt) -> jnp.ndarray:
    """Paper Eq. 8: subtract mean_{k!=i} (R_k / steps_k) at each step end.

    Responses without steps are left out of the others' mean. Known to reward
    answers in one giant step (one subtraction instead of many); kept because it
    reproduces that documented hacking mode.

    Args:
      r_kt: float[K, T] step rewards on step ends.
      step_end_kt, mask_kt: bool or 0/1 [K, T].

    Returns:
      float[K, T] baselined step rewards; take returns of them afterwards.
    """
    _check_group("step_mean_rewards", r_kt, step_end_kt=step_end_kt, mask_kt=mask_kt)
    end_kt = jnp.asarray(step_end_kt).astype(bool) & jnp.asarray(mask_kt).astype(bool)
    steps_k = jnp.sum(end_kt, axis=1).astype(r_kt.dtype)
    has_steps_k = (steps_k > 0).astype(r_kt.dtype)
    per_step_k = jnp.sum(jnp.where(end_kt, r_kt, 0.0), axis=1) / jnp.maximum(steps_k, 1.0)
    baseline_k = _leave_one_out_sum(per_step_k * has_steps_k) / jnp.maximum(
        _leave_one_out_sum(has_steps_k), 1.0
    )
    return jnp.where(end_kt, r_kt - baseline_k[:, None], 0.0)


def _check_seq_rewards(fn: str, r_k) -> None:
    _checks.rank(fn, r_k=(r_k, 1))
    _checks.floating(fn, r_k=r_k)


def rloo_advantages(r_k) -> jnp.ndarray:
    """RLOO (Ahmadian et al. 2024): A_i = R_i - mean_{k!=i} R_k, for one group's rewards [K]."""
    _check_seq_rewards("rloo_advantages", r_k)
    shifted_k = r_k - r_k[0]
    return shifted_k - _leave_one_out_sum(shifted_k) / max(r_k.shape[0] - 1, 1)


def _centered(r_k) -> jnp.ndarray:
    """R - mean R, exactly 0 for equal rewards (a float mean of equal values is not).

    Without the shift, 8 rewards of 0.7 leave ~6e-8 after centring, which GRPO's
    division by (std + 1e-6) inflates to a spurious advantage of ~0.06.
    """
    shifted_k = r_k - r_k[0]
    return shifted_k - jnp.mean(shifted_k)


def grpo_advantages(r_k, eps: float = 1e-6) -> jnp.ndarray:
    """GRPO (Shao et al. 2024): A_i = (R_i - mean R) / (std R + eps), std with Bessel's correction."""
    _check_seq_rewards("grpo_advantages", r_k)
    centered_k = _centered(r_k)
    k = r_k.shape[0]
    std = jnp.sqrt(jnp.sum(jnp.square(centered_k)) / max(k - 1, 1))
    return centered_k / (std + eps)


def dr_grpo_advantages(r_k) -> jnp.ndarray:
    """Dr. GRPO (Liu et al. 2025): A_i = R_i - mean R (no std division)."""
    _check_seq_rewards("dr_grpo_advantages", r_k)
    return _centered(r_k)


def gae_advantages(r_t, v_t, mask_t, discount=1.0, lambda_=0.95) -> tuple[jnp.ndarray, jnp.ndarray]:
    """GAE (Schulman et al. 2016) for one response with a critic, token-level.

        delta_t = r_t + gamma v_{t+1} m_{t+1} - v_t,  A_t = delta_t + gamma lambda A_{t+1}

    The value after the last valid token is 0 (the episode ends there).

    Args:
      r_t: float[T] token rewards. v_t: float[T] critic values. mask_t: bool or 0/1 [T].

    Returns:
      (advantages, returns = advantages + v), each float[T] and 0 on padding.
    """
    fn = "gae_advantages"
    _checks.rank(fn, r_t=(r_t, 1), v_t=(v_t, 1), mask_t=(mask_t, 1))
    _checks.floating(fn, r_t=r_t, v_t=v_t)
    _checks.same_shape(fn, r_t=r_t, v_t=v_t, mask_t=mask_t)
    m_t = jnp.asarray(mask_t).astype(bool).astype(r_t.dtype)
    v_next_t = jnp.concatenate([v_t[1:] * m_t[1:], jnp.zeros((1,), v_t.dtype)])
    delta_t = (r_t + discount * v_next_t - v_t) * m_t
    adv_t = credit.discounted_reverse_cumsum(delta_t, discount * lambda_) * m_t
    return adv_t, (adv_t + v_t) * m_t
