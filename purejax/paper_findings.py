"""The paper's five findings in one run, each in the regime of the miniature where it can show.

    python -m experiments.findings --workdir runs/findings

The comparison's default sweep (100 steps from the main job's warm start) shows finding 2
only: the others need longer runs and, for findings 3-5, a warm start that can reach the
hack at all (README, "The comparison"). A `Regime` is one such setting: overrides of the
comparison's config (warm start, the scripted PRM's scale, steps) and the arms it needs;
`experiments/findings.py` defines the miniature's. Each regime is a `purejax.compare` sweep in
WORKDIR/<regime>/, with its own results.md and curves.png, resumed like any sweep.
`write_summary` then takes each finding from the regime meant for it (finding 4 from a regime
where PURE-PRM can reach the hack, not from one where it never drifts) into one table,
findings.md and findings.json, and one figure, findings.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from purejax import atomic, compare, report

ACCURACY = ("eval/accuracy", "held-out greedy accuracy")
STEPS = ("train/rollout/steps_mean", "steps per answer")
ONE_STEP = ("train/rollout/frac_1_step", "fraction of 1-step answers")


@dataclasses.dataclass(frozen=True)
class Regime:
    slug: str  # its directory under the workdir
    title: str
    overrides: tuple[str, ...]  # on the comparison's config, before the command line's
    arms: tuple[str, ...]  # compare.ARMS slugs
    findings: tuple[int, ...]  # the findings read from this regime
    behaviour: tuple[str, str]  # the curve that shows them: (metrics key, title)


def regime_dir(workdir: str, regime: Regime) -> str:
    return os.path.join(workdir, regime.slug)


def finding_number(finding: dict) -> int:
    """1 for "1. sum-form hacks or collapses" (`compare.findings` names them so)."""
    return int(finding["finding"].split(".", 1)[0])


def write_summary(
    workdir: str, regimes: Sequence[Regime], num_seeds: int, first_seed: int = 0, walls=None, elapsed_s=None
):
    """Each regime's own report (compare.write_report), then findings.md, findings.json and
    findings.png in workdir over the findings each regime is read for; returns the rows.
    `walls` are each regime's run seconds (its arms' summed), `elapsed_s` the whole call's."""
    rows, labels = [], {}
    for regime in regimes:
        out = regime_dir(workdir, regime)
        if not os.path.isdir(out):
            continue
        payload = compare.write_report(out, compare.select_arms(regime.arms), num_seeds, first_seed)
        # The steps the runs on disk reached, which a --config.total_steps may have changed.
        steps = max((s["steps"] for r in payload["results"].values() for s in r["per_seed"]), default=0)
        labels[regime.slug] = f"{regime.title}, {steps} steps"
        for finding in payload["findings"]:
            if finding_number(finding) in regime.findings:
                rows.append({**finding, "regime": regime.slug, "regime_title": labels[regime.slug]})
    if not rows:
        raise FileNotFoundError(f"no runs under {workdir} for regimes {[r.slug for r in regimes]}: run them first")
    rows.sort(key=finding_number)
    lines = ["| finding | regime | shown | evidence |", "|---|---|---|---|"]
    lines += [
        f"| {r['finding']} | {r['regime_title']} | {'**yes**' if r['shown'] else 'no'} | {r['evidence']} |"
        for r in rows
    ]
    lines.append(
        f"\n{num_seeds} seeds per arm (from seed {first_seed}). Each regime's table and curves: "
        + ", ".join(f"{slug}/results.md" for slug in labels)
        + "."
    )
    if walls:
        elapsed_s = sum(walls.values()) if elapsed_s is None else elapsed_s
        lines.append(
            f"Wall time of this call: {elapsed_s / 60:.1f} min (each regime's runs, in min, summed over its arms: "
            + ", ".join(f"{slug} {wall / 60:.1f}" for slug, wall in walls.items())
            + ")."
        )
    text = "\n".join(lines) + "\n"
    plot = plot_regimes(workdir, [r for r in regimes if r.slug in labels], labels, num_seeds, first_seed)
    atomic.write_text(os.path.join(workdir, "findings.md"), text)
    payload = {"findings": rows, "wall_s": walls or {}, "elapsed_s": elapsed_s, "plot": plot}
    atomic.write_text(os.path.join(workdir, "findings.json"), json.dumps(payload, indent=1, default=float))
    print(text)
    print(f"plot: {plot}\ntable: {os.path.join(workdir, 'findings.md')}")
    return rows


def plot_regimes(workdir: str, regimes: Sequence[Regime], labels: dict, num_seeds: int, first_seed: int = 0) -> str:
    """One column per regime, headed by its label: held-out accuracy on top, the curve that
    shows its findings below; one line per arm (seed mean, shaded min-max over seeds)."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(regimes), 6.4))
    axes = fig.subplots(2, len(regimes), squeeze=False)
    colors = matplotlib.colormaps["tab10"]
    arm_colors = {slug: colors(i) for i, slug in enumerate(dict.fromkeys(a for r in regimes for a in r.arms))}
    for col, regime in enumerate(regimes):
        for arm in compare.select_arms(regime.arms):
            curves = compare.mean_curves(regime_dir(workdir, regime), arm, num_seeds, first_seed)
            for ax, (key, title) in zip(axes[:, col], (ACCURACY, regime.behaviour)):
                compare.draw_curve(ax, key, title, *curves[key], color=arm_colors[arm.slug], label=arm.name)
        top = axes[0, col]
        top.set_title(f"{labels[regime.slug]}\n{top.get_title()}", fontsize=9)
        if top.get_legend_handles_labels()[0]:
            top.legend(fontsize=7, loc="best")
    fig.suptitle(f"the paper's findings in miniature ({num_seeds} seeds per arm)", fontsize=11)
    return report.save_figure(fig, os.path.join(workdir, "findings.png"))
