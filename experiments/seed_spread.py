"""The main job over warm-start (SFT) seeds x RL seeds: the spread behind the README's numbers.

    python -m experiments.seed_spread --workdir runs/seed_spread [--sft-seeds 0 1 2] [--seeds 3] [--jobs 2]

For each SFT seed N, trains `configs/arith_pure.py` from the warm start `builtin:arith@N`
with RL seeds 0..seeds-1 in one run (workdir/sft_N/seed_S, resumable), then
prints a table of held-out accuracy before -> after per run, and the mean and the worst
gain over all runs. The last line printed is one JSON object with those numbers.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from purejax import cli
from purejax import config as config_lib


def gains_table(rows) -> str:
    """Markdown: one line per (SFT seed, RL seed), then the mean and the worst gain."""
    lines = ["| SFT seed | RL seed | held-out before | after | gain (points) |", "|---|---|---|---|---|"]
    for sft, rl, before, after in rows:
        lines.append(f"| {sft} | {rl} | {before:.3f} | {after:.3f} | {100 * (after - before):+.1f} |")
    gains = [100 * (after - before) for *_, before, after in rows]
    lines.append(f"\nmean gain {np.mean(gains):+.1f} points, worst {min(gains):+.1f}, over {len(gains)} runs")
    return "\n".join(lines)


def main(argv=None):
    parser = cli.parser(__doc__, config_lib.defaults())
    parser.add_argument("--config", default=os.path.join("configs", "arith_pure.py"))
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--sft-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seeds", type=int, default=3, help="RL seeds per warm start (one run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    cli.add_jobs(parser)
    args, overrides = cli.parse(parser, sys.argv[1:] if argv is None else argv)
    if args.seeds < 1 or any(s < 0 for s in args.sft_seeds):
        parser.error("--seeds must be >= 1 and --sft-seeds >= 0")
    cli.check_jobs(parser, args)
    configs = {}
    try:
        for sft in args.sft_seeds:
            extra = [f"config.policy.path=builtin:arith@{sft}", f"config.num_seeds={args.seeds}"]
            configs[sft] = config_lib.load(args.config, list(overrides) + extra)
    except config_lib.ConfigError as error:
        sys.exit(f"error: {error}")
    from purejax import metrics_log, parallel_runs, report, tasks, xla_cache

    xla_cache.enable()
    workdirs = {sft: os.path.join(args.workdir, f"sft_{sft}") for sft in configs}
    runs = [parallel_runs.Run(f"sft_{sft}", config, workdirs[sft]) for sft, config in configs.items()]
    try:
        parallel_runs.train_all(runs, tasks.build_task, args.jobs, not args.quiet)
    except parallel_runs.RunsFailed as error:
        sys.exit(f"error: {error}")
    rows = []
    for sft, config in configs.items():
        workdir = workdirs[sft]
        seeds = range(int(config.seed), int(config.seed) + args.seeds)
        for seed, run_dir in zip(seeds, metrics_log.seed_dirs(workdir, seeds)):
            _, accuracy = report.series(
                metrics_log.read_metrics(os.path.join(run_dir, "metrics.jsonl")), "eval/accuracy"
            )
            rows.append((sft, seed, accuracy[0], accuracy[-1]))
    print(gains_table(rows))
    gains = [100 * (after - before) for *_, before, after in rows]
    print(json.dumps({"mean_gain": float(np.mean(gains)), "worst_gain": float(min(gains)), "runs": rows}))


if __name__ == "__main__":
    main()
