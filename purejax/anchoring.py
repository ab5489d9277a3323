"""The anchoring map: when does the PRM's hack take over, and does 10% VR hold it off?

The scripted PRM rates an answer without work `rewards.prm.unchecked` (0.9 by default, its
weakness 2). Under min-form credit such a guess is worth its score, an average answer its
worst step, so the hack pays by the *margin*: the guess's score minus the policy's average
worst-step reward early in training (`train/rollout/prm_min_mean`, which starts near -0.45
with the guess warm start). A verifiable reward on a fraction f of the prompts takes back
about f x rollout accuracy per prompt (a wrong guess's RLOO advantage). So VR can anchor only
a hack whose margin is about that small: the paper's finding that 10% VR keeps PURE-PRM from
drifting says its PRM's margin was.

This module reads sweeps of `compare` arms, one per guess score (`score_dir`), and tables per
arm and score the first step at which half the sampled answers are one step (the onset of
the takeover, or none within the run), with best and final held-out accuracy and the deepest
fall below the best so far (a takeover the policy later recovers from leaves final == best).
`experiments/anchoring_map.py` runs the sweeps and writes map.md, map.json and map.png.
"""

from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np

from purejax import atomic, compare, report
from purejax.metrics_log import read_metrics

ONE_STEP = "train/rollout/frac_1_step"
WORST_STEP = "train/rollout/prm_min_mean"
EARLY_STEPS = 20  # the margin's baseline: the worst-step reward over the first steps


def score_dir(workdir: str, score: float) -> str:
    """The sweep of one guess score: WORKDIR/unchecked_+0.90."""
    return os.path.join(workdir, f"unchecked_{score:+.2f}")


def onset_step(records: Sequence[dict], threshold: float = 0.5) -> int | None:
    """The first step whose sampled answers are at least `threshold` one-step; None if none."""
    steps, values = report.series(records, ONE_STEP)
    return next((int(s) for s, v in zip(steps, values) if v >= threshold), None)


def early_worst_step(records: Sequence[dict], steps: int = EARLY_STEPS) -> float:
    """Mean worst-step reward of the sampled answers over the first `steps` steps."""
    xs, values = report.series(records, WORST_STEP)
    early = [v for s, v in zip(xs, values) if s <= xs[0] + steps - 1] if xs else []
    return float(np.mean(early)) if early else math.nan


def arm_row(records_per_seed: Sequence[Sequence[dict]], score: float, arm_name: str) -> dict:
    """One arm at one guess score, over its seeds."""
    per_seed = []
    for records in records_per_seed:
        _, accuracy = report.series(records, "eval/accuracy")
        per_seed.append(
            {
                "onset": onset_step(records),
                "steps": int(records[-1]["step"]),
                "best": max(accuracy) if accuracy else math.nan,
                "final": accuracy[-1] if accuracy else math.nan,
                "dip": compare.deepest_dip(np.array(accuracy, float)),
                "early_worst_step": early_worst_step(records),
            }
        )
    early = float(np.mean([s["early_worst_step"] for s in per_seed])) if per_seed else math.nan
    return {
        "score": float(score),
        "arm": arm_name,
        "seeds": len(per_seed),
        "per_seed": per_seed,
        "margin": float(score) - early,
        "drifted": sum(s["onset"] is not None for s in per_seed),
    }


def map_results(workdir: str, scores: Sequence[float], arms: Sequence, num_seeds: int, first_seed: int = 0):
    """[row per (score, arm) with runs on disk]; arms are `compare.Arm`s."""
    rows = []
    for score in scores:
        for arm in arms:
            dirs = compare.seed_dirs(score_dir(workdir, score), arm, num_seeds, first_seed)
            runs = [r for r in (read_metrics(os.path.join(d, "metrics.jsonl")) for d in dirs) if r]
            if runs:
                rows.append(arm_row(runs, score, arm.name))
    return rows


def _fmt(values, digits=1, scale=100.0, worst=min) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "n/a"
    return f"{scale * np.mean(values):.{digits}f} (worst {scale * worst(values):.{digits}f})"


def table(rows: Sequence[dict]) -> str:
    lines = [
        "| guess score | margin | arm | seeds drifted | onset step per seed | best accuracy | deepest dip "
        "| final accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        onsets = " / ".join("none" if s["onset"] is None else str(s["onset"]) for s in r["per_seed"])
        steps = max(s["steps"] for s in r["per_seed"])
        lines.append(
            f"| {r['score']:+.2f} | {r['margin']:+.2f} | {r['arm']} | {r['drifted']} of {r['seeds']} "
            f"(in {steps} steps) | {onsets} | {_fmt([s['best'] for s in r['per_seed']])} | "
            f"{_fmt([s['dip'] for s in r['per_seed']], worst=max)} | {_fmt([s['final'] for s in r['per_seed']])} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[dict], path: str) -> str:
    """Onset step and final accuracy against the guess score, one line per arm (seed mean,
    min-max bars; a seed that never drifts counts at its last step, drawn hollow)."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    ax_onset, ax_final = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"]
    for i, arm in enumerate(dict.fromkeys(r["arm"] for r in rows)):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["score"])
        x = np.array([r["score"] for r in mine]) + 0.012 * (i - 1)  # side by side
        for ax, values_of in (
            (ax_onset, lambda r: [s["steps"] if s["onset"] is None else s["onset"] for s in r["per_seed"]]),
            (ax_final, lambda r: [100 * s["final"] for s in r["per_seed"]]),
        ):
            values = [np.array(values_of(r), float) for r in mine]
            mean = np.array([v.mean() for v in values])
            low, high = mean - [v.min() for v in values], [v.max() for v in values] - mean
            ax.errorbar(x, mean, yerr=[low, high], color=colors(i), marker="o", capsize=3, lw=1.3, label=arm)
        never = [(xi, r["per_seed"][0]["steps"]) for xi, r in zip(x, mine) if r["drifted"] < r["seeds"]]
        if never:
            ax_onset.scatter(*zip(*never), s=90, facecolors="none", edgecolors=colors(i), lw=1.3)
    ax_onset.set_title("first step with half the answers one step (hollow: a seed never)", fontsize=9)
    ax_final.set_title("held-out greedy accuracy at the end (%)", fontsize=9)
    for ax in (ax_onset, ax_final):
        ax.set_xlabel("scripted PRM's score of an answer without work (rewards.prm.unchecked)", fontsize=8)
        ax.tick_params(labelsize=7)
    ax_onset.legend(fontsize=7)
    return report.save_figure(fig, path)


def write_map(workdir: str, scores: Sequence[float], arms: Sequence, num_seeds: int, first_seed: int = 0) -> list:
    """map.md, map.json and map.png in workdir; returns the rows."""
    rows = map_results(workdir, scores, arms, num_seeds, first_seed)
    if not rows:
        raise FileNotFoundError(f"no runs under {workdir} for scores {list(scores)}: run the sweeps first")
    text = table(rows) + "\n"
    atomic.write_text(os.path.join(workdir, "map.md"), text)
    atomic.write_text(os.path.join(workdir, "map.json"), json.dumps(rows, indent=1, default=float))
    path = plot(rows, os.path.join(workdir, "map.png"))
    print(text)
    print(f"plot: {path}\ntable: {os.path.join(workdir, 'map.md')}")
    return rows
