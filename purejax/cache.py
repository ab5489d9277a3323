"""Where purejax keeps what it builds and can rebuild: compiled programs, the miniature's
warm start and learned PRM. One root, so one variable moves all of it."""

from __future__ import annotations

import contextlib
import fcntl
import os


def cache_root(cache_dir: str = "") -> str:
    """`cache_dir`, else $PUREJAX_CACHE, else ~/.cache/purejax."""
    return (
        cache_dir
        or os.environ.get("PUREJAX_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "purejax")
    )


@contextlib.contextmanager
def building(path: str):
    """Holds an exclusive lock on `path` + '.lock' while the caller checks for and builds `path`:
    processes that ask for the same entry at once (`purejax.parallel_runs`) take turns, so the
    first builds it and the others then read it. The lock goes with the process if it dies."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
