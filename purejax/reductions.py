"""Masked reductions, whitening and loss aggregation: the only place that reduces.

Losses elsewhere return per-token values. Aggregation returns a `(sum, count)`
pair instead of a mean, so a mean over micro-batches or devices is exact:
sum the pairs, divide once (as tunix does for its metrics).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from purejax import _checks


class SumCount(NamedTuple):
    """A mean kept as numerator and denominator. Add pairs, then call `.mean()`."""

    total: jnp.ndarray
    count: jnp.ndarray

    def __add__(self, other: "SumCount") -> "SumCount":
        return SumCount(self.total + other.total, self.count + other.count)

    def mean(self) -> jnp.ndarray:
        return self.total / jnp.maximum(self.count, 1e-12)


def _weights(x, mask):
    _checks.mask("masked reduction", mask=mask)
    return jnp.broadcast_to(jnp.asarray(mask).astype(bool), jnp.shape(x)).astype(x.dtype)


def masked_sum(x, mask, axis=None) -> jnp.ndarray:
    """sum(x * mask) over `axis` (all axes by default)."""
    return jnp.sum(x * _weights(x, mask), axis=axis)


def masked_mean(x, mask, axis=None) -> jnp.ndarray:
    """sum(x m) / sum(m); 0 where the mask is empty."""
    m = _weights(x, mask)
    return jnp.sum(x * m, axis=axis) / jnp.maximum(jnp.sum(m, axis=axis), 1.0)


def masked_var(x, mask, unbiased: bool = True) -> jnp.ndarray:
    """Variance of the masked entries; `unbiased` applies Bessel's n/(n-1) as verl does."""
    m = _weights(x, mask)
    n = jnp.sum(m)
    mean = jnp.sum(x * m) / jnp.maximum(n, 1.0)
    var = jnp.sum(jnp.square(x - mean) * m) / jnp.maximum(n, 1.0)
    if unbiased:
        var = var * n / jnp.maximum(n - 1.0, 1.0)
    return var


def masked_whiten(x, mask, shift_mean: bool = True, eps: float = 1e-8) -> jnp.ndarray:
    """(x - mean) / sqrt(var + eps) over the masked entries; 0 off the mask.

    With `shift_mean=False` the mean is added back (scale only), as in verl.
    """
    m = _weights(x, mask)
    mean = masked_mean(x, m)
    whitened = (x - mean) / jnp.sqrt(masked_var(x, m) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * m


def masked_whiten_nonzero(x, mask, eps: float = 1e-8) -> jnp.ndarray:
    """OpenRLHF's whitening when step ends are zeroed (`nomask_separator_adv` off).

    With n = the masked entries that are not 0 (the zeroed step ends are left out):

        mean = sum_{m, x != 0} x / n
        var  = sum_{m} (x - mean)^2 / n        (the zeros' deviations included, as OpenRLHF does)
        out  = (x - mean) / sqrt(max(var, eps)) where m and x != 0, else 0

    An entry that is exactly 0 for another reason is treated the same way, as in OpenRLHF.

    Args:
      x: float[...] advantages. mask: bool or 0/1, broadcastable to x.

    Returns:
      float array of x's shape; 0 off the mask and where x == 0.
    """
    m = _weights(x, mask)
    keep = m * (x != 0).astype(x.dtype)
    n = jnp.maximum(jnp.sum(keep), 1.0)
    mean = jnp.sum(x * keep) / n
    var = jnp.sum(jnp.square(x - mean) * m) / n
    return (x - mean) * jax.lax.rsqrt(jnp.maximum(var, eps)) * keep


LOSS_AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def aggregate_loss(loss_bt, mask_bt, mode: str = "token-mean", norm: float | None = None) -> SumCount:
    """Reduces a per-token loss [B, T] to a `(sum, count)` pair whose ratio is the loss.

    token-mean:              sum_bt l m / sum_bt m          (each token weighs the same)
    seq-mean-token-mean:     mean_b [sum_t l m / sum_t m]   (each response weighs the same)
    seq-mean-token-sum:      mean_b [sum_t l m]
    seq-mean-token-sum-norm: mean_b [sum_t l m / norm]      (Dr. GRPO; norm defaults to T)

    Sequence modes count only rows with at least one valid token.

    Args:
      loss_bt: float[B, T] per-token loss.
      mask_bt: bool or 0/1 [B, T].
      mode: one of LOSS_AGGREGATIONS.
      norm: the constant of seq-mean-token-sum-norm (the padded width T by default;
        pass the maximum response length to keep it fixed across micro-batches).

    Returns:
      SumCount(total, count) of scalars.
    """
    fn = "aggregate_loss"
    _checks.choice(fn, "loss aggregation", mode, LOSS_AGGREGATIONS)
    _checks.rank(fn, loss_bt=(loss_bt, 2), mask_bt=(mask_bt, 2))
    _checks.same_shape(fn, loss_bt=loss_bt, mask_bt=mask_bt)
    m = _weights(loss_bt, mask_bt)
    if mode == "token-mean":
        return SumCount(jnp.sum(loss_bt * m), jnp.sum(m))
    tokens_b = jnp.sum(m, axis=1)
    row_sum_b = jnp.sum(loss_bt * m, axis=1)
    has_tokens_b = (tokens_b > 0).astype(loss_bt.dtype)
    if mode == "seq-mean-token-mean":
        per_row_b = row_sum_b / jnp.maximum(tokens_b, 1.0)
    elif mode == "seq-mean-token-sum":
        per_row_b = row_sum_b
    else:
        per_row_b = row_sum_b / (loss_bt.shape[1] if norm is None else norm)
    return SumCount(jnp.sum(per_row_b * has_tokens_b), jnp.sum(has_tokens_b))
