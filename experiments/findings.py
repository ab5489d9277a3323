"""All five of the paper's findings in one command, each in the regime where the miniature shows it.

    python -m experiments.findings --workdir runs/findings --jobs 2 [--seeds 3] [--regimes guess ...]

Runs the regimes below (`REGIMES`) on configs/compare_credit.py, each a
comparison sweep of the arms it needs in WORKDIR/<regime>/ (its results.md and curves.png as
`experiments.compare_credit` writes them):
  main_warm_start  sum, PURE-PRM, PURE-VR and hard min from the main job's warm start, 200 steps (1, 2);
  giant_step       step_mean and PURE-PRM with a giant step in the warm start's support, 300 steps (3);
  guess            PURE-PRM and PURE-PRM+VR with an answer without work in support, scored
                   -0.25, 500 steps (4, 5).
Then writes WORKDIR/findings.md and findings.json (each finding checked from its regime's
numbers, shown or not) and findings.png. For 3 seeds on a 2-core CPU: 36 minutes with --jobs 2
(two runs at once, the same results), 45 one by one. Overrides given here come after each
regime's own, so they win (a `--config.total_steps` sets every regime's length). Re-running
resumes; --regimes runs only those, and the summary covers every regime on disk;
--report-only rebuilds the reports.
"""

from __future__ import annotations

import sys
import time

from experiments import compare_credit
from purejax import config as config_lib
from purejax import paper_findings

# The settings are the README's studies: the main warm start over 200 steps (sum-form collapses
# into filler by then), the giant-step study (finding 3 with a giant step in the policy's
# support) and the study at guess score -0.25 (margin about +0.18), run to the paper's 500
# steps rather than the study's 1000: each of the 30 seed runs measured there (15 per arm) had
# drifted or held by step 500 as it had by step 1000, and the half costs half.
REGIMES = (
    paper_findings.Regime(
        "main_warm_start",
        "main job's warm start",
        ("total_steps=200",),
        ("sum", "pure_prm", "pure_vr", "min"),
        (1, 2),
        paper_findings.STEPS,
    ),
    paper_findings.Regime(
        "giant_step",
        "a giant step in support, judged line by line",
        (
            "policy.path=builtin:arith_merged",
            "rewards.prm.wrong=0.0",
            "rewards.prm.unchecked=0.25",
            "rewards.prm.multiline_steps=by_line",
            "total_steps=300",
        ),
        ("step_mean", "pure_prm"),
        (3,),
        paper_findings.ONE_STEP,
    ),
    paper_findings.Regime(
        "guess",
        "an answer without work in support, scored -0.25",
        ("policy.path=builtin:arith_guess", "rewards.prm.unchecked=-0.25", "total_steps=500"),
        ("pure_prm", "pure_prm_vr"),
        (4, 5),
        paper_findings.ONE_STEP,
    ),
)
REGIMES_BY_SLUG = {r.slug: r for r in REGIMES}


def select_regimes(slugs):
    """The named regimes (all when none are named), in REGIMES' order."""
    unknown = [s for s in slugs or () if s not in REGIMES_BY_SLUG]
    if unknown:
        raise ValueError(f"--regimes: unknown regime(s) {unknown}; choose from {list(REGIMES_BY_SLUG)}.")
    return [r for r in REGIMES if not slugs or r.slug in slugs]


def main(argv=None):
    parser = compare_credit.sweep_parser(__doc__)
    parser.add_argument("--regimes", nargs="+", help=f"regime names (default: all): {', '.join(REGIMES_BY_SLUG)}")
    args, overrides = compare_credit.parse_sweep(parser, argv, "--config.seed=3")
    from purejax import compare

    try:
        regimes = select_regimes(args.regimes)
        compare.check_overrides(overrides)
        bases = {r.slug: config_lib.load(args.config, [*r.overrides, *overrides]) for r in regimes}
    except (ValueError, config_lib.ConfigError) as error:
        sys.exit(f"error: {error}")
    from purejax import parallel_runs, tasks, xla_cache

    xla_cache.enable()
    walls = elapsed = None
    if not args.report_only:
        for regime in regimes:
            print(
                f"== {regime.slug} (findings {', '.join(map(str, regime.findings))}): {regime.title}; "
                f"{len(regime.arms)} arms x {bases[regime.slug].total_steps} steps x {args.seeds} seeds",
                flush=True,
            )
        runs = [
            run
            for regime in regimes
            for run in compare.sweep_runs(
                bases[regime.slug],
                compare.select_arms(regime.arms),
                args.seeds,
                paper_findings.regime_dir(args.workdir, regime),
                prefix=f"{regime.slug}/",
            )
        ]
        start = time.perf_counter()
        try:
            run_walls = parallel_runs.train_all(runs, tasks.build_task, args.jobs, not args.quiet)
        except parallel_runs.RunsFailed as error:
            sys.exit(f"error: {error}")
        elapsed = time.perf_counter() - start
        walls = {r.slug: sum(w for name, w in run_walls.items() if name.startswith(f"{r.slug}/")) for r in regimes}
    first_seed = int(next(iter(bases.values())).seed)
    try:
        # Over every regime on disk, not only the ones run now: findings.md is the workdir's.
        paper_findings.write_summary(args.workdir, REGIMES, args.seeds, first_seed, walls, elapsed)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
