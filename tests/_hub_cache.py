"""A fake Hugging Face hub cache for offline tests: files laid out exactly as huggingface_hub
stores a download (`<cache>/<type>s--ORG--NAME/{refs/main, snapshots/<commit>/...}`), so
`snapshot_download(..., local_files_only=True)` finds them without any network."""

from __future__ import annotations

import os
import shutil

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_cache(cache: str, repo: str, repo_type: str, files: dict[str, str]) -> str:
    """Copies `files` (path in the repo -> local file or directory) into the cache as `repo`'s
    main revision; returns the snapshot directory."""
    root = os.path.join(str(cache), f"{repo_type}s--{repo.replace('/', '--')}")
    snapshot = os.path.join(root, "snapshots", COMMIT)
    for name, source in files.items():
        target = os.path.join(snapshot, name)
        if os.path.isdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(source, target)
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(COMMIT)
    return snapshot


def offline_cache(monkeypatch, cache) -> str:
    """Points huggingface_hub at `cache` and forbids the network, for this test only."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return str(cache)
