"""Whole files or nothing: a file written here is either complete or absent, never torn.

The text goes to a temporary file in the same directory (same filesystem, so the rename is
atomic), is flushed to disk, and is renamed over the target; a failure removes the temporary.
"""

from __future__ import annotations

import os
import tempfile


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically, creating its directory if needed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
