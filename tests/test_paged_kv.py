"""purejax.paged_kv: for each attention implementation (the jnp form, and jax.experimental's
Pallas GPU and TPU paged-attention kernels run in the interpreter), prompts written packed
into scattered pages and tokens written after them are attended to exactly as
`decoder.attend` attends over the same keys laid out contiguously (the independent
reference); the jnp form reads only the page columns it is told to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejax import paged_kv
from purejax.models.decoder import attend

W, N, K, H, PAGE, PAGES = 3, 4, 2, 8, 4, 12
PROMPT_PAGES, J = 2, 3  # a prompt of 8 positions, rows of at most 12


def _filled_pool(kv: paged_kv.PagedKV, seed=0):
    """Writes W left-padded prompts and then 0-3 tokens per slot; returns the pool, the page
    tables, the lengths and each slot's keys [K, H, L] and values [K, L, H] in order."""
    rng = np.random.default_rng(seed)
    pool = kv.init(PAGES, K, H, PAGE, jnp.float32)
    table = np.asarray([[3, 7, 1], [0, 2, 9], [5, 4, 8]], np.int32)
    s = PROMPT_PAGES * PAGE
    real = [3, 7, 5]  # real prompt tokens per slot; the rest of the S positions is padding
    keys, values = [], []
    for w in range(W):
        k_khs = rng.standard_normal((K, H, s)).astype(np.float32)
        v_ksh = rng.standard_normal((K, s, H)).astype(np.float32)
        mask = np.zeros(s, bool)
        mask[PROMPT_PAGES * PAGE - 1 - real[w] : PROMPT_PAGES * PAGE - 1] = True  # left padding, a hole after
        pool = kv.write_prompt(pool, jnp.asarray(k_khs), jnp.asarray(v_ksh), jnp.asarray(mask),
                               jnp.asarray(table[w, :PROMPT_PAGES]))  # fmt: skip
        keys.append([k_khs[:, :, i] for i in np.flatnonzero(mask)])
        values.append([v_ksh[:, i] for i in np.flatnonzero(mask)])
    new = [1, 3, 0]  # tokens written after each prompt, one decode step at a time
    for step in range(max(new)):
        k_wkh = rng.standard_normal((W, K, H)).astype(np.float32)
        v_wkh = rng.standard_normal((W, K, H)).astype(np.float32)
        pos = np.asarray([real[w] + step for w in range(W)])
        go = np.asarray([step < new[w] for w in range(W)])
        page_w = np.where(go, table[np.arange(W), pos // PAGE], PAGES)  # out of range: dropped
        pool = kv.write_token(pool, jnp.asarray(page_w), jnp.asarray(pos % PAGE), jnp.asarray(k_wkh), jnp.asarray(v_wkh))
        for w in np.flatnonzero(go):
            keys[w].append(k_wkh[w])
            values[w].append(v_wkh[w])
    lengths = np.asarray([real[w] + new[w] for w in range(W)], np.int32)
    return pool, table, lengths, keys, values


def _reference(q, keys, values, lengths, kv_dtype=jnp.float32):
    """decoder.attend over each slot's keys in order, padded to a common width, with keys and
    values rounded to kv_dtype."""
    keys = [[np.asarray(jnp.asarray(x).astype(kv_dtype).astype(jnp.float32)) for x in row] for row in keys]
    values = [[np.asarray(jnp.asarray(x).astype(kv_dtype).astype(jnp.float32)) for x in row] for row in values]
    width = int(lengths.max())
    k_wkhs = np.zeros((W, K, H, width), np.float32)
    v_wksh = np.zeros((W, K, width, H), np.float32)
    for w in range(W):
        k_wkhs[w, :, :, : lengths[w]] = np.stack(keys[w][: lengths[w]], axis=-1)
        v_wksh[w, :, : lengths[w]] = np.stack(values[w][: lengths[w]], axis=1)
    visible = np.arange(width)[None, :] < lengths[:, None]
    return attend(q[:, None], jnp.asarray(k_wkhs), jnp.asarray(v_wksh), jnp.asarray(visible)[:, None])[:, 0]


# The TPU kernel rounds keys and values to bfloat16 whatever the pool's dtype (its
# `_maybe_dequantize`), so its reference does too.
@pytest.mark.parametrize("impl,kv_dtype", [("jnp", jnp.float32), ("pallas_gpu", jnp.float32), ("pallas_tpu", jnp.bfloat16)])
def test_attend_equals_attend_over_the_packed_positions(impl, kv_dtype):
    kv = paged_kv.PagedKV(impl, interpret=impl != "jnp")
    pool, table, lengths, keys, values = _filled_pool(kv)
    q = jnp.asarray(np.random.default_rng(1).standard_normal((W, N, H)), jnp.float32)
    got = kv.attend(q, pool, jnp.asarray(table), jnp.asarray(lengths), jnp.int32(J))
    expected = _reference(q, keys, values, lengths, kv_dtype)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_jnp_reads_only_the_columns_it_is_told_to():
    """With columns = 2 the third page column is never read: NaN there changes nothing."""
    kv = paged_kv.PagedKV("jnp")
    pool, table, lengths, keys, values = _filled_pool(kv, seed=2)
    lengths = np.minimum(lengths, 2 * PAGE)
    poisoned = pool._replace(k=pool.k.at[table[:, 2]].set(jnp.nan), v=pool.v.at[table[:, 2]].set(jnp.nan))
    q = jnp.asarray(np.random.default_rng(3).standard_normal((W, N, H)), jnp.float32)
    got = kv.attend(q, poisoned, jnp.asarray(table), jnp.asarray(lengths), jnp.int32(2))
    np.testing.assert_allclose(np.asarray(got), np.asarray(_reference(q, keys, values, lengths)), atol=1e-5)


def test_the_layouts_are_the_kernels_and_the_caches():
    assert paged_kv.PagedKV("jnp").init(5, K, H, PAGE, jnp.float32).k.shape == (5, K, H, PAGE)
    assert paged_kv.PagedKV("jnp").init(5, K, H, PAGE, jnp.float32).v.shape == (5, K, PAGE, H)
    for impl in ("pallas_gpu", "pallas_tpu"):
        pool = paged_kv.PagedKV(impl).init(5, K, H, PAGE, jnp.bfloat16)
        assert pool.k.shape == pool.v.shape == (K, 5, PAGE, H) and pool.k.dtype == jnp.bfloat16


def test_auto_takes_the_backends_kernel_and_bad_names_fail():
    expected = {"gpu": "pallas_gpu", "tpu": "pallas_tpu"}.get(jax.default_backend(), "jnp")
    assert paged_kv.resolve("auto") == expected
    assert paged_kv.resolve("pallas_tpu") == "pallas_tpu"
    with pytest.raises(ValueError, match=r"paged attention must be one of \('auto', 'jnp'"):
        paged_kv.resolve("flash")
    with pytest.raises(ValueError, match="PagedKV.impl must be one of"):
        paged_kv.PagedKV("auto")
