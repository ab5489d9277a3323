"""Command-line conventions of the experiment scripts, as ml_collections users know them.

    python -m experiments.train --config configs/arith_pure.py --workdir DIR \\
        --config.optim.lr=1e-6 --config.rollout.temperature 0.7

* `--config.KEY=VALUE` and `--config.KEY VALUE` override a dotted field (values are Python
  literals, or plain strings such as `min`);
* `--config=FILE.py:ARG` calls `get_config(ARG)` (`purejax.config.load`);
* `--help` lists every key of the schema, and the README's configuration reference says what
  each one means.

Values go through purejax's own validation afterwards, so a misspelt key still fails with the
closest valid one suggested.
"""

from __future__ import annotations

import argparse
from typing import Sequence

_OVERRIDE = "--config."


def parser(description: str, schema=None) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help ends with the override syntax and, given `schema` (a
    ConfigDict of defaults), every key it has, section by section."""
    epilog = (
        "config overrides: --config.KEY=VALUE or --config.KEY VALUE, KEY dotted (e.g. optim.lr); "
        "--config=FILE.py:ARG passes ARG to get_config()."
    )
    if schema is not None:
        lines = []
        for section, value in schema.items():
            if hasattr(value, "items") and value:
                lines.append(f"  {section}: {', '.join(value.keys())}")
            else:
                lines.append(f"  {section}")
        epilog += (
            "\n\nconfig keys (defaults and meanings: README.md 'Configuration reference', or "
            "`python -m experiments.config_reference`):\n" + "\n".join(lines)
        )
    return argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def parse(parser: argparse.ArgumentParser, argv: Sequence[str], example: str = "--config.optim.lr=1e-6"):
    """(args, overrides as 'key=value' strings) of `argv`; anything unknown is a usage error."""
    args, rest = parser.parse_known_args(list(argv))
    overrides, i = [], 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith(_OVERRIDE):
            parser.error(f"unrecognised argument {item!r}; overrides look like {example}")
        if "=" in item:
            overrides.append(item[2:])
        elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            overrides.append(f"{item[2:]}={rest[i + 1]}")
            i += 1
        else:
            parser.error(f"{item} needs a value: {item}=VALUE or {item} VALUE")
        i += 1
    return args, overrides


def add_jobs(parser: argparse.ArgumentParser) -> None:
    """--jobs N of the scripts that train several runs (`purejax.parallel_runs`); check with
    `check_jobs` after parsing."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at once, each in its own process, with the results they give one by one "
        "(purejax.parallel_runs); 2 on a 2-core CPU makes a sweep 1.2-1.3x faster. Keep 1 on a GPU or TPU, "
        "where each process would claim the accelerator's memory.",
    )


def check_jobs(parser: argparse.ArgumentParser, args) -> None:
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
