"""Plots and a text summary of a run, from its metrics.jsonl alone."""

from __future__ import annotations

import math
import os
import sys
from typing import Sequence

from purejax.metrics_log import read_metrics

# (metrics key, plot title) of the curves the paper watches (PURE_SPEC §8), then the
# optimisation's health. A key may be a pair: both on one panel, the second on its own axis.
CURVES = (
    ("eval/accuracy", "held-out greedy accuracy"),
    ("train/rollout/vr_accuracy", "rollout VR accuracy"),
    ("train/rollout/process_reward_sum", "summed transformed process reward"),
    ("train/rollout/length_mean", "response length (tokens)"),
    ("train/rollout/steps_mean", "steps per response"),
    ("train/rollout/frac_1_step", "fraction of 1-step answers"),
    ("train/kl_reward", "KL to reference"),
    ("train/rollout/repetition", "repetition score"),
    # The hacking signature: the PRM's verdict rises while the verifier's falls.
    (("train/rollout/prm_min_mean", "train/rollout/vr_accuracy"), "PRM worst step (left) vs VR accuracy (right)"),
    ("train/entropy", "policy entropy"),
    ("train/clip_fraction", "PPO clip fraction"),
    ("train/grad_norm", "gradient norm"),
    ("train/lr", "learning rate"),
)


def series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_runs(runs: dict[str, Sequence[dict]], path: str, curves=CURVES) -> str:
    """One panel per curve, one line per run; returns the PNG path."""
    from matplotlib.figure import Figure  # not pyplot: no global state, so any thread may draw

    cols = 4
    rows = math.ceil(len(curves) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (key, title) in zip(axes.flat, curves):
        keys = key if isinstance(key, tuple) else (key,)
        for axis, k, style in zip((ax, ax.twinx() if len(keys) > 1 else None), keys, ("-", "--")):
            for name, records in runs.items():
                x, y = series(records, k)
                if x:
                    axis.plot(x, y, style, label=name, marker="o" if len(x) < 4 else None, markersize=3)
            axis.tick_params(labelsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=7)
    return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
    """Lays out and writes a matplotlib figure, whole or not at all (a temporary file renamed
    into place); returns the PNG path."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


class LivePlots:
    """Redraws runs' curves.png on one background thread, so training never waits for matplotlib
    (about 0.8 s a figure on a CPU, 10 s over a 3-seed, 100-step run).

    `redraw(run_dirs)` queues a redraw of each directory from its metrics.jsonl as written so
    far; `close()` waits for the queued ones. A figure that fails to draw is reported on stderr
    once the run closes, and never stops training.
    """

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="purejax-plots")
        self._pending = []

    def redraw(self, run_dirs: Sequence[str]) -> None:
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        self._pending.extend(self._pool.submit(plot_run, d) for d in run_dirs)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        errors = sorted({repr(f.exception()) for f in self._pending if f.exception() is not None})
        for error in errors:
            print(f"purejax: curves.png not redrawn: {error}", file=sys.stderr)
        self._pending = []


def _sparkline(values: Sequence[float], width: int = 24) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return ""
    if len(values) > width:
        values = [values[int(i * len(values) / width)] for i in range(width)]
    low, high = min(values), max(values)
    ticks = "▁▂▃▄▅▆▇█"
    return "".join(ticks[int((v - low) / (high - low + 1e-12) * (len(ticks) - 1))] for v in values)


def plot_run(workdir: str) -> str | None:
    """Redraws workdir/plots/curves.png from its metrics.jsonl; returns the path (None if empty)."""
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    if not records:
        return None
    name = os.path.basename(os.path.normpath(workdir))
    return plot_runs({name: records}, os.path.join(workdir, "plots", "curves.png"))


def summarize(workdir: str) -> str:
    """Accuracy before/after, reward curves as sparklines, and where the plots went."""
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    if not records:
        return f"no metrics in {workdir}"
    plot = plot_run(workdir)
    lines = ["", f"run: {workdir} ({records[-1]['step']} steps)"]
    _, accuracy = series(records, "eval/accuracy")
    if accuracy:
        lines.append(
            f"held-out accuracy: {accuracy[0]:.3f} -> {accuracy[-1]:.3f} "
            f"({100 * (accuracy[-1] - accuracy[0]):+.1f} points)"
        )
    for key, title in CURVES[1:6]:
        _, values = series(records, key)
        if values:
            lines.append(f"{title:36s} {values[0]:8.3f} -> {values[-1]:8.3f}  {_sparkline(values)}")
    alarms = sorted(
        {k.split("/")[-1] for r in records for k, v in r.items() if k.startswith("train/alarm/") and v}
    )
    lines.append("reward-hacking alarms: " + (", ".join(alarms) if alarms else "none"))
    lines.append(f"plots: {plot}")
    return "\n".join(lines)


# The progress bar's live metrics.
PROGRESS_KEYS = (
    "eval/accuracy",
    "train/rollout/vr_accuracy",
    "train/rollout/process_reward_sum",
    "train/rollout/steps_mean",
    "train/rollout/length_mean",
    "train/kl_reward",
    "train/loss",
)


def progress(summaries: Sequence[dict]) -> dict:
    """The progress bar's live metrics: each of PROGRESS_KEYS, its mean over seeds."""
    out = {}
    for key in PROGRESS_KEYS:
        values = [s[key] for s in summaries if isinstance(s.get(key), float)]
        if values:
            out[key.split("/")[-1]] = f"{sum(values) / len(values):.3g}"
    return out
