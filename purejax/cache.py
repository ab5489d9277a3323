"""Where purejax keeps what it builds and can rebuild: compiled programs, the miniature's
warm start and learned PRM. One root, so one variable moves all of it."""

from __future__ import annotations

import os


def cache_root(cache_dir: str = "") -> str:
    """`cache_dir`, else $PUREJAX_CACHE, else ~/.cache/purejax."""
    return (
        cache_dir
        or os.environ.get("PUREJAX_CACHE")
        or os.path.join(os.path.expanduser("~"), ".cache", "purejax")
    )
