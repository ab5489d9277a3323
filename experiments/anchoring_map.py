"""Map where 10% VR anchors PURE-PRM: the comparison's arms at several scripted-PRM scores of
an answer without work, from the warm start that sometimes writes one.

    python -m experiments.anchoring_map --workdir runs/anchoring [--scores 0.9 0.5 0.2 -0.2 -0.3 -0.4]

For each score s, runs `experiments.compare_credit`'s arms (default: PURE-PRM, PURE-PRM+VR,
step_mean) with `--config.rewards.prm.unchecked=s` into WORKDIR/unchecked_+s.ss, on
configs/compare_credit.py with `policy.path=builtin:arith_guess` and 200 steps (overrides
given here come after those, so they win). Then writes WORKDIR/map.md (per score and arm:
the hack's margin, which seeds drifted and when, best and final accuracy), map.json and
map.png (`purejax.anchoring` says what the margin is). Re-running resumes; --report-only
rebuilds the map from what is on disk.
"""

from __future__ import annotations

import os
import sys

from experiments import compare_credit
from purejax import config as config_lib

DEFAULT_SCORES = (0.9, 0.5, 0.2, -0.2, -0.3, -0.4)
DEFAULT_ARMS = ("pure_prm", "pure_prm_vr", "step_mean")
BASE_OVERRIDES = ("policy.path=builtin:arith_guess", "total_steps=200")


def main(argv=None):
    parser = compare_credit.sweep_parser(__doc__)
    parser.add_argument("--scores", type=float, nargs="+", default=list(DEFAULT_SCORES))
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), help="see purejax.compare.ARMS")
    args, overrides = compare_credit.parse_sweep(parser, argv, "--config.total_steps=100")
    bad = [s for s in args.scores if not -1.0 <= s <= 1.0]
    if bad:
        parser.error(f"--scores must lie in [-1, 1] (PRM rewards are 2p - 1), got {bad}")
    from purejax import compare

    try:
        compare.check_overrides(overrides)
        bases = {
            s: config_lib.load(args.config, [*BASE_OVERRIDES, *overrides, f"rewards.prm.unchecked={s}"])
            for s in args.scores
        }
    except (ValueError, config_lib.ConfigError) as error:
        sys.exit(f"error: {error}")

    from purejax import anchoring, parallel_runs, tasks, xla_cache

    xla_cache.enable()
    try:
        arms = compare.select_arms(args.arms)
    except ValueError as error:
        sys.exit(f"error: {error}")
    first_seed = int(next(iter(bases.values())).seed)
    if not args.report_only:
        runs = [
            run
            for score, base in bases.items()
            for run in compare.sweep_runs(
                base,
                arms,
                args.seeds,
                anchoring.score_dir(args.workdir, score),
                prefix=f"unchecked {score:+.2f}/",
            )
        ]
        try:
            parallel_runs.train_all(runs, tasks.build_task, args.jobs, not args.quiet)
        except parallel_runs.RunsFailed as error:
            sys.exit(f"error: {error}")
    for score, base in bases.items():
        out = anchoring.score_dir(args.workdir, score)
        if os.path.isdir(out):
            compare.write_report(out, arms, args.seeds, first_seed, eval_count=int(base.eval.num_prompts))
    try:
        anchoring.write_map(args.workdir, args.scores, arms, args.seeds, first_seed)
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
