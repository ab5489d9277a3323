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
