"""A persistent XLA compilation cache for the experiment scripts.

A run compiles its train step, sampler, PRM scorer and evaluator once; JAX can keep those
executables on disk so the next run with the same shapes (a re-run, a resume, another seed)
loads them instead of compiling again. The scripts in experiments/ call `enable()` before
their first compile. The cache lives under the purejax cache root
($PUREJAX_CACHE or ~/.cache/purejax) in `xla/`.

JAX's own settings win: with JAX_COMPILATION_CACHE_DIR set, that directory is used as is,
and JAX_ENABLE_COMPILATION_CACHE=false turns the cache off. A cached executable is exactly
what XLA compiled, so results do not depend on a hit; the cache key covers the program, the
XLA flags, the jax version and the devices.
"""

from __future__ import annotations

import os
import warnings

from purejax.cache import cache_root

# Cache programs that take at least this long to compile. JAX's default, 1 s, would skip
# most of the miniature's programs and of the test suite's, which compile in 0.1-1 s each.
MIN_COMPILE_SECONDS = 0.1


def default_dir() -> str:
    """$PUREJAX_CACHE/xla, else ~/.cache/purejax/xla."""
    return os.path.join(cache_root(), "xla")


def enable(cache_dir: str = "") -> str | None:
    """Turns the persistent cache on at `cache_dir` (default `default_dir()`); returns the directory.

    Returns the directory in use, or None when the cache is off: turned off by the user, or
    the directory cannot be written (a warning says so; the run goes on without it).
    """
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return None
    if jax.config.jax_compilation_cache_dir:  # JAX_COMPILATION_CACHE_DIR, or set by the caller
        return jax.config.jax_compilation_cache_dir
    cache_dir = cache_dir or default_dir()
    try:
        os.makedirs(cache_dir, exist_ok=True)
        writable = os.access(cache_dir, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        # Otherwise JAX warns at every compile; one warning, and the run goes on uncached.
        warnings.warn(
            f"XLA compilation cache off: cannot write {cache_dir}. Set PUREJAX_CACHE (or "
            "JAX_COMPILATION_CACHE_DIR) to a writable directory to keep compiled programs.",
            stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return cache_dir
