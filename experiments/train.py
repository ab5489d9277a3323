"""Train a policy with PURE.

    python -m experiments.train --config configs/arith_pure.py --workdir DIR [--config.key=value ...]

Re-running the same command continues from the latest checkpoint in DIR.
Writes DIR/metrics.jsonl (one JSON object per step), DIR/tensorboard,
DIR/samples/ and DIR/checkpoints/.
"""

from __future__ import annotations

import sys

from purejax import cli
from purejax import config as config_lib


def parse(argv):
    parser = cli.parser(__doc__, config_lib.defaults())
    parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
    parser.add_argument("--workdir", required=True, help="where metrics, samples and checkpoints go")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return cli.parse(parser, argv)


def main(argv=None):
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    try:
        config = config_lib.load(args.config, overrides)
    except config_lib.ConfigError as error:
        sys.exit(f"error: {error}")
    # After validation: a bad config fails before JAX starts.
    from purejax import run_record

    try:
        run_record.check_workdir(args.workdir)  # a file or unwritable workdir fails in milliseconds
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    import jax

    from purejax import distributed, report, tasks, trainer, xla_cache
    from purejax.checkpoint import CheckpointError

    # Multi-host: join the other processes before any JAX computation (no-op for one process).
    distributed.initialize(config)
    xla_cache.enable()
    task = tasks.build_task(config, show_progress=not args.quiet)
    run = trainer.Trainer(config, task, args.workdir, show_progress=not args.quiet)
    try:
        run.run()
    except (trainer.Diverged, trainer.PastTotalSteps, run_record.ConfigMismatchError, CheckpointError) as error:
        sys.exit(f"error: {error}")
    if jax.process_index() == 0:
        for run_dir in run.run_dirs:
            print(report.summarize(run_dir))


if __name__ == "__main__":
    main()
