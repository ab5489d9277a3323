"""Compare credit-assignment arms on one base config, several seeds each in one run.

    python -m experiments.compare_credit --workdir runs/compare_credit [--seeds 3] [--arms sum min ...] [--jobs 2]

Trains the paper's arms (purejax.compare.DEFAULT_ARMS: PURE-PRM, PURE-PRM+VR and PURE-VR
with soft-min credit at T = 0.1; sum; soft-min with the step_mean baseline; and as extras
hard min and worst_step; `--arms min_vr10 soft_min_t0.01 soft_min_t1` adds the main job's
recipe and the soft-min temperature ablation) with all its seeds in one run, then
writes WORKDIR/curves.png (accuracy, response
length, steps per answer, process reward against training step),
WORKDIR/results.md (a table and the paper's findings, each checked from the
numbers) and WORKDIR/results.json. Re-running resumes an interrupted sweep;
--report-only rebuilds the report from what is on disk. --jobs 2 trains two arms at once
(the same results; 11.6 min instead of 13.7 on a 2-core CPU).
"""

from __future__ import annotations

import os
import sys
import time

from purejax import cli
from purejax import config as config_lib


def sweep_parser(description: str):
    """The arguments of every sweep script (this one, anchoring_map, findings)."""
    parser = cli.parser(description, config_lib.defaults())
    parser.add_argument("--config", default=os.path.join("configs", "compare_credit.py"))
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (seed, seed+1, ...)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the reports from what is on disk")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    cli.add_jobs(parser)
    return parser


def parse_sweep(parser, argv, example: str):
    """(args, overrides) of a sweep script's command line, --seeds checked."""
    args, overrides = cli.parse(parser, sys.argv[1:] if argv is None else argv, example)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    cli.check_jobs(parser, args)
    return args, overrides


def main(argv=None):
    parser = sweep_parser(__doc__)
    parser.add_argument("--arms", nargs="*", help="arm names (default: all); see purejax.compare.ARMS")
    args, overrides = parse_sweep(parser, argv, "--config.total_steps=50")
    from purejax import compare

    try:
        compare.check_overrides(overrides)
        base = config_lib.load(args.config, overrides)
    except (ValueError, config_lib.ConfigError) as error:
        sys.exit(f"error: {error}")
    from purejax import parallel_runs, tasks, xla_cache

    xla_cache.enable()

    try:
        arms = compare.select_arms(args.arms)
    except ValueError as error:
        sys.exit(f"error: {error}")
    walls = elapsed = None
    if not args.report_only:
        start = time.perf_counter()
        try:
            walls = compare.run_sweep(
                base, arms, args.seeds, args.workdir, tasks.build_task, not args.quiet, args.jobs
            )
        except parallel_runs.RunsFailed as error:
            sys.exit(f"error: {error}")
        elapsed = time.perf_counter() - start
    compare.write_report(
        args.workdir, arms, args.seeds, int(base.seed), walls, int(base.eval.num_prompts), elapsed
    )


if __name__ == "__main__":
    main()
