"""Credit assignment: from step rewards to per-token returns (PURE_SPEC §3).

Every function takes ONE response: rewards `r_t` placed on step-end tokens (0
elsewhere), the step-end mask `step_end_t` and the valid-token mask `mask_t`,
all of shape [T]. Batch with `jax.vmap`. Returns are 0 wherever `mask_t` is 0.

    sum         G_t = sum_{k>=t} gamma^(k-t) r_k m_k
    min         G_t = min_{k>=t, e_k} r_k                        (0 after the last step end)
    soft_min    r*_i = softmax_i(-r/T) r_i over step ends, G = sum-form of r*
    worst_step  G_t = r_w if t <= w else 0, w = argmin_{e_k} r_k   (soft_min as T -> 0)
    all_token_min  the official verl code's "strict min": running min over ALL
                positions k >= t, including the 0 reward of non-step tokens and padding.
                verl minimises the whole token score, so `pure.pure_advantages` passes
                r + dense rewards (VR, -beta kl) here.

Reference: Cheng et al., "Stop Summation: Min-Form Credit Assignment Is All
Process Reward Model Needs for Reasoning", arXiv 2504.15275, Eqs. 2-3.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purejax import _checks


def _float_mask(mask_t, dtype):
    return jnp.asarray(mask_t).astype(bool).astype(dtype)


def _check_sequence(fn: str, r_t, **masks) -> None:
    _checks.rank(fn, r_t=(r_t, 1), **{name: (m, 1) for name, m in masks.items()})
    _checks.floating(fn, r_t=r_t)
    _checks.mask(fn, **masks)
    _checks.same_shape(fn, r_t=r_t, **masks)


def discounted_reverse_cumsum(x_t, discount_t) -> jnp.ndarray:
    """y_t = x_t + discount_t * y_{t+1}, y_T = 0, for [T] arrays.

    A parallel (associative) scan over the affine maps y -> x + g y, so the
    depth is O(log T) rather than a T-step sequential loop.
    """

    def compose(later, earlier):
        # Scanning in reverse, `later` holds maps nearer the end of the sequence.
        g_later, x_later = later
        g_earlier, x_earlier = earlier
        return g_later * g_earlier, x_earlier + g_earlier * x_later

    discount_t = jnp.broadcast_to(jnp.asarray(discount_t, x_t.dtype), x_t.shape)
    _, y_t = jax.lax.associative_scan(compose, (discount_t, x_t), reverse=True)
    return y_t


def sum_form_returns(r_t, mask_t, discount=1.0) -> jnp.ndarray:
    """Sum-form (discounted) returns: G_t = sum_{k>=t} gamma^(k-t) r_k m_k, times m_t.

    Args:
      r_t: float[T] rewards (step rewards on step ends, dense rewards anywhere).
      mask_t: bool or 0/1 [T] valid tokens.
      discount: gamma, a scalar or float[T]. Every official PURE run uses 1.

    Returns:
      float[T] returns, 0 on padding.
    """
    _check_sequence("sum_form_returns", r_t, mask_t=mask_t)
    m_t = _float_mask(mask_t, r_t.dtype)
    x_t = r_t * m_t
    if isinstance(discount, (int, float)) and discount == 1.0:
        # The undiscounted case is a plain reverse cumulative sum. lax.cumsum(reverse=True)
        # lowers to one reduce-window; flip/cumsum/flip is ~3x slower on CPU.
        g_t = jax.lax.cumsum(x_t, reverse=True)
    else:
        g_t = discounted_reverse_cumsum(x_t, discount)
    return g_t * m_t


def min_form_returns(r_t, step_end_t, mask_t) -> jnp.ndarray:
    """Min-form returns: G_t = min over step ends k >= t of r_k (PURE's value).

    Tokens after the last step end and padding get 0.

    Args:
      r_t: float[T] rewards; only values on step ends are read.
      step_end_t: bool or 0/1 [T] step ends.
      mask_t: bool or 0/1 [T] valid tokens.

    Returns:
      float[T] returns.
    """
    _check_sequence("min_form_returns", r_t, step_end_t=step_end_t, mask_t=mask_t)
    valid_t = jnp.asarray(mask_t).astype(bool)
    end_t = jnp.asarray(step_end_t).astype(bool) & valid_t
    big = jnp.finfo(r_t.dtype).max
    g_t = jax.lax.cummin(jnp.where(end_t, r_t, big), reverse=True)
    # `!=` rather than `<` so a NaN reward propagates instead of turning into 0.
    return jnp.where(valid_t & (g_t != big), g_t, 0.0).astype(r_t.dtype)


def soft_min_weights(r_t, step_end_t, temperature) -> jnp.ndarray:
    """w_i = softmax_i(-r_i / T) over the step ends, 0 elsewhere (sums to 1, or 0 if no step)."""
    _check_sequence("soft_min_weights", r_t, step_end_t=step_end_t)
    _checks.positive("soft_min_weights", "temperature", temperature)
    end_t = jnp.asarray(step_end_t).astype(bool)
    # Off-step logits are set to 0 (not -inf) and masked after exp, so gradients stay finite.
    z_t = jnp.where(end_t, -r_t / temperature, 0.0)
    z_max = jnp.max(jnp.where(end_t, z_t, -jnp.inf))
    z_max = jnp.where(jnp.isfinite(z_max), z_max, 0.0)
    p_t = jnp.where(end_t, jnp.exp(z_t - jax.lax.stop_gradient(z_max)), 0.0)
    return p_t / jnp.maximum(jnp.sum(p_t), jnp.finfo(r_t.dtype).tiny)


def soft_min_rewards(r_t, step_end_t, temperature) -> jnp.ndarray:
    """PURE's min-form transform r*_t = softmax(-r/T)_t r_t over step ends, 0 elsewhere.

    Summing r* gives a soft minimum of the step rewards: the sum-form return of
    r* is the soft-min value, which tends to the worst step's reward as T -> 0
    and to the mean step reward as T -> inf. The paper's default is T = 0.1.

    Args:
      r_t: float[T] step rewards on step ends.
      step_end_t: bool or 0/1 [T] step ends (False on padding).
      temperature: T > 0 (scalar; may be traced, e.g. vmapped over a sweep).

    Returns:
      float[T] transformed rewards.
    """
    return soft_min_weights(r_t, step_end_t, temperature) * r_t


def soft_min_returns(r_t, step_end_t, mask_t, temperature) -> jnp.ndarray:
    """Sum-form returns of the soft-min transformed rewards (PURE's default credit)."""
    return sum_form_returns(soft_min_rewards(r_t, step_end_t, temperature), mask_t)


def worst_step_returns(r_t, step_end_t, mask_t) -> jnp.ndarray:
    """Worst-step returns (paper Eq. 3, the T -> 0 limit of soft-min).

    w = argmin over step ends of r (the earliest on ties); G_t = r_w for t <= w, 0 after.

    Args:
      r_t: float[T] step rewards on step ends.
      step_end_t: bool or 0/1 [T] step ends.
      mask_t: bool or 0/1 [T] valid tokens.

    Returns:
      float[T] returns; all 0 if the response has no step end.
    """
    _check_sequence("worst_step_returns", r_t, step_end_t=step_end_t, mask_t=mask_t)
    valid_t = jnp.asarray(mask_t).astype(bool)
    end_t = jnp.asarray(step_end_t).astype(bool) & valid_t
    w = jnp.argmin(jnp.where(end_t, r_t, jnp.inf))
    before_worst_t = (jnp.arange(r_t.shape[0]) <= w) & valid_t & jnp.any(end_t)
    return jnp.where(before_worst_t, r_t[w], 0.0).astype(r_t.dtype)


def all_token_min_returns(r_t, mask_t) -> jnp.ndarray:
    """The official verl branch's "strict min-form": G_t = min_{k >= t} r_k m_k, times m_t.

    Reproduces the released code, not the paper: the running minimum covers
    every position, including the 0 reward of tokens between step ends and of
    padding, so it equals min(0, ...): two positive steps and VR = 1 in a row
    shorter than the batch width give all-zero returns. Unlike the other
    functions here it therefore depends on the padded width. Use
    `min_form_returns` for the paper's definition.

    Args:
      r_t: float[T] token rewards: step rewards on step ends, plus, to match verl,
        every reward it adds to the token scores (VR on the last token, -beta kl_t).
      mask_t: bool or 0/1 [T] valid tokens.

    Returns:
      float[T] returns, 0 on padding.
    """
    _check_sequence("all_token_min_returns", r_t, mask_t=mask_t)
    m_t = _float_mask(mask_t, r_t.dtype)
    return jax.lax.cummin(r_t * m_t, reverse=True) * m_t


CREDIT_MODES = ("sum", "min", "soft_min", "worst_step", "all_token_min")


def returns(r_t, step_end_t, mask_t, mode: str, temperature=0.1, discount=1.0) -> jnp.ndarray:
    """Dispatches to the credit-assignment mode named by `mode` (one of CREDIT_MODES)."""
    _checks.choice("returns", "credit mode", mode, CREDIT_MODES)
    if mode == "sum":
        return sum_form_returns(r_t, mask_t, discount)
    if mode == "min":
        return min_form_returns(r_t, step_end_t, mask_t)
    if mode == "soft_min":
        return soft_min_returns(r_t, step_end_t, mask_t, temperature)
    if mode == "worst_step":
        return worst_step_returns(r_t, step_end_t, mask_t)
    return all_token_min_returns(r_t, mask_t)
