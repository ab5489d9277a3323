"""Where the paper's checkpoints come from, and what to do when one is missing.

`config.policy.path` / `config.prm.path` are a local HF checkpoint directory or a Hub id
(`Qwen/Qwen2.5-Math-7B`) resolved through huggingface_hub's local cache (purejax.hub:
downloaded into the cache when online, read from it alone when HF_HUB_OFFLINE is set or the
network fails). The real configs (configs/qwen25_*.py) use the Hub ids, unless
$PUREJAX_MODELS names a directory holding one sub-directory per checkpoint:

    hf download Qwen/Qwen2.5-Math-7B                       # into the HF cache, or:
    export PUREJAX_MODELS=/data/models
    hf download Qwen/Qwen2.5-Math-7B --local-dir $PUREJAX_MODELS/Qwen2.5-Math-7B
    hf download jinachris/PURE-PRM-7B --local-dir $PUREJAX_MODELS/PURE-PRM-7B

Any other local directory works too: `--config.policy.path=/elsewhere/Qwen2.5-Math-7B`.
"""

from __future__ import annotations

import os

from purejax import hub

# "" = no local model directory: the configs name Hub ids.
MODELS_DIR = os.environ.get("PUREJAX_MODELS", "")

# Local directory name -> the HF repository it is downloaded from (docs/pure.md, hyperparameters).
HF_REPOS = {
    "Qwen2.5-Math-7B": "Qwen/Qwen2.5-Math-7B",
    "Qwen2.5-Math-1.5B": "Qwen/Qwen2.5-Math-1.5B",
    "Qwen2.5-7B": "Qwen/Qwen2.5-7B",
    "PURE-PRM-7B": "jinachris/PURE-PRM-7B",
}

# What a checkpoint resolution fetches from the Hub: no .bin/.pth duplicates of the weights.
_CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def local_path(name: str) -> str:
    """`$PUREJAX_MODELS/name` when PUREJAX_MODELS is set, else the Hub id of checkpoint `name`."""
    if name not in HF_REPOS:
        raise ValueError(f"local_path: unknown checkpoint {name!r}; known: {', '.join(HF_REPOS)}.")
    return os.path.join(MODELS_DIR, name) if MODELS_DIR else HF_REPOS[name]


def hf_repo_for(path: str) -> str | None:
    """The HF repo a config path stands for: its last component is a known name, or it is a repo id."""
    if path in HF_REPOS.values():
        return path
    return HF_REPOS.get(os.path.basename(os.path.normpath(path))) if path else None


def resolve_checkpoint(path: str) -> str:
    """The local directory of checkpoint `path`: itself, or the cached snapshot of a Hub id.

    Raises hub.NotCached (a FileNotFoundError) for a Hub id that is not cached and cannot be
    downloaded now.
    """
    if path and not os.path.exists(path) and hub.is_hub_id(path):
        return hub.snapshot(path, allow_patterns=_CHECKPOINT_FILES)
    return path


def require_checkpoint_dir(path: str, field: str, what: str) -> str:
    """The local HF checkpoint directory (has config.json) of `path`, a directory or a Hub id.

    Raises FileNotFoundError naming the config field, the HF repo to download when the path
    is one of ours, the `hf download` command, where to put it and how to point the config
    elsewhere.
    """
    cache_problem = ""
    if path and not os.path.exists(path) and hub.is_hub_id(path):
        try:
            resolved = resolve_checkpoint(path)
        except hub.NotCached as error:
            cache_problem = f" As a Hub id: {error}"
        else:
            if os.path.isfile(os.path.join(resolved, "config.json")):
                return resolved
            cache_problem = f" Its cached snapshot {resolved} has no config.json."
    elif path and os.path.isfile(os.path.join(path, "config.json")):
        return path
    problem = "is not a local directory" if not path or not os.path.isdir(path) else "has no config.json"
    repo = hf_repo_for(path)
    if repo is not None:
        name = os.path.basename(os.path.normpath(path))
        target = path if os.path.isabs(path) else os.path.join(MODELS_DIR or "/data/models", name)
        how = (
            f"Download {what} from the Hugging Face repo {repo}, e.g. `{hub.download_command(repo)}` "
            f"(into the HF cache; then --config.{field}={repo} works offline too) or "
            f"`{hub.download_command(repo, local_dir=target)}` (set PUREJAX_MODELS to the directory "
            f"holding it), or pass another local copy with --config.{field}=DIR."
        )
    else:
        how = (
            f"Download {what} (config.json, *.safetensors and the tokenizer files) into a local HF checkpoint "
            f"directory and pass it, e.g. --config.{field}=/data/models/NAME, or pass a Hub id ORG/NAME that "
            f"is in the local HF cache (`hf download ORG/NAME`)."
        )
    raise FileNotFoundError(f"config.{field}={path!r} {problem}.{cache_problem} {how}")
