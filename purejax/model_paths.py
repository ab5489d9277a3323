"""Where the paper's checkpoints live on this machine, and what to do when one is missing.

Nothing downloads at run time. The real configs (configs/qwen25_*.py) point at
`$PUREJAX_MODELS/<name>`, so a user who downloads every checkpoint into one
directory needs no overrides:

    export PUREJAX_MODELS=/data/models        # default: <repo>/../shared/models, beside the data
    huggingface-cli download Qwen/Qwen2.5-Math-7B --local-dir $PUREJAX_MODELS/Qwen2.5-Math-7B
    huggingface-cli download jinachris/PURE-PRM-7B --local-dir $PUREJAX_MODELS/PURE-PRM-7B

Any other local directory works too: `--config.policy.path=/elsewhere/Qwen2.5-Math-7B`.
"""

from __future__ import annotations

import os

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Same convention as purejax.data.DATA_DIR (shared/data/math beside the repository).
MODELS_DIR = os.environ.get("PUREJAX_MODELS", os.path.join(os.path.dirname(_REPO), "shared", "models"))

# Local directory name -> the HF repository it is downloaded from (PURE_SPEC §7).
HF_REPOS = {
    "Qwen2.5-Math-7B": "Qwen/Qwen2.5-Math-7B",
    "Qwen2.5-Math-1.5B": "Qwen/Qwen2.5-Math-1.5B",
    "Qwen2.5-7B": "Qwen/Qwen2.5-7B",
    "PURE-PRM-7B": "jinachris/PURE-PRM-7B",
}


def local_path(name: str) -> str:
    """`MODELS_DIR/name` for a checkpoint of HF_REPOS (read when the config is built)."""
    if name not in HF_REPOS:
        raise ValueError(f"local_path: unknown checkpoint {name!r}; known: {', '.join(HF_REPOS)}.")
    return os.path.join(MODELS_DIR, name)


def hf_repo_for(path: str) -> str | None:
    """The HF repo a config path stands for: its last component is a known name, or it is a repo id."""
    if path in HF_REPOS.values():
        return path
    return HF_REPOS.get(os.path.basename(os.path.normpath(path))) if path else None


def require_checkpoint_dir(path: str, field: str, what: str) -> None:
    """Raises FileNotFoundError unless `path` is a local HF checkpoint directory (has config.json).

    The message names the config field, the HF repo to download when the path
    is one of ours, where to put it and how to point the config elsewhere.
    """
    if path and os.path.isfile(os.path.join(path, "config.json")):
        return
    problem = "is not a local directory" if not path or not os.path.isdir(path) else "has no config.json"
    repo = hf_repo_for(path)
    if repo is not None:
        target = path if os.path.isabs(path) else local_path(os.path.basename(os.path.normpath(path)))
        how = (
            f"Download {what} from the Hugging Face repo {repo} on a machine with internet access, e.g. "
            f"`huggingface-cli download {repo} --local-dir {target}` (set PUREJAX_MODELS to choose the "
            f"directory, default {MODELS_DIR}), or pass another local copy with --config.{field}=DIR."
        )
    else:
        how = (
            f"Download {what} (config.json, *.safetensors and the tokenizer files) on a machine with "
            f"internet access, copy it here and pass its path, e.g. --config.{field}=/data/models/NAME."
        )
    raise FileNotFoundError(f"config.{field}={path!r} {problem}. {how} Nothing is downloaded at run time.")
