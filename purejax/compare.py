"""Credit-assignment comparison: arms x seeds on one base config, then plots, a table and findings.

    python -m experiments.compare_credit --config configs/compare_credit.py --workdir runs/compare

An arm is a named edit of the base config (credit mode, soft-min temperature,
baseline, reward sources). Each arm trains all its seeds in one run
(`config.num_seeds`, see `purejax.trainer.Trainer`) in workdir/<arm>/, so an
interrupted sweep resumes where it stopped and a finished arm is not re-run.
The findings the paper reports (PURE_SPEC §8) are checked from the numbers, and
one that does not show is reported as not shown, with its numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Sequence

import numpy as np

from purejax import atomic
from purejax import config as config_lib
from purejax import metrics_log
from purejax import parallel_runs
from purejax import report
from purejax.metrics_log import read_metrics


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    slug: str  # its directory name
    edit: Callable  # (unlocked ConfigDict) -> None


def _verifiable(c, fraction):
    """The base's verifiable-reward source (its settings, command-line overrides included) on
    `fraction` of the prompts with an answer; the paper's own-RLOO VR when the base has none."""
    base = next((spec for spec in c.rewards.values() if spec.type == "verifiable"), None)
    if base is None:
        return config_lib.reward_source(
            "verifiable", applies_to="with_answer", fraction=fraction, level="sequence", baseline="rloo"
        )
    spec = config_lib.ml_collections.ConfigDict(base.to_dict())
    spec.fraction = fraction
    return spec


def _sources(c, prm: bool, vr_fraction: float | None = None):
    """c.rewards: the base's process reward sources (its PRM, learned or scripted) if `prm`,
    plus the verifiable reward on `vr_fraction` of the prompts if given."""
    sources = {name: spec for name, spec in c.rewards.items() if prm and spec.level == "step"}
    if vr_fraction is not None:
        sources["vr"] = _verifiable(c, vr_fraction)
    c.rewards = config_lib.ml_collections.ConfigDict(sources)


def _prm_only(c):
    _sources(c, prm=True)


def _prm_and_vr(c, fraction=0.1):
    _sources(c, prm=True, vr_fraction=fraction)


def _prm_and_vr_everywhere(c):
    _prm_and_vr(c, fraction=1.0)


def _vr_only(c):
    _sources(c, prm=False, vr_fraction=1.0)


def _arm(name, slug, credit, temperature=None, baseline=None, rewards=_prm_only):
    """An arm sets its credit mode, temperature and reward sources; its baseline only when it
    names one (the base config's otherwise, so --config.advantage.baseline reaches every arm
    that does not name its own)."""

    def edit(c):
        rewards(c)
        c.advantage.credit = credit
        if baseline is not None:
            c.advantage.baseline = baseline
        if temperature is not None:
            c.advantage.temperature = temperature

    return Arm(name, slug, edit)


# Settings every arm sets itself: an override of one would be silently replaced (num_seeds is --seeds).
OWNED_BY_ARMS = ("advantage.credit", "advantage.temperature", "rewards.vr.fraction", "num_seeds")


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuses a --config override of a setting the arms set themselves, naming what to use instead."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("-").removeprefix("config.")
        if key in OWNED_BY_ARMS:
            fix = "--seeds" if key == "num_seeds" else "--arms (purejax.compare.ARMS names each arm's)"
            raise ValueError(f"--config.{key}: every arm of the comparison sets it itself; use {fix} instead.")


# The arms of the paper's comparison (PURE_SPEC §3, §8), named as the paper names its runs:
# PURE's credit is soft-min at T = 0.1, PURE-PRM uses the PRM alone, PURE-PRM+VR adds the
# verifiable reward on 10% of the prompts, PURE-VR uses the verifiable reward alone.
ARMS = (
    _arm("PURE-PRM (soft_min T=0.1)", "pure_prm", "soft_min", 0.1),
    _arm("PURE-PRM+VR (soft_min T=0.1, 10% VR)", "pure_prm_vr", "soft_min", 0.1, rewards=_prm_and_vr),
    _arm("PURE-VR (VR only)", "pure_vr", "soft_min", 0.1, rewards=_vr_only),
    _arm("sum", "sum", "sum"),
    _arm("soft_min T=0.1, step_mean baseline", "step_mean", "soft_min", 0.1, baseline="step_mean"),
    # Extras: the hard forms of min-form credit.
    _arm("min", "min", "min"),
    _arm("worst_step", "worst_step", "worst_step"),
    # Not in the default sweep (its cost): the main job's recipe and the soft-min temperature
    # ablation (PURE_SPEC §7).
    _arm("min + 10% VR", "min_vr10", "min", rewards=_prm_and_vr),
    _arm("soft_min T=0.01", "soft_min_t0.01", "soft_min", 0.01),
    _arm("soft_min T=1", "soft_min_t1", "soft_min", 1.0),
    # How much VR it takes to anchor: PURE-PRM+VR with the verifiable reward on every prompt.
    _arm("PURE-PRM+VR on all prompts", "pure_prm_vr100", "soft_min", 0.1, rewards=_prm_and_vr_everywhere),
)
DEFAULT_ARMS = tuple(arm.slug for arm in ARMS[:7])
ARMS_BY_SLUG = {arm.slug: arm for arm in ARMS}

# (metrics key, plot title): what the issue asks to see per arm.
CURVES = (
    ("eval/accuracy", "held-out greedy accuracy"),
    ("train/rollout/vr_accuracy", "rollout accuracy (sampled)"),
    ("train/rollout/length_mean", "response length (tokens)"),
    ("train/rollout/steps_mean", "steps per answer"),
    ("train/rollout/prm_min_mean", "process reward (worst step)"),
    ("train/rollout/frac_1_step", "fraction of 1-step answers"),
)


def select_arms(slugs: Sequence[str] | None) -> list[Arm]:
    """The named arms (DEFAULT_ARMS when none are named)."""
    if not slugs:
        slugs = DEFAULT_ARMS
    unknown = [s for s in slugs if s not in ARMS_BY_SLUG]
    if unknown:
        raise ValueError(f"--arms: unknown arm(s) {unknown}; choose from {list(ARMS_BY_SLUG)}.")
    return [ARMS_BY_SLUG[s] for s in slugs]


def arm_config(base, arm: Arm, num_seeds: int):
    """The base config with the arm's edit and `num_seeds`, validated and locked."""
    c = base.copy_and_resolve_references()
    c.unlock()
    arm.edit(c)
    c.num_seeds = int(num_seeds)
    config_lib.validate(c)
    c.lock()
    return c


def seed_dirs(workdir: str, arm: Arm, num_seeds: int, first_seed: int) -> list[str]:
    return metrics_log.seed_dirs(os.path.join(workdir, arm.slug), range(first_seed, first_seed + num_seeds))


def sweep_runs(base, arms: Sequence[Arm], num_seeds: int, workdir: str, prefix: str = "") -> list:
    """One `parallel_runs.Run` per arm, in workdir/<arm slug>, named `prefix` + slug."""
    return [
        parallel_runs.Run(prefix + arm.slug, arm_config(base, arm, num_seeds), os.path.join(workdir, arm.slug))
        for arm in arms
    ]


def run_sweep(
    base, arms: Sequence[Arm], num_seeds: int, workdir: str, build_task, show_progress=True, workers=1
) -> dict:
    """Trains every arm (resuming unfinished ones), `workers` at a time in their own processes
    (`purejax.parallel_runs`: the same results as one by one); returns {arm slug: wall seconds}.

    `build_task(config, show_progress)` gives an arm's task (`purejax.tasks.build_task`).
    """
    runs = sweep_runs(base, arms, num_seeds, workdir)
    return parallel_runs.train_all(runs, build_task, workers, show_progress)


# -------------------------------------------------------------------------- results


def _final(records, key):
    _, values = report.series(records, key)
    return values[-1] if values else math.nan


def _tail_mean(records, key, frac=0.2):
    """Mean over the last `frac` of the run (per-step rollout metrics are noisy)."""
    steps, values = report.series(records, key)
    if not values:
        return math.nan
    cut = steps[-1] - frac * (steps[-1] - steps[0])
    return float(np.mean([v for s, v in zip(steps, values) if s >= cut]))


def deepest_dip(accuracy) -> float:
    """The largest fall of held-out accuracy below its best so far: a collapse the run later
    recovers from leaves final == best, but not this."""
    return float(np.max(np.maximum.accumulate(accuracy) - accuracy)) if len(accuracy) else math.nan


def _first_alarm(records) -> int | None:
    for r in records:
        if any(v for k, v in r.items() if k.startswith("train/alarm/")):
            return int(r["step"])
    return None


def arm_results(workdir: str, arm: Arm, num_seeds: int, first_seed: int = 0, eval_count: int = 0) -> dict:
    """Per-seed numbers of one arm, and their mean/std (`eval_count`: held-out prompts per
    evaluation, for runs whose records predate `eval/count`)."""
    seeds = range(first_seed, first_seed + num_seeds)
    per_seed, accuracy_by_step = [], []
    for seed, d in zip(seeds, seed_dirs(workdir, arm, num_seeds, first_seed)):
        records = read_metrics(os.path.join(d, "metrics.jsonl"))
        if not records:  # a seed not run (yet): left out, the others keep their seed numbers
            continue
        eval_steps, accuracy = report.series(records, "eval/accuracy")
        accuracy_by_step.append(dict(zip(eval_steps, accuracy)))
        _, count = report.series(records, "eval/count")
        per_seed.append(
            {
                "seed": seed,
                "steps": int(records[-1]["step"]),
                "eval_count": int(count[-1]) if count else eval_count,
                "accuracy_start": accuracy[0] if accuracy else math.nan,
                "accuracy_final": accuracy[-1] if accuracy else math.nan,
                "accuracy_best": max(accuracy) if accuracy else math.nan,
                "accuracy_dip": deepest_dip(np.array(accuracy, float)),
                "steps_per_answer": _tail_mean(records, "train/rollout/steps_mean"),
                "steps_per_answer_start": report.series(records, "train/rollout/steps_mean")[1][0]
                if report.series(records, "train/rollout/steps_mean")[1]
                else math.nan,
                "length": _tail_mean(records, "train/rollout/length_mean"),
                "process_reward": _tail_mean(records, "train/rollout/prm_min_mean"),
                "reward_sum": _tail_mean(records, "train/rollout/process_reward_sum"),
                "frac_1_step": _tail_mean(records, "train/rollout/frac_1_step"),
                "rollout_accuracy": _tail_mean(records, "train/rollout/vr_accuracy"),
                "first_alarm": _first_alarm(records),
            }
        )
    summary = {"arm": arm.name, "slug": arm.slug, "seeds": len(per_seed), "per_seed": per_seed}
    for key in (
        "accuracy_start",
        "accuracy_final",
        "accuracy_best",
        "steps_per_answer",
        "steps_per_answer_start",
        "length",
        "process_reward",
        "reward_sum",
        "frac_1_step",
        "rollout_accuracy",
    ):
        values = np.array([s[key] for s in per_seed], float)
        summary[key] = float(values.mean()) if len(values) else math.nan
        summary[f"{key}_std"] = float(values.std()) if len(values) else math.nan
    summary["accuracy_curve"] = _mean_accuracy_curve(accuracy_by_step)
    summary["alarmed_seeds"] = sum(s["first_alarm"] is not None for s in per_seed)
    summary["accuracy_noise"] = _accuracy_noise(summary["accuracy_start"], per_seed)
    return summary


def _mean_accuracy_curve(accuracy_by_step: list[dict]) -> list[list[float]]:
    """[[step, seed-mean held-out accuracy], ...] over the steps every seed evaluated, from
    each seed's {step: accuracy} (the records arm_results has already read)."""
    steps = sorted(set.intersection(*(set(a) for a in accuracy_by_step))) if accuracy_by_step else []
    return [[int(s), float(np.mean([a[s] for a in accuracy_by_step]))] for s in steps]


def first_step_at(curve, level: float) -> int | None:
    """The first step of a [[step, value], ...] curve whose value is at least `level`."""
    return next((int(s) for s, v in curve if v >= level), None)


def _accuracy_noise(p: float, per_seed) -> float:
    """Standard error of a seed-mean held-out accuracy from the finite evaluation set alone
    (binomial, sqrt(p (1 - p) / n) per seed, / sqrt(seeds)); 0 when the count is unknown."""
    counts = [s["eval_count"] for s in per_seed if s["eval_count"]]
    if not counts or not math.isfinite(p):
        return 0.0
    return math.sqrt(p * (1 - p) / float(np.mean(counts))) / math.sqrt(len(counts))


def mean_curves(workdir, arm, num_seeds, first_seed):
    """Per metric of CURVES: (steps every seed logged, values [seed, step])."""
    runs = [
        read_metrics(os.path.join(d, "metrics.jsonl")) for d in seed_dirs(workdir, arm, num_seeds, first_seed)
    ]
    runs = [r for r in runs if r]
    curves = {}
    for key, _ in CURVES:
        per_seed = [dict(zip(*report.series(r, key))) for r in runs]
        steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
        curves[key] = (steps, np.array([[p[s] for s in steps] for p in per_seed], float))
    return curves


def plot_sweep(workdir: str, arms: Sequence[Arm], num_seeds: int, path: str, first_seed: int = 0) -> str:
    """One panel per curve, one line per arm (seed mean, shaded min-max over seeds)."""
    import matplotlib
    from matplotlib.figure import Figure

    cols = 3
    rows = math.ceil(len(CURVES) / cols)
    fig = Figure(figsize=(5.0 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    colors = matplotlib.colormaps["tab10"]
    for i, arm in enumerate(arms):
        curves = mean_curves(workdir, arm, num_seeds, first_seed)
        for ax, (key, title) in zip(axes.flat, CURVES):
            draw_curve(ax, key, title, *curves[key], color=colors(i), label=arm.name)
    if axes.flat[0].get_legend_handles_labels()[0]:  # no held-out curve yet: no legend to draw
        axes.flat[0].legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(CURVES) :]:
        ax.axis("off")
    fig.suptitle(f"credit assignment on the arithmetic miniature ({num_seeds} seeds per arm)", fontsize=11)
    return report.save_figure(fig, path)


def draw_curve(ax, key, title, steps, values, color, label):
    """One arm's curve on `ax`: the seed mean (smoothed for per-step rollout metrics), shaded
    min-max over seeds; nothing when no step was logged."""
    if not steps:
        return
    smooth = _smooth(values.mean(0)) if key.startswith("train/") else values.mean(0)
    ax.plot(steps, smooth, color=color, label=label, lw=1.4)
    ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.12, lw=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("RL step", fontsize=8)
    ax.tick_params(labelsize=7)


def _smooth(y, window: int = 9):
    """Centred moving average (per-step rollout metrics of 128 samples are noisy)."""
    if len(y) < window:
        return y
    kernel = np.ones(window) / window
    padded = np.pad(y, window // 2, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _pm(mean, std, scale=1.0, digits=1):
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def table(results: Sequence[dict]) -> str:
    """A markdown table: accuracy (points) before/after/best, behaviour at the end, alarms."""
    lines = [
        "| arm | seeds | accuracy start | accuracy final | best | steps/answer | length | "
        "worst-step reward | 1-step answers | seeds alarmed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['arm']} | {r['seeds']} | {_pm(r['accuracy_start'], r['accuracy_start_std'], 100)} | "
            f"{_pm(r['accuracy_final'], r['accuracy_final_std'], 100)} | "
            f"{_pm(r['accuracy_best'], r['accuracy_best_std'], 100)} | "
            f"{_pm(r['steps_per_answer'], r['steps_per_answer_std'], 1, 2)} | "
            f"{_pm(r['length'], r['length_std'], 1, 0)} | "
            f"{_pm(r['process_reward'], r['process_reward_std'], 1, 2)} | "
            f"{_pm(r['frac_1_step'], r['frac_1_step_std'], 100, 0)}% | {r['alarmed_seeds']} |"
        )
    lines.append(
        "\nAccuracy: greedy pass@1 on held-out problems, in points, mean ± std over seeds. "
        "Steps/answer, length, worst-step reward and 1-step answers: sampled rollouts, mean over "
        "the last 20% of steps."
    )
    return "\n".join(lines)


# The arms with min-form credit (soft_min, min, worst_step) and the PRM as the only reward.
PRM_ONLY_MIN_FORM = ("pure_prm", "soft_min_t0.01", "soft_min_t1", "min", "worst_step")
DRIFT_POINTS = 5.0  # a seed has drifted when it ends this far below its best accuracy, or alarmed


def seed_drifted(seed: dict) -> bool:
    """A seed ended >= DRIFT_POINTS below its best accuracy, or raised an alarm."""
    return 100 * (seed["accuracy_best"] - seed["accuracy_final"]) >= DRIFT_POINTS or seed["first_alarm"] is not None


def drifted_seeds(result: dict) -> int:
    """Seeds of an arm that drifted (`seed_drifted`)."""
    return sum(seed_drifted(s) for s in result["per_seed"])


def held_where_drifted(anchored: dict, drifting: dict) -> tuple[int, int]:
    """(seeds where `anchored` held, seeds where `drifting` drifted), over the seeds both ran:
    the paired count behind finding 5 (VR held *that* seed, not just as many seeds)."""
    anchored_by_seed = {s["seed"]: s for s in anchored["per_seed"]}
    pairs = [(anchored_by_seed[s["seed"]], s) for s in drifting["per_seed"] if s["seed"] in anchored_by_seed]
    drifted = [a for a, d in pairs if seed_drifted(d)]
    return sum(not seed_drifted(a) for a in drifted), len(drifted)


def seed_table(results: Sequence[dict]) -> str:
    """One row per seed, one column per arm: final accuracy (best), the deepest dip, 1-step
    answers at the end and the first alarm; bold where the seed drifted. Pairs the arms seed
    by seed."""
    seeds = sorted({s["seed"] for r in results for s in r["per_seed"]})
    lines = ["| seed | " + " | ".join(r["arm"] for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    for seed in seeds:
        cells = []
        for r in results:
            s = next((s for s in r["per_seed"] if s["seed"] == seed), None)
            if s is None:
                cells.append("")
                continue
            final = f"{100 * s['accuracy_final']:.1f}"
            alarm = "" if s["first_alarm"] is None else f", alarm at {s['first_alarm']}"
            cells.append(
                f"{f'**{final}**' if seed_drifted(s) else final} (best {100 * s['accuracy_best']:.1f}), "
                f"dip {100 * s['accuracy_dip']:.1f}, {100 * s['frac_1_step']:.0f}% 1-step{alarm}"
            )
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nPer seed: final held-out accuracy (best), in bold where the seed drifted (ended >= "
        f"{DRIFT_POINTS:.0f} points below its best, or alarmed); dip: the deepest fall below the best "
        "accuracy so far, in points (a collapse the run recovered from shows here); 1-step answers: "
        "sampled, mean over the last 20% of steps; alarm at N: the first step a reward-hacking alarm fired."
    )
    return "\n".join(lines)


def findings(results: dict[str, dict]) -> list[dict]:
    """The paper's five findings (PURE_SPEC §8), each checked from the numbers, shown or not."""
    out = []

    def add(name, shown, evidence):
        out.append({"finding": name, "shown": bool(shown), "evidence": evidence})

    def acc(slug, key="accuracy_final"):
        return 100 * results[slug][key] if slug in results else math.nan

    def noise(slug):
        return 100 * results[slug]["accuracy_noise"]

    if "sum" in results:
        r = results["sum"]
        drop = acc("sum", "accuracy_start") - acc("sum")
        add(
            "1. sum-form hacks or collapses",
            drop >= 10 or r["alarmed_seeds"] == r["seeds"],
            f"accuracy {acc('sum', 'accuracy_start'):.1f} -> {acc('sum'):.1f}; steps/answer "
            f"{r['steps_per_answer_start']:.2f} -> {r['steps_per_answer']:.2f}; "
            f"alarms in {r['alarmed_seeds']}/{r['seeds']} seeds",
        )
    if "pure_prm" in results and ("min" in results or "pure_vr" in results):
        # The paper: min-form PRM credit trains stably and reaches VR-level accuracy in ~30% of
        # the steps; PURE-PRM drifts later (4.). Stable: hard min without an alarm; VR-level:
        # PURE-PRM's seed-mean curve reaches PURE-VR's final accuracy within the noise.
        gain_soft = acc("pure_prm", "accuracy_best") - acc("pure_prm", "accuracy_start")
        bar = 2 * max(noise("pure_prm"), 1.0)
        shown = gain_soft > bar
        evidence = [f"PURE-PRM best {acc('pure_prm', 'accuracy_best'):.1f} (+{gain_soft:.1f})"]
        if "min" in results:
            r = results["min"]
            gain_min = acc("min") - acc("min", "accuracy_start")
            shown = shown and gain_min > bar and r["alarmed_seeds"] == 0
            evidence.append(
                f"hard min {acc('min', 'accuracy_start'):.1f} -> final {acc('min'):.1f} (+{gain_min:.1f}), "
                f"alarms in {r['alarmed_seeds']}/{r['seeds']} seeds"
            )
        if "pure_vr" in results:
            level = results["pure_vr"]["accuracy_final"] - bar / 100
            reached = first_step_at(results["pure_prm"]["accuracy_curve"], level)
            shown = shown and reached is not None
            steps = results["pure_vr"]["accuracy_curve"][-1][0] if results["pure_vr"]["accuracy_curve"] else 0
            when = (
                "never"
                if reached is None
                else f"at step {reached} ({100 * reached / max(steps, 1):.0f}% of PURE-VR's {steps} steps; "
                f"PURE-VR itself at step {first_step_at(results['pure_vr']['accuracy_curve'], level)})"
            )
            evidence.append(f"PURE-PRM reaches PURE-VR's final {acc('pure_vr'):.1f} (less {bar:.1f}) {when}")
        evidence.append(f"2 standard errors of the evaluation set {bar:.1f}")
        add("2. min-form improves over the warm start, to VR's level", shown, "; ".join(evidence))
    if "step_mean" in results:
        r = results["step_mean"]
        # step_mean subtracts the others' mean R / steps (R: summed transformed step rewards)
        # at every step end: a step costs that much when it is positive, and earns it when it
        # is negative (many wrong steps).
        per_step = r["reward_sum"] / max(r["steps_per_answer"], 1.0)
        why = (
            f"; the baseline subtracted per step, mean R / steps, is about {per_step:+.2f}, so each "
            f"extra step {'costs' if per_step > 0 else 'earns'} {abs(per_step):.2f}"
            if math.isfinite(per_step)
            else ""
        )
        # The finding is about the baseline: when PURE-PRM (the same credit, the token_mean
        # baseline) ends in one-step answers as well, the PRM's own hack did it, not step_mean.
        control = results["pure_prm"]["frac_1_step"] if "pure_prm" in results else None
        versus = (
            "no PURE-PRM arm to tell the baseline from the PRM's own hack"
            if control is None
            else f"PURE-PRM, token_mean baseline: {100 * control:.0f}%"
        )
        add(
            "3. step_mean drives answers to a single step",
            r["frac_1_step"] >= 0.5 and control is not None and control < 0.5,
            f"1-step answers {100 * r['frac_1_step']:.0f}% at the end ({versus}); steps/answer "
            f"{r['steps_per_answer_start']:.2f} -> {r['steps_per_answer']:.2f}{why}",
        )
    if "pure_prm" in results:
        r = results["pure_prm"]
        others = [slug for slug in PRM_ONLY_MIN_FORM[1:] if slug in results]
        evidence = "; ".join(
            f"{results[s]['arm']}: {drifted_seeds(results[s])}/{results[s]['seeds']}" for s in others
        )
        add(
            "4. PURE-PRM eventually drifts (in most seeds)",
            2 * drifted_seeds(r) > r["seeds"],
            f"PURE-PRM drifted in {drifted_seeds(r)}/{r['seeds']} seeds (>= {DRIFT_POINTS:.0f} points "
            f"below its best at the end, or an alarm): best {acc('pure_prm', 'accuracy_best'):.1f}, final "
            f"{acc('pure_prm'):.1f}, 1-step answers {100 * r['frac_1_step']:.0f}%"
            + (f"; other PRM-only min-form arms: {evidence}" if evidence else ""),
        )
    if "pure_prm_vr" in results and "pure_prm" in results:
        r = results["pure_prm_vr"]
        # The finding is a contrast, so PURE-PRM must drift in most seeds (finding 4's rule):
        # with one drifting seed of three, a stable PURE-PRM+VR may only be a delay, and a tie
        # of two stable arms shows nothing.
        p = results["pure_prm"]
        held, drifted = held_where_drifted(r, p)
        add(
            "5. PURE-PRM+VR stays anchored where PURE-PRM drifts",
            drifted_seeds(r) == 0 and 2 * drifted_seeds(p) > p["seeds"] and acc("pure_prm_vr") >= acc("pure_prm"),
            f"PURE-PRM+VR drifted in {drifted_seeds(r)}/{r['seeds']} seeds, final "
            f"{acc('pure_prm_vr'):.1f} (best {acc('pure_prm_vr', 'accuracy_best'):.1f}, 1-step answers "
            f"{100 * r['frac_1_step']:.0f}%); PURE-PRM final {acc('pure_prm'):.1f}, drifted in "
            f"{drifted_seeds(p)}/{p['seeds']} (1-step answers {100 * p['frac_1_step']:.0f}%); "
            f"PURE-PRM+VR held in {held} of the {drifted} seeds where PURE-PRM drifted",
        )
    return out


def write_report(
    workdir: str, arms, num_seeds: int, first_seed: int = 0, walls=None, eval_count=0, elapsed_s=None
) -> dict:
    """results.json, results.md and curves.png in workdir; returns the results. `walls` are the
    arms' wall seconds, `elapsed_s` the whole call's (less than their sum when arms ran at once)."""
    results = {arm.slug: arm_results(workdir, arm, num_seeds, first_seed, eval_count) for arm in arms}
    results = {k: v for k, v in results.items() if v["seeds"]}
    found = findings(results)
    plot = plot_sweep(
        workdir,
        [a for a in arms if a.slug in results],
        num_seeds,
        os.path.join(workdir, "curves.png"),
        first_seed,
    )
    lines = [table(list(results.values())), "", seed_table(list(results.values())), "", "Findings (PURE_SPEC §8):", ""]
    lines += [f"- {'shown' if f['shown'] else 'NOT shown'}: {f['finding']} ({f['evidence']})" for f in found]
    if walls:
        elapsed_s = sum(walls.values()) if elapsed_s is None else elapsed_s
        each = ", ".join(f"{slug} {wall / 60:.1f}" for slug, wall in walls.items())
        lines += ["", f"Wall time of this call: {elapsed_s / 60:.1f} min (each arm's, in min: {each})"]
    text = "\n".join(lines) + "\n"
    payload = {"results": results, "findings": found, "wall_s": walls or {}, "elapsed_s": elapsed_s, "plot": plot}
    for name, content in (
        ("results.md", text),
        ("results.json", json.dumps(payload, indent=1, default=float)),
    ):
        atomic.write_text(os.path.join(workdir, name), content)
    print(text)
    print(f"plots: {plot}\ntable: {os.path.join(workdir, 'results.md')}")
    return payload
