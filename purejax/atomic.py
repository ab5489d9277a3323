"""Whole files or nothing: a file written here is either complete or absent, never torn.

The text goes to a temporary file in the same directory (same filesystem, so the rename is
atomic), is flushed to disk, and is renamed over the target; a failure removes the temporary.
tempfile creates its files 0600 and directories 0700 whatever the umask; what is renamed into
place gets the mode a plain open() / mkdir would have given (`publish_mode`), so teammates on a
shared cluster can read results when the umask lets them.
"""

from __future__ import annotations

import os
import tempfile


def _umask() -> int:
    # The only portable way to read the umask is to set it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str) -> None:
    """Gives `path` (a file, or a directory tree) the modes open()/mkdir would under the umask."""
    mask = _umask()
    if not os.path.isdir(path):
        os.chmod(path, 0o666 & ~mask)
        return
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


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
        publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
