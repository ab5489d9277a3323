"""One decode step's attention over a KV cache: the sampler's full read vs reading written blocks only.

    python bench/decode_attention.py [--batch 16] [--slots 8192] [--blocks 256 512] [--repeats 15]

The sampler (`purejax.models.decoder.attend`, single query) reads every slot of the cache at
every decode step, written or not. The alternative timed here is flash-decoding: one loop
over only the blocks that hold tokens, with an online softmax, so a step early in a long
generation reads a fraction of the cache. Both run on the same random cache (grouped-query:
2 KV heads, 2 query heads per KV head, head dim 64, float32) with the first L slots written,
for L a quarter, half and all of the cache, alternately (best of --repeats each), and print
milliseconds and the ratio. The outputs are checked to agree. Measured on a 2-core CPU
(README "Status"): the blocked loop wins for a few rows and a mostly empty cache (16 rows x
8192 slots, a quarter written: 2.9x) and loses as the cache fills or grows (each block of the
[B, K, H, S] cache is a strided read), so the sampler keeps the full read. Run it on an
accelerator to see whether a switch pays there. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench._timing import interleaved_best  # noqa: E402
from purejax.models import decoder  # noqa: E402

KV_HEADS, GROUP, HEAD_DIM = 2, 2, 64


def full_read(batch: int, slots: int):
    """The sampler's decode attention: every slot read, unwritten ones masked."""
    return jax.jit(
        lambda q, k, v, written: decoder.attend(
            q, k, v, jnp.broadcast_to(jnp.arange(slots) < written, (batch, 1, slots))
        )
    )


def blocked_read(block: int):
    """Flash-decoding: a loop over the ceil(written / block) written blocks, online softmax."""

    @jax.jit
    def attend(q_b1nh, k_bkhs, v_bksh, written):
        b, _, n, h = q_b1nh.shape
        k = k_bkhs.shape[1]
        q_bkrh = q_b1nh.reshape(b, k, n // k, h) * h**-0.5

        def body(i, carry):
            top, total, acc = carry
            k_blk = jax.lax.dynamic_slice_in_dim(k_bkhs, i * block, block, axis=3)
            v_blk = jax.lax.dynamic_slice_in_dim(v_bksh, i * block, block, axis=2)
            s = jnp.einsum("bkrh,bkhs->bkrs", q_bkrh, k_blk)
            s = jnp.where(i * block + jnp.arange(block) < written, s, -jnp.inf)
            new_top = jnp.maximum(top, s.max(-1))
            p = jnp.exp(s - new_top[..., None])
            rescale = jnp.exp(top - new_top)
            pv = jnp.einsum("bkrs,bksh->bkrh", p, v_blk)
            return new_top, total * rescale + p.sum(-1), acc * rescale[..., None] + pv

        shape = q_bkrh.shape[:-1]
        init = (jnp.full(shape, -jnp.inf), jnp.zeros(shape), jnp.zeros(q_bkrh.shape))
        _, total, acc = jax.lax.fori_loop(0, (written + block - 1) // block, body, init)
        return (acc / total[..., None]).reshape(b, 1, n, h)

    return attend


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--slots", type=int, default=8192)
    parser.add_argument("--blocks", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    b, s = args.batch, args.slots
    for block in args.blocks:
        if s % block:
            parser.error(f"--blocks: {block} does not divide --slots {s}")
    rng = np.random.default_rng(0)
    k = jnp.asarray(rng.standard_normal((b, KV_HEADS, HEAD_DIM, s)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((b, KV_HEADS, s, HEAD_DIM)), jnp.float32)
    q = jnp.asarray(rng.standard_normal((b, 1, KV_HEADS * GROUP, HEAD_DIM)), jnp.float32)

    full = full_read(b, s)
    rows, results = [], {}
    for written in (s // 4, s // 2, s):
        want = full(q, k, v, written)  # also compiles the full read
        for block in args.blocks:
            blocked = blocked_read(block)
            diff = float(jnp.abs(blocked(q, k, v, written) - want).max())
            if diff > 1e-4:
                raise SystemExit(f"blocked attention (block {block}) differs from the full read by {diff}")
            (base, t), _ = interleaved_best(
                lambda: jax.block_until_ready(full(q, k, v, written)),
                lambda: jax.block_until_ready(blocked(q, k, v, written)),
                args.repeats,
            )
            rows.append((written, block, base, t))
            results[f"written_{written}_block_{block}"] = dict(
                full_ms=round(base * 1e3, 3),
                blocked_ms=round(t * 1e3, 3),
                full_over_blocked=round(base / t, 2),
            )
    print(f"decode attention, {b} rows x {s} slots, {KV_HEADS} KV heads x {GROUP} queries x {HEAD_DIM}")
    print(f"{'written':>8} {'block':>6} {'full read ms':>13} {'blocked ms':>11} {'full / blocked':>15}")
    for written, block, base, t in rows:
        print(f"{written:>8} {block:>6} {base * 1e3:>13.3f} {t * 1e3:>11.3f} {base / t:>14.2f}x")
    print(json.dumps(dict(batch=b, slots=s, **results)))


if __name__ == "__main__":
    main()
