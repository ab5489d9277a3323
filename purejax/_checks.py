"""Argument checks shared by the public functions.

They run at trace time (shapes and dtypes are static), so a wrong call fails
before anything compiles, with a message that names the function and the
argument. Values that may be traced (a temperature swept with vmap) are only
checked when they are concrete.
"""

from __future__ import annotations

import difflib
from typing import Iterable

import chex
import jax
import jax.numpy as jnp
import numpy as np

_RANK_HINT = {1: "[T] (one sequence; batch with jax.vmap)", 2: "[K, T] (one group of K responses)"}


def rank(fn: str, **arrays) -> None:
    """`rank("f", r_t=(x, 1))` asserts x has rank 1, naming `r_t` on failure."""
    for name, (x, expected) in arrays.items():
        chex.assert_rank(
            x,
            expected,
            custom_message=f"{fn}: argument `{name}` must have shape "
            f"{_RANK_HINT.get(expected, f'of rank {expected}')}",
        )


def same_shape(fn: str, **arrays) -> None:
    """All named arrays have one shape; the message lists every shape."""
    shapes = {name: tuple(np.shape(x)) for name, x in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"`{n}` {s}" for n, s in shapes.items())
        raise ValueError(f"{fn}: arguments must have the same shape, got {listed}.")


def floating(fn: str, **arrays) -> None:
    for name, x in arrays.items():
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(
                f"{fn}: argument `{name}` must be a float array, got dtype "
                f"{jnp.result_type(x)}. Cast it with .astype(jnp.float32)."
            )


def integer(fn: str, **arrays) -> None:
    for name, x in arrays.items():
        if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
            raise TypeError(
                f"{fn}: argument `{name}` must be an integer array of token "
                f"ids, got dtype {jnp.result_type(x)}."
            )


def mask(fn: str, **arrays) -> None:
    """Masks are bool or 0/1 numbers; anything else (complex, ...) is refused."""
    for name, x in arrays.items():
        dtype = jnp.result_type(x)
        if not (
            dtype == jnp.bool_ or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
        ):
            raise TypeError(f"{fn}: argument `{name}` must be a bool or 0/1 mask, got dtype {dtype}.")


def positive(fn: str, name: str, value) -> None:
    """Checks `value > 0` when it is concrete; traced values pass through."""
    if isinstance(value, jax.core.Tracer):
        return
    if np.any(np.asarray(value) <= 0):
        raise ValueError(f"{fn}: `{name}` must be > 0, got {value}.")


def choice(fn: str, name: str, value: str, allowed: Iterable[str]) -> str:
    """Returns `value` if it is one of `allowed`, else a ValueError listing them."""
    allowed = tuple(allowed)
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{fn}: unknown {name} {value!r}; allowed values are {', '.join(map(repr, allowed))}.{hint}"
        )
    return value
