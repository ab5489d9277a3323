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
        self._manager = ocp.CheckpointManager(self.directory, options=options)

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
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError) as error:
            raise ValueError(
                f"checkpoint {self.directory}/{step} does not match this run's state ({error}). "
                "It was written by a different model or config: use a fresh --workdir, or restore "
                "with the config that wrote it."
            ) from error
        return restored.state, dict(restored.meta)

    def close(self) -> None:
        self._manager.close()
