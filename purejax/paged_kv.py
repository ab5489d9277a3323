"""The paged KV pool of `engine`: its layout, its writes, and one query per slot attending
over its pages.

A row's positions are packed: its real prompt tokens first (prompt padding is dropped when
the prompt is written), then every fed-back token, so what a query may see is one length per
slot, the form the Pallas paged-attention kernels take.

Two implementations of the attention, each with the pool layout it reads fastest:
- 'jnp': plain jnp, any backend (the one CPU runs and tests). Keys [pages, K, H, page] and
  values [pages, K, page, H], the layouts of `LayerCache` with the page in place of the row,
  so XLA:CPU vectorises the scores along the page's positions (`decoder.decode_scores`). It
  reads page columns only up to the longest live row, with an online softmax.
- 'pallas_gpu' / 'pallas_tpu': `jax.experimental.pallas.ops.{gpu,tpu}` paged attention,
  keys and values [K, pages, page, H] as the kernels take them. `interpret=True` runs either
  kernel in Pallas' interpreter on any backend (slow; how CPU tests check the wiring).
'auto' picks the kernel of the default backend (GPU, TPU) and 'jnp' elsewhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from purejax.models.decoder import decode_scores

IMPLS = ("auto", "jnp", "pallas_gpu", "pallas_tpu")


class Pool(NamedTuple):
    """One layer's KV pages, in the layout of the `PagedKV` that made it."""

    k: jax.Array
    v: jax.Array


def resolve(impl: str) -> str:
    """The implementation 'auto' means on this process's default backend."""
    if impl not in IMPLS:
        raise ValueError(f"paged attention must be one of {IMPLS}, got {impl!r}.")
    if impl != "auto":
        return impl
    return {"gpu": "pallas_gpu", "tpu": "pallas_tpu"}.get(jax.default_backend(), "jnp")


@dataclasses.dataclass(frozen=True)
class PagedKV:
    """A pool layout and the attention that reads it (hashable: a static jit argument)."""

    impl: str = "jnp"  # resolved: one of IMPLS but 'auto'
    interpret: bool = False  # Pallas kernels only: run them in the interpreter

    def __post_init__(self):
        if self.impl not in IMPLS[1:]:
            raise ValueError(f"PagedKV.impl must be one of {IMPLS[1:]}, got {self.impl!r}.")

    @property
    def kernel_layout(self) -> bool:
        return self.impl != "jnp"

    def init(self, num_pages: int, kv_heads: int, head_dim: int, page_size: int, dtype) -> Pool:
        if self.kernel_layout:
            shape = (kv_heads, num_pages, page_size, head_dim)
            return Pool(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
        return Pool(
            jnp.zeros((num_pages, kv_heads, head_dim, page_size), dtype),
            jnp.zeros((num_pages, kv_heads, page_size, head_dim), dtype),
        )

    def write_prompt(self, pool: Pool, k_khs, v_ksh, mask_s, pages_j) -> Pool:
        """One prefilled prompt (keys [K, H, S], values [K, S, H], S = pages x page, real
        positions where mask_s) into pages_j, packed: real positions first, in order."""
        order_s = jnp.argsort(~mask_s, stable=True)
        k_khs, v_ksh = k_khs[:, :, order_s], v_ksh[:, order_s]
        kv, h, s = k_khs.shape
        n_pages = pages_j.shape[0]
        page = s // n_pages
        v_kjsh = v_ksh.reshape(kv, n_pages, page, h)
        if self.kernel_layout:
            k_kjsh = k_khs.transpose(0, 2, 1).reshape(kv, n_pages, page, h)
            return Pool(
                pool.k.at[:, pages_j].set(k_kjsh.astype(pool.k.dtype), mode="drop"),
                pool.v.at[:, pages_j].set(v_kjsh.astype(pool.v.dtype), mode="drop"),
            )
        k_jkhs = k_khs.reshape(kv, h, n_pages, page).transpose(2, 0, 1, 3)
        return Pool(
            pool.k.at[pages_j].set(k_jkhs.astype(pool.k.dtype), mode="drop"),
            pool.v.at[pages_j].set(v_kjsh.transpose(1, 0, 2, 3).astype(pool.v.dtype), mode="drop"),
        )

    def write_token(self, pool: Pool, page_w, at_w, k_wkh, v_wkh) -> Pool:
        """Each slot's new key and value at position at_w of page page_w (out of range:
        dropped)."""
        if self.kernel_layout:
            return Pool(
                pool.k.at[:, page_w, at_w].set(k_wkh.transpose(1, 0, 2).astype(pool.k.dtype), mode="drop"),
                pool.v.at[:, page_w, at_w].set(v_wkh.transpose(1, 0, 2).astype(pool.v.dtype), mode="drop"),
            )
        return Pool(
            pool.k.at[page_w, :, :, at_w].set(k_wkh.astype(pool.k.dtype), mode="drop"),
            pool.v.at[page_w, :, at_w, :].set(v_wkh.astype(pool.v.dtype), mode="drop"),
        )

    def attend(self, q_wnh, pool: Pool, table_wj, length_w, columns):
        """softmax(q.k / sqrt(H)) v of one query per slot over the first length_w positions of
        its pages (table_wj [W, J]), GQA: query head n uses KV head n // (N / K). [W, N, H].
        `columns` (traced) bounds the page columns any slot reaches (the jnp form reads only
        those); a slot of length 0 gets zeros or junk, never read."""
        h = q_wnh.shape[-1]
        q_wnh = q_wnh * jnp.asarray(h**-0.5, q_wnh.dtype)
        if self.impl == "jnp":
            return _attend_jnp(q_wnh, pool, table_wj, length_w, columns)
        table_wj, length_w = table_wj.astype(jnp.int32), jnp.maximum(length_w, 1).astype(jnp.int32)
        pages_per_row = table_wj.shape[1]
        if self.impl == "pallas_gpu":
            from jax.experimental.pallas.ops.gpu import paged_attention as gpu

            k_splits = _largest_divisor(pages_per_row, 16)
            return gpu.paged_attention(
                q_wnh, pool.k, pool.v, table_wj, length_w, k_splits=k_splits,
                pages_per_compute_block=_largest_divisor(pages_per_row // k_splits, 8),
                interpret=self.interpret,
            )  # fmt: skip
        from jax.experimental.pallas import tpu as pltpu
        from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention as tpu

        # The interpreter is chosen when the kernel is traced, so the context wraps the call.
        mode = pltpu.force_tpu_interpret_mode() if self.interpret else contextlib.nullcontext()
        with mode:
            return tpu(
                q_wnh, pool.k, pool.v, length_w, table_wj,
                pages_per_compute_block=_largest_divisor(pages_per_row, 8),
            )  # fmt: skip


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _attend_jnp(q_wnh, pool: Pool, table_wj, length_w, columns):
    """Page column by page column of the tables (W pages at a time) with an online softmax
    (running max m, normaliser l, weighted sum). Hidden positions get finfo.min, as in
    `decoder.attend`; a column with none visible adds finite junk that the first visible
    position's rescaling (exp(finfo.min - m) = 0) erases."""
    w, n, h = q_wnh.shape
    k = pool.k.shape[1]
    page = pool.k.shape[-1]
    g = n // k
    q_wkgh = q_wnh.reshape(w, k, g, h)
    low = jnp.finfo(jnp.float32).min

    def column(j, carry):
        m_wkg, l_wkg, acc_wkgh = carry
        pages_w = table_wj[:, j]
        k_wkhs, v_wksh = pool.k[pages_w], pool.v[pages_w]
        scores = decode_scores(q_wkgh, k_wkhs).astype(jnp.float32)
        visible_ws = (j * page + jnp.arange(page))[None, :] < length_w[:, None]
        scores = jnp.where(visible_ws[:, None, None, :], scores, low)
        m_new = jnp.maximum(m_wkg, jnp.max(scores, axis=-1))
        rescale = jnp.exp(m_wkg - m_new)
        probs = jnp.exp(scores - m_new[..., None])
        l_wkg = l_wkg * rescale + jnp.sum(probs, axis=-1)
        # Multiply-and-reduce, as `decoder.attend` decodes: faster than a batched matmul at g <= 8.
        pv = jnp.sum(probs.astype(v_wksh.dtype)[..., None] * v_wksh[:, :, None], axis=-2).astype(jnp.float32)
        return m_new, l_wkg, acc_wkgh * rescale[..., None] + pv

    init = (
        jnp.full((w, k, g), low, jnp.float32),
        jnp.zeros((w, k, g), jnp.float32),
        jnp.zeros((w, k, g, h), jnp.float32),
    )
    _, l_wkg, acc_wkgh = jax.lax.fori_loop(0, columns, column, init)
    return (acc_wkgh / l_wkg[..., None]).astype(q_wnh.dtype).reshape(w, n, h)
