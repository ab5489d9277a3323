"""Speed of credit assignment at RL scale, against the memory-bound floor.

    python bench/credit.py [--batch 512] [--width 8192] [--repeats 20]

B responses x T tokens (ragged lengths, ~2% step ends). Each jitted path is
timed next to one fused elementwise pass over the same arrays, measured in the
same run: no function here can beat reading its inputs once, so the ratio says
how close to the floor it gets. For context it also times torch's cummin (what
verl's min-form uses) when torch is installed. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import purejax as pj


def _time(fn, *args, repeats: int) -> float:
    """Median wall time of fn(*args) in seconds, after a compile-and-warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def make_batch(batch: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(width // 8, width + 1, size=batch)
    mask = np.arange(width)[None, :] < lengths[:, None]
    ends = (rng.random((batch, width)) < 0.02) & mask
    ends[np.arange(batch), lengths - 1] = True
    rewards = np.where(ends, rng.uniform(-1, 1, (batch, width)), 0.0).astype(np.float32)
    return jnp.asarray(rewards), jnp.asarray(ends), jnp.asarray(mask)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    r_bt, e_bt, m_bt = make_batch(args.batch, args.width)

    # The floor: read rewards, step ends and mask once, write one float array.
    floor = jax.jit(lambda r, e, m: jnp.where(e & m, r, 0.0) * 2.0)
    paths = {
        "min_form_returns": jax.jit(jax.vmap(pj.min_form_returns)),
        "soft_min_returns": jax.jit(jax.vmap(pj.soft_min_returns, (0, 0, 0, None)), static_argnums=3),
        "sum_form_returns": jax.jit(jax.vmap(lambda r, e, m: pj.sum_form_returns(r, m))),
        "advantages(min, token_mean, whiten)": lambda r, e, m: (
            pj.pure_advantages(r, e, m, args.group_size, pj.AdvantageConfig(credit="min")).advantages
        ),
        "advantages(soft_min, token_mean, whiten)": lambda r, e, m: (
            pj.pure_advantages(r, e, m, args.group_size, pj.AdvantageConfig(credit="soft_min")).advantages
        ),
    }
    extra_args = {"soft_min_returns": (0.1,)}

    floor_s = _time(floor, r_bt, e_bt, m_bt, repeats=args.repeats)
    gbytes = (r_bt.nbytes + e_bt.nbytes + m_bt.nbytes + r_bt.nbytes) / 1e9
    rows = [("elementwise floor", floor_s)]
    for name, fn in paths.items():
        rows.append((name, _time(fn, r_bt, e_bt, m_bt, *extra_args.get(name, ()), repeats=args.repeats)))

    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        r_torch, e_torch, m_torch = (torch.from_numpy(np.asarray(x)) for x in (r_bt, e_bt, m_bt))

        def torch_min(r, e, m):  # verl-style: masked reverse cummin on torch tensors
            big = torch.finfo(r.dtype).max
            g = torch.cummin(torch.where(e & m, r, big).flip(-1), dim=-1).values.flip(-1)
            return torch.where(m & (g < big), g, 0.0)

        start_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            torch_min(r_torch, e_torch, m_torch)
            start_times.append(time.perf_counter() - start)
        rows.append(("reference: torch cummin min-form", float(np.median(start_times))))
    except ImportError:
        pass

    print(
        f"B={args.batch} T={args.width} (~2% step ends, ragged), {jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores; median of {args.repeats}"
    )
    print(f"{'path':44s} {'ms':>9s} {'x floor':>8s} {'GB/s':>7s}")
    for name, seconds in rows:
        print(f"{name:44s} {seconds * 1e3:9.2f} {seconds / floor_s:8.2f} {gbytes / seconds:7.1f}")
    result = {"batch": args.batch, "width": args.width, "floor_ms": floor_s * 1e3}
    for name, seconds in rows[1:]:
        key = name.split("(")[0].replace("reference: ", "ref_").replace(" ", "_") + (
            "_" + name.split("(")[1].split(",")[0] if "(" in name else ""
        )
        result[f"{key}_ms"] = round(seconds * 1e3, 3)
        result[f"{key}_x_floor"] = round(seconds / floor_s, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
