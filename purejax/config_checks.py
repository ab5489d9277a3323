"""Generic checks of ConfigDict fields: each failure is ONE ConfigError naming the dotted field,
what is allowed and, for a misspelling, the closest valid value."""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Mapping, Sequence

import ml_collections

# Every float ends up in float32 arithmetic (jitted) or in a host timer; beyond this it is inf.
FLOAT32_MAX = 3.4028234663852886e38


class ConfigError(ValueError):
    """An invalid configuration; the message names the dotted field and what is allowed."""


def fail(path: str, problem: str, allowed=None, got: Any = None):
    message = f"config.{path}: {problem}"
    if allowed is not None:
        allowed = list(allowed)
        message += f"; allowed: {', '.join(map(repr, allowed))}"
        if isinstance(got, str):
            close = difflib.get_close_matches(got, [str(a) for a in allowed], n=1)
            if close and close[0] != got:
                message += f". Did you mean {close[0]!r}"
                raise ConfigError(message + "?")
    raise ConfigError(message + ".")


def choice(*allowed) -> Callable:
    def check(path, value):
        if value not in allowed:
            fail(path, f"got {value!r}", allowed=allowed, got=value)

    return check


def value_range(low=None, high=None, low_open=False, high_open=False, zero_ok=False) -> Callable:
    def check(path, value):
        if zero_ok and value == 0:
            return
        bad = (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and (value > high or (high_open and value == high))
        )
        if bad:
            lo = "-inf" if low is None else f"{low}"
            hi = "inf" if high is None else f"{high}"
            interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
            fail(path, f"must be in {interval}{' or 0 (off)' if zero_ok else ''}, got {value!r}")

    return check


positive = value_range(0, low_open=True)
non_negative = value_range(0)
unit = value_range(0, 1)

def type_name(value) -> str:
    return type(value).__name__


def check_type(path: str, value, default) -> None:
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, (tuple, list)):
        ok = isinstance(value, (tuple, list))
    elif isinstance(default, (dict, ml_collections.ConfigDict)):
        ok = isinstance(value, (dict, ml_collections.ConfigDict))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        fail(path, f"must be a {type_name(default)}, got {type_name(value)} {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        fail(path, f"must be a finite number within float32 range (|x| <= 3.4e38), got {value!r}")


def items(section) -> dict:
    return dict(section.items()) if hasattr(section, "items") else dict(section)


def check_keys(path: str, actual: Mapping, expected: Sequence[str]) -> None:
    for key in actual:
        if key not in expected:
            fail(f"{path}{key}", "unknown key", allowed=expected, got=key)
    for key in expected:
        if key not in actual:
            fail(
                f"{path}{key}",
                "missing key (build configs from purejax.config.defaults() and reward_source())",
            )
