"""Atomic, verified, resumable checkpoints of the whole training state (orbax).

A checkpoint holds the TrainState (params, reference params, optimizer state,
step) as arrays and a small JSON `meta` (data-iterator position, RNG seed, the
caller's `config_fingerprint`, see `purejax.run_record`). Orbax writes each step
into a temporary directory and renames it when complete, so a run killed at any
moment leaves only whole checkpoints; the manager ignores half-written temporaries.

Orbax does not notice bytes changed after the write (a flipped bit on disk
restores as NaN or 3e38 weights), so `save` also stores a checksum of every
array in the meta and `restore` recomputes them. A checkpoint that is corrupt
or unreadable (changed bytes, a missing or truncated file, garbled JSON) is
moved aside to `<directory>.corrupt/` with a warning naming it, and the next
older one is restored; with none intact, `restore` raises `CheckpointError`
saying what to do.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

# Reserved key of the stored meta; `restore` removes it, so callers get back the meta they saved.
_CHECKSUMS_KEY = "_array_checksums"


class CheckpointError(RuntimeError):
    """No checkpoint in the directory can be restored; the message says what to do."""


class _Unreadable(Exception):
    """One checkpoint is corrupt or cannot be read (internal: `restore` falls back)."""


class Checkpointer:
    """Saves every `every` steps, keeps the last `keep`, restores the newest intact one."""

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
        """Writes `state` and `meta` (a JSON-able dict; may carry `config_fingerprint`) for
        `step`, with a checksum of every array, synchronously, then prunes old ones."""
        if _CHECKSUMS_KEY in meta:
            raise ValueError(f"Checkpointer.save: meta key {_CHECKSUMS_KEY!r} is reserved.")
        meta = dict(meta, **{_CHECKSUMS_KEY: checksums(state)})
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """(state, meta) shaped like `like`; None if there is no checkpoint.

        Without `step`: the newest intact checkpoint. Corrupt or unreadable newer ones are
        moved to `<directory>.corrupt/` with a warning, so that the steps a resumed run
        writes again do not collide with them. With `step`: that one, or CheckpointError.
        Raises ValueError, without falling back, when a readable checkpoint holds arrays of
        other paths, shapes or dtypes than `like` (another model or config, not corruption).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        if step is not None:
            try:
                return self._restore_step(step, abstract)
            except _Unreadable as error:
                raise CheckpointError(f"checkpoint {self._path(step)} {error}.") from None
        problems: dict[int, str] = {}
        for candidate in sorted(self._manager.all_steps(), reverse=True):
            try:
                restored = self._restore_step(candidate, abstract)
            except _Unreadable as error:
                problems[candidate] = f"{self._path(candidate)} {error}"
                continue
            for bad in problems.values():
                warnings.warn(f"checkpoint {bad}; resuming from step {candidate} instead.", stacklevel=2)
            self._set_aside(list(problems))
            return restored
        if problems:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: "
                + "; ".join(problems.values())
                + f". To start this run afresh, move the directory away (mv {self.directory} "
                f"{self.directory}.bad) or use a new --workdir; to keep its progress, restore "
                "the checkpoints from a backup."
            )
        return None

    def close(self) -> None:
        self._manager.close()

    # ------------------------------------------------------------------ internals

    def _path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _restore_step(self, step: int, abstract) -> tuple[Any, dict]:
        try:
            stored_tree = self._manager.item_metadata(step)["state"].tree
        except Exception as error:  # any failure to read means unreadable
            raise _Unreadable(f"has unreadable array metadata ({_short(error)})") from error
        if stored_tree is None:
            raise _Unreadable("has no array metadata (state/_METADATA missing?)")
        # Compared before restoring: orbax would fail midway through reading the arrays and
        # leave pending reads behind, and its error names a TensorStore path, not the leaf.
        mismatch = _first_mismatch(stored_tree, abstract)
        if mismatch:
            raise self._mismatch_error(step, mismatch)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:  # shapes matched, so this is damage
            raise _Unreadable(f"cannot be read ({_short(error)})") from error
        meta = restored.meta
        if not isinstance(meta, dict):
            raise _Unreadable(f"has a meta that is not a JSON object ({type(meta).__name__})")
        meta = dict(meta)
        stored = meta.pop(_CHECKSUMS_KEY, None)
        if stored is None:
            warnings.warn(
                f"checkpoint {self._path(step)} has no array checksums (written before they "
                "were stored); its arrays are restored unverified.",
                stacklevel=3,
            )
        else:
            actual = checksums(restored.state)
            changed = sorted(k for k in set(stored) | set(actual) if stored.get(k) != actual.get(k))
            if changed:
                raise _Unreadable(
                    f"is corrupt: the bytes of {len(changed)} array(s) changed since it was "
                    f"written, first {changed[0]!r}"
                )
        return restored.state, meta

    def _set_aside(self, steps: list[int]) -> None:
        """Moves corrupt step directories out of the manager's sight, keeping them to inspect."""
        if not steps:
            return
        if jax.process_index() == 0:
            aside = f"{self.directory}.corrupt"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
                shutil.move(self._path(step), target)
                warnings.warn(f"moved corrupt checkpoint {self._path(step)} to {target}.", stacklevel=3)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("purejax.checkpoint.set_aside")
        self._manager.reload()

    def _mismatch_error(self, step: int, detail) -> ValueError:
        return ValueError(
            f"checkpoint {self._path(step)} does not match this run's state ({detail}). "
            "It was written by a different model or config: use a fresh --workdir, or restore "
            "with the config that wrote it."
        )


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:200]}"


# ---------------------------------------------------------------- checksums


def _fmix32(x):
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with p ~ 1/2."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _words(x) -> jnp.ndarray:
    """The bytes of array `x` as uint32 words (one per element; 8-byte dtypes give two)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = np.dtype(x.dtype).itemsize
    if size == 4 or size == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)  # 8 bytes: a trailing axis of 2
    return jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}[size]).astype(jnp.uint32)


def _leaf_checksum(x) -> jnp.ndarray:
    """uint32[2]: sums over elements of a hash of (position, word), under two seeds.

    Computed where the array lives (any sharding, any number of hosts; no host copy),
    as one fused elementwise pass and a reduction. Any change of one word changes each
    sum with probability 1 - 2^-32; moved or swapped words do too, through the position.
    A corruption check, not a cryptographic one.
    """
    w = _words(x)
    position = jnp.zeros(w.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(w.ndim)):  # the row-major index, wrapping past 2^32 elements
        position = position + jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= w.shape[axis]
    return jnp.stack(
        [jnp.sum(_fmix32(_fmix32(position ^ jnp.uint32(seed)) ^ w), dtype=jnp.uint32) for seed in (1, 2)]
    )


_checksums_jit = jax.jit(lambda leaves: [_leaf_checksum(x) for x in leaves])


def checksums(state: Any) -> dict[str, str]:
    """{leaf path: 16 hex digits} of every array of `state`, e.g. {'params/w': '3fa0...'}."""
    named = _leaves_by_path(state)
    values = jax.device_get(_checksums_jit([jnp.asarray(x) for x in named.values()]))
    return {path: "".join(f"{int(v):08x}" for v in value) for path, value in zip(named, values)}


# ---------------------------------------------------------------- structure


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
