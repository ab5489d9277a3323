"""What a workdir records about the run that wrote it, and the checks a resume makes.

- `check_workdir(path)`: at start-up, before anything loads or compiles, that the
  workdir is (or can be made) a writable directory.
- `write_run_record(workdir, config)`: `config.json` (the resolved config) and
  `environment.json` (package versions, devices, git commit), each written atomically.
- `config_fingerprint(config)`: every setting that changes results, as a flat
  {dotted key: value} dict the checkpoint meta stores; `diff_fingerprints` and
  `check_same_config` refuse a resume whose config differs, naming each key.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from typing import Any, Mapping

from purejax import atomic

# Keys that never change what a run computes, so a resume may change them:
# - total_steps: extending a finished run is how one trains longer;
# - checkpoint_every, logging.*: when and where things are written, not what;
# - mesh.*, distributed.*: the device layout; checkpoints restore onto any mesh, and a
#   preempted run may come back on other hardware;
# - monitor.step_timeout_s: when a hung step ends the process, so that a run the watchdog
#   ended can resume with the timeout raised, as its message advises.
# Everything else, including memory knobs such as ppo.micro_batches (they change the
# order of float sums, so the bits of the result), is part of the fingerprint.
UNFINGERPRINTED = ("total_steps", "checkpoint_every", "logging", "mesh", "distributed", "monitor.step_timeout_s")

# Recorded in environment.json when installed.
_PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "ml_collections", "numpy",
    "math-verify", "transformers", "safetensors", "tensorflow", "tensorboard", "wandb",
)  # fmt: skip


class ConfigMismatchError(ValueError):
    """A resume whose config differs from the checkpoint's in settings that change results."""


def check_workdir(path: str) -> str:
    """The absolute workdir, created if missing; raises ValueError naming it and the fix if
    it is a file, cannot be created or is not writable. Call first thing: it costs
    milliseconds, where finding out at the first write costs the model load and compile."""
    where = os.path.abspath(path)
    if os.path.exists(where) and not os.path.isdir(where):
        raise ValueError(f"workdir {where} is a file, not a directory; pass another --workdir.")
    try:
        os.makedirs(where, exist_ok=True)
        # A real write: os.access is wrong for root, read-only mounts and full disks.
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=where)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        raise ValueError(
            f"workdir {where} is not writable ({error.strerror or error}); pass a --workdir "
            "you can write to, or fix its permissions."
        ) from None
    return where


def config_fingerprint(config) -> dict[str, Any]:
    """{dotted key: JSON value} of every setting that changes results (all but UNFINGERPRINTED).

    JSON-normalised (tuples become lists), so a fingerprint read back from a checkpoint's
    meta compares equal to a fresh one of the same config.
    """
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    flat = {k: v for k, v in _flatten(values).items() if not _unfingerprinted(k)}
    return json.loads(json.dumps(flat, sort_keys=True))


def diff_fingerprints(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The sorted keys whose values differ, or that only one fingerprint has."""
    return sorted(k for k in set(old) | set(new) if k not in old or k not in new or old[k] != new[k])


def check_same_config(
    stored: Mapping[str, Any] | None, config, workdir: str, defaults: Mapping[str, Any] | None = None
) -> None:
    """Raises ConfigMismatchError naming each differing key (checkpoint value -> this run's)
    if the checkpoint's fingerprint `stored` is not this config's. `stored` None (a
    checkpoint written before fingerprints were stored) passes.

    `defaults` (the fingerprint of `config.defaults()`): a key the checkpoint lacks because
    it was added to purejax later is no difference when this run leaves it at its default,
    which is what the checkpoint's run did, so adding a setting never strands older runs.
    """
    if stored is None:
        return
    # A checkpoint from before a key became unfingerprinted still carries it.
    stored = {k: v for k, v in stored.items() if not _unfingerprinted(k)}
    current = config_fingerprint(config)
    defaults = defaults or {}
    keys = [
        k
        for k in diff_fingerprints(stored, current)
        if not (k not in stored and k in defaults and current.get(k) == defaults[k])
    ]
    if keys:
        missing = "<absent>"
        changes = "; ".join(
            f"{k}: {json.dumps(stored.get(k, missing))} -> {json.dumps(current.get(k, missing))}"
            for k in keys
        )
        raise ConfigMismatchError(
            f"workdir {workdir} was trained with another config; resuming would mix the two. "
            f"Differing settings (checkpoint -> this run): {changes}. Resume with the config "
            f"that wrote it (recorded in {os.path.join(workdir, 'config.json')}), or use a new "
            "--workdir. Only total_steps, the logging/checkpoint/mesh settings and monitor.step_timeout_s may change."
        )


def write_run_record(workdir: str, config) -> None:
    """Writes WORKDIR/config.json and WORKDIR/environment.json atomically (process 0 only)."""
    import jax

    if jax.process_index() != 0:
        return
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    atomic.write_text(os.path.join(workdir, "config.json"), json.dumps(values, indent=2, sort_keys=True) + "\n")
    atomic.write_text(
        os.path.join(workdir, "environment.json"), json.dumps(environment(), indent=2, sort_keys=True) + "\n"
    )


def environment() -> dict[str, Any]:
    """Package versions, Python, platform, devices and the git commit of this checkout."""
    import jax

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "devices": {
            "backend": jax.default_backend(),
            "kind": sorted({d.device_kind for d in devices}),
            "count": len(devices),
            "local_count": jax.local_device_count(),
            "process_count": jax.process_count(),
        },
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any] | None:
    """{'commit', 'dirty'} of the checkout holding purejax; None outside git (an installed copy)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = lambda *args: subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def _flatten(values: Mapping, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unfingerprinted(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in UNFINGERPRINTED)
