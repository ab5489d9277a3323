"""Credit assignment side by side: why min-form stops PRM reward hacking.

    python -m experiments.credit_demo [--out DIR]

Takes a group of hand-written responses to one prompt with PRM step scores
(a good solution, one with a wrong step, one padded with highly rated filler
"thinking" steps, and a one-step answer), and prints for every credit mode the
value each response gets and its advantage under the `token_mean` baseline.
Sum-form pays the filler response most: that is the hack. Writes a heatmap of
per-token advantages to DIR/credit_demo.png. Runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import os

import jax.numpy as jnp
import numpy as np

import purejax as pj

# (name, [(tokens in the step, PRM score of the step), ...])
RESPONSES = [
    ("correct, 4 steps", [(6, 0.8), (5, 0.7), (7, 0.9), (3, 0.9)]),
    ("wrong step 2", [(6, 0.8), (5, -0.7), (7, 0.6), (3, 0.5)]),
    ("filler thinking x7", [(4, 0.9)] * 7 + [(3, 0.3)]),
    ("one giant step", [(20, 0.6)]),
]
MODES = {
    "sum": dict(credit="sum"),
    "soft_min T=0.1": dict(credit="soft_min", temperature=0.1),
    "min": dict(credit="min"),
    "worst_step": dict(credit="worst_step"),
}


def build_group(responses=RESPONSES):
    width = max(sum(n for n, _ in steps) for _, steps in responses)
    r = np.zeros((len(responses), width), np.float32)
    ends = np.zeros((len(responses), width), bool)
    mask = np.zeros((len(responses), width), bool)
    for i, (_, steps) in enumerate(responses):
        position = 0
        for tokens, score in steps:
            position += tokens
            r[i, position - 1] = score
            ends[i, position - 1] = True
        mask[i, :position] = True
    return jnp.asarray(r), jnp.asarray(ends), jnp.asarray(mask)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/credit_demo")
    args = parser.parse_args()
    r, ends, mask = build_group()
    k = r.shape[0]

    results = {}
    for mode, config in MODES.items():
        out = pj.pure_advantages(r, ends, mask, k, dict(config, whiten=False))
        results[mode] = out
    name_width = max(len(n) for n, _ in RESPONSES)
    print("Value of each response (return at its first token) and its mean advantage (token_mean baseline)\n")
    print(f"{'response':{name_width}s} " + " ".join(f"{m:>15s}" for m in MODES))
    for i, (name, _) in enumerate(RESPONSES):
        cells = []
        for mode in MODES:
            value = float(results[mode].returns[i, 0])
            adv = float(pj.masked_mean(results[mode].advantages[i], mask[i]))
            cells.append(f"{value:+6.2f} ({adv:+5.2f})")
        print(f"{name:{name_width}s} " + " ".join(f"{c:>15s}" for c in cells))
    best = {mode: RESPONSES[int(jnp.argmax(out.returns[:, 0]))][0] for mode, out in results.items()}
    print("\nHighest value per mode: " + "; ".join(f"{m}: {b}" for m, b in best.items()))
    print("Sum-form pays for piling up well-rated steps; the min-forms value a response by its worst step.")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(MODES), 1, figsize=(10, 2.0 * len(MODES)), sharex=True)
    for ax, (mode, out) in zip(axes, results.items()):
        adv = np.where(np.asarray(mask), np.asarray(out.advantages), np.nan)
        limit = np.nanmax(np.abs(adv)) or 1.0
        image = ax.imshow(adv, aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_yticks(range(k), [n for n, _ in RESPONSES], fontsize=8)
        ax.set_title(f"{mode}: per-token advantage", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.02)
        ends_np = np.asarray(ends)
        ys, xs = np.nonzero(ends_np)
        ax.scatter(xs, ys, marker="|", color="k", s=40)
    axes[-1].set_xlabel("token (| = step end)")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "credit_demo.png")
    fig.savefig(path, dpi=120)
    print(f"\nHeatmap written to {path}")


if __name__ == "__main__":
    main()
