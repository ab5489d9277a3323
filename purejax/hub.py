"""Hugging Face Hub ids (models and datasets) resolved through huggingface_hub's local cache.

A config may name a checkpoint or a dataset by its Hub id (`Qwen/Qwen2.5-Math-7B`) instead of
a local directory. The id resolves to a snapshot directory in the local cache
(`$HF_HUB_CACHE`, default `~/.cache/huggingface/hub`): downloaded there when the network is
up, read from the cache alone when HF_HUB_OFFLINE is set or the network fails. The
environment is read at call time, not at import, so a test or a launcher may set it late.
"""

from __future__ import annotations

import os
import re

# ORG/NAME as the Hub spells it: no dots or dashes at the ends, no path segments beyond two.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = ("1", "on", "yes", "true")


def is_hub_id(text: str) -> bool:
    """True when `text` reads as ORG/NAME and is not an existing local path."""
    return bool(_HUB_ID.match(text or "")) and not os.path.exists(text) and ".." not in text


def offline() -> bool:
    """HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE) is set."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    return any(os.environ.get(n, "").strip().lower() in _TRUE for n in names)


def cache_dir() -> str:
    """The hub cache huggingface_hub uses: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return os.path.join(home, "hub")


def download_command(repo: str, repo_type: str = "model", local_dir: str | None = None) -> str:
    """The current CLI command (huggingface_hub >= 0.34 ships `hf`, not `huggingface-cli`)."""
    command = f"hf download {repo}"
    if repo_type != "model":
        command += f" --repo-type {repo_type}"
    if local_dir:
        command += f" --local-dir {local_dir}"
    return command


class NotCached(FileNotFoundError):
    """A Hub id that is neither in the local cache nor downloadable now."""


def snapshot(repo: str, repo_type: str = "model", allow_patterns=None) -> str:
    """The local snapshot directory of Hub repo `repo`, from the cache when offline.

    Online, huggingface_hub fetches what is missing (and only `allow_patterns`, when given);
    on a network failure it falls back to the cache. Raises NotCached naming the repo, the
    cache directory and the `hf download` command.
    """
    from huggingface_hub import snapshot_download

    kwargs = dict(repo_id=repo, repo_type=repo_type, cache_dir=cache_dir(), allow_patterns=allow_patterns)
    network_error = None
    if not offline():
        try:
            return snapshot_download(**kwargs)
        except Exception as error:  # noqa: BLE001 - no network, proxy, gated repo...: try the cache before failing
            network_error = error
    try:
        return snapshot_download(local_files_only=True, **kwargs)
    except Exception as error:  # noqa: BLE001
        why = f" (the Hub could not be reached: {type(network_error).__name__})" if network_error else ""
        raise NotCached(
            f"{repo!r} is not in the local Hugging Face cache {cache_dir()}{why} "
            f"({type(error).__name__}). Download it on a machine with internet access: "
            f"`{download_command(repo, repo_type)}` (HF_HUB_CACHE picks the cache), or "
            f"`{download_command(repo, repo_type, 'DIR')}` and pass DIR instead of the id."
        ) from None
