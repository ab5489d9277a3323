"""Per-token policy and value losses, KL estimators and entropy (PURE_SPEC §4, §6).

Each function maps [T] (or [T, V] logits) to an unreduced [T]; reduce with
`purejax.reductions.aggregate_loss`. None of them calls a model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purejax import _checks


def _check_pair(fn: str, **arrays) -> None:
    _checks.rank(fn, **{name: (x, 1) for name, x in arrays.items()})
    _checks.floating(fn, **arrays)
    _checks.same_shape(fn, **arrays)


def clipped_surrogate_loss(
    logp_t,
    old_logp_t,
    adv_t,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    dual_clip: float | None = None,
) -> jnp.ndarray:
    """PPO's clipped surrogate, per token (Schulman et al. 2017; asymmetric clip as DAPO).

        rho_t = exp(logp_t - old_logp_t)
        l_t   = max(-A_t rho_t, -A_t clip(rho_t, 1 - eps_low, 1 + eps_high))
        dual clip c > 1 (Ye et al. 2020): for A_t < 0, l_t = min(l_t, -c A_t)

    Args:
      logp_t: float[T] log-probs of the taken tokens under the current policy.
      old_logp_t: float[T] log-probs under the policy that sampled them (no gradient).
      adv_t: float[T] advantages (no gradient).
      epsilon_low, epsilon_high: clip range of the ratio.
      dual_clip: None (off) or c > 1.

    Returns:
      float[T] loss to minimise.
    """
    fn = "clipped_surrogate_loss"
    _check_pair(fn, logp_t=logp_t, old_logp_t=old_logp_t, adv_t=adv_t)
    if dual_clip is not None and not isinstance(dual_clip, jax.core.Tracer) and dual_clip <= 1.0:
        raise ValueError(f"{fn}: `dual_clip` must be None or > 1, got {dual_clip}.")
    adv_t = jax.lax.stop_gradient(adv_t)
    ratio_t = jnp.exp(logp_t - jax.lax.stop_gradient(old_logp_t))
    clipped_t = jnp.clip(ratio_t, 1.0 - epsilon_low, 1.0 + epsilon_high)
    loss_t = jnp.maximum(-adv_t * ratio_t, -adv_t * clipped_t)
    if dual_clip is not None:
        loss_t = jnp.where(adv_t < 0, jnp.minimum(loss_t, -adv_t * dual_clip), loss_t)
    return loss_t


def ratio_clipped(
    logp_t, old_logp_t, adv_t, epsilon_low: float = 0.2, epsilon_high: float = 0.2
) -> jnp.ndarray:
    """bool[T]: where the clip is active in `clipped_surrogate_loss` (for the clip fraction)."""
    ratio_t = jnp.exp(logp_t - old_logp_t)
    return ((adv_t > 0) & (ratio_t > 1.0 + epsilon_high)) | ((adv_t < 0) & (ratio_t < 1.0 - epsilon_low))


def kl_k1(logp_t, ref_logp_t) -> jnp.ndarray:
    """k1 = log pi - log pi_ref: unbiased, high variance (OpenRLHF's reward penalty)."""
    _check_pair("kl_k1", logp_t=logp_t, ref_logp_t=ref_logp_t)
    return logp_t - ref_logp_t


def kl_k2(logp_t, ref_logp_t) -> jnp.ndarray:
    """k2 = (log pi - log pi_ref)^2 / 2: biased, low variance, its gradient is the KL's."""
    _check_pair("kl_k2", logp_t=logp_t, ref_logp_t=ref_logp_t)
    return 0.5 * jnp.square(logp_t - ref_logp_t)


def kl_k3(
    logp_t, ref_logp_t, clamp: float | None = 10.0, log_ratio_clamp: float | None = 20.0
) -> jnp.ndarray:
    """k3 = exp(d) - d - 1, d = log pi_ref - log pi: unbiased, low variance, >= 0.

    verl's "low_var_kl" (Schulman, "Approximating KL divergence"): d is clamped to
    [-log_ratio_clamp, log_ratio_clamp] before exp so the estimate never overflows,
    and the result to [-clamp, clamp]. Pass None to disable either clamp.
    """
    _check_pair("kl_k3", logp_t=logp_t, ref_logp_t=ref_logp_t)
    d_t = ref_logp_t - logp_t
    if log_ratio_clamp is not None:
        d_t = jnp.clip(d_t, -log_ratio_clamp, log_ratio_clamp)
    kl_t = jnp.exp(d_t) - d_t - 1.0
    if clamp is not None:
        kl_t = jnp.clip(kl_t, -clamp, clamp)
    return kl_t


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_penalty(logp_t, ref_logp_t, estimator: str = "k3") -> jnp.ndarray:
    """The estimator named by `estimator` (one of KL_ESTIMATORS)."""
    _checks.choice("kl_penalty", "KL estimator", estimator, KL_ESTIMATORS)
    return KL_ESTIMATORS[estimator](logp_t, ref_logp_t)


def entropy_from_logits(logits_tv) -> jnp.ndarray:
    """H_t = logsumexp(z_t) - sum_v softmax(z_t)_v z_tv, in nats; float[T] from [T, V]."""
    _checks.rank("entropy_from_logits", logits_tv=(logits_tv, 2))
    _checks.floating("entropy_from_logits", logits_tv=logits_tv)
    logits_tv = logits_tv.astype(jnp.float32)
    p_tv = jax.nn.softmax(logits_tv, axis=-1)
    return jax.nn.logsumexp(logits_tv, axis=-1) - jnp.sum(p_tv * logits_tv, axis=-1)


def clipped_value_loss(v_t, old_v_t, returns_t, epsilon: float = 0.2) -> jnp.ndarray:
    """PPO's clipped value loss: 0.5 max((v - G)^2, (old_v + clip(v - old_v, -eps, eps) - G)^2)."""
    _check_pair("clipped_value_loss", v_t=v_t, old_v_t=old_v_t, returns_t=returns_t)
    old_v_t = jax.lax.stop_gradient(old_v_t)
    returns_t = jax.lax.stop_gradient(returns_t)
    v_clipped_t = old_v_t + jnp.clip(v_t - old_v_t, -epsilon, epsilon)
    return 0.5 * jnp.maximum(jnp.square(v_t - returns_t), jnp.square(v_clipped_t - returns_t))
