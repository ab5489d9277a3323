"""Atomic, resumable checkpoints of the whole training state (orbax).

A checkpoint holds the TrainState (params, reference params, optimizer state,
step) as arrays and a small JSON `meta` (data-iterator position, RNG seed,
config fingerprint). Orbax writes each step into a temporary directory and
renames it when complete, so a run killed at any moment leaves only whole
checkpoints; the manager ignores half-written temporaries.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves every `every` steps, keeps the last `keep`, restores the latest."""

    def __init__(self, directory: str, keep: int = 3):
        if keep < 1:
            raise ValueError(f"checkpoint keep must be >= 1, got {keep}.")
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=False, create=True
        )
        # Handlers named up front, so a fresh manager can read a checkpoint's metadata before
        # anything is restored through it (`restore` checks shapes first).
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Writes `state` and `meta` for `step`, synchronously, then prunes old ones."""
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """(state, meta) of `step` (default: the latest), shaped like `like`; None if there is none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        # Compared before restoring: orbax would fail midway through reading the arrays and
        # leave pending reads behind, and its error names a TensorStore path, not the leaf.
        mismatch = _first_mismatch(self._manager.item_metadata(step)["state"].tree, abstract)
        if mismatch:
            raise self._mismatch_error(step, mismatch)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError) as error:
            raise self._mismatch_error(step, error) from error
        return restored.state, dict(restored.meta)

    def close(self) -> None:
        self._manager.close()

    def _mismatch_error(self, step: int, detail) -> ValueError:
        return ValueError(
            f"checkpoint {self.directory}/{step} does not match this run's state ({detail}). "
            "It was written by a different model or config: use a fresh --workdir, or restore "
            "with the config that wrote it."
        )


def _leaves_by_path(tree) -> dict[str, Any]:
    """{'params/layers/0/w': leaf}, for dicts, NamedTuples and nnx.State alike (orbax stores
    them all as nested dicts)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in flat}


def _first_mismatch(stored_tree, abstract) -> str:
    """'' if the stored arrays have the paths, shapes and dtypes of `abstract`; else the first
    difference, naming the leaf."""
    stored, expected = _leaves_by_path(stored_tree), _leaves_by_path(abstract)
    for path in expected:
        if path not in stored:
            return f"it has no array {path!r}"
    for path in stored:
        if path not in expected:
            return f"it has an array {path!r} this run's state does not"
    for path, want in expected.items():
        got = stored[path]
        got_type, want_type = (f"{np.dtype(x.dtype).name}{list(x.shape)}" for x in (got, want))
        if got_type != want_type:
            return f"{path!r} is {got_type} in the checkpoint, {want_type} in this run"
    return ""
