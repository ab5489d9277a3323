"""Checkpoint integrity: every kind of damage to the newest checkpoint falls back to an intact
older one with a warning naming it; with none intact, one clear error."""

import glob
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from purejax import checkpoint


def _state(step):
    # Random values: constant arrays compress to a few bytes and hide where the data lives.
    rng = np.random.default_rng(step)
    return {
        "params": {"w": jnp.asarray(rng.normal(size=(64, 48)), jnp.float32),
                   "b": jnp.asarray(rng.normal(size=(48,)), jnp.bfloat16)},
        "step": jnp.array(step, jnp.int32),
    }


def _saved(tmp_path, steps=(1, 2)):
    directory = str(tmp_path / "ckpt")
    ckpt = checkpoint.Checkpointer(directory, keep=3)
    for step in steps:
        ckpt.save(step, _state(step), {"step": step, "config_fingerprint": {"seed": 0}})
    return directory


def _largest_data_file(directory, step):
    files = glob.glob(os.path.join(directory, str(step), "state", "ocdbt.process_0", "d", "*"))
    return max(files, key=os.path.getsize)


def _flip_bytes(path):
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    for i in range(middle - 32, middle + 32):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _garble_meta(directory, step):
    (path,) = glob.glob(os.path.join(directory, str(step), "meta", "metadata"))
    open(path, "w").write('{"step": 2, "seeds": [0')


DAMAGE = {
    "flipped bytes in the largest data file": lambda d: _flip_bytes(_largest_data_file(d, 2)),
    "deleted data file": lambda d: os.remove(_largest_data_file(d, 2)),
    "truncated data file": lambda d: _truncate(_largest_data_file(d, 2)),
    "deleted _METADATA": lambda d: os.remove(os.path.join(d, "2", "state", "_METADATA")),
    "deleted state/": lambda d: shutil.rmtree(os.path.join(d, "2", "state")),
    "garbled meta JSON": lambda d: _garble_meta(d, 2),
}


def _assert_is_step(state, meta, step):
    for got, want in zip(
        (state["params"]["w"], state["params"]["b"], state["step"]),
        (lambda s: (s["params"]["w"], s["params"]["b"], s["step"]))(_state(step)),
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert meta == {"step": step, "config_fingerprint": {"seed": 0}}


def test_save_and_restore_round_trip_keeps_the_callers_meta(tmp_path):
    directory = _saved(tmp_path)
    state, meta = checkpoint.Checkpointer(directory).restore(_state(0))
    _assert_is_step(state, meta, 2)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_intact_one(tmp_path, damage):
    directory = _saved(tmp_path)
    DAMAGE[damage](directory)
    ckpt = checkpoint.Checkpointer(directory)
    with pytest.warns(UserWarning, match=f"checkpoint {directory}/2 .*resuming from step 1"):
        state, meta = ckpt.restore(_state(0))
    _assert_is_step(state, meta, 1)
    # Set aside, so the resumed run can write step 2 again and a later restore finds it.
    assert ckpt.latest_step() == 1 and not os.path.exists(os.path.join(directory, "2"))
    assert len(os.listdir(directory + ".corrupt")) == 1
    ckpt.save(2, _state(2), {"step": 2, "config_fingerprint": {"seed": 0}})
    _assert_is_step(*checkpoint.Checkpointer(directory).restore(_state(0)), 2)


def test_flipped_bytes_are_caught_by_the_checksums(tmp_path):
    """Orbax itself restores flipped bytes silently: the checksum is what catches them."""
    directory = _saved(tmp_path)
    _flip_bytes(_largest_data_file(directory, 2))
    with pytest.raises(checkpoint.CheckpointError, match=r"is corrupt: the bytes of 1 array\(s\) changed"):
        checkpoint.Checkpointer(directory).restore(_state(0), step=2)


def test_no_intact_checkpoint_fails_naming_the_directory_and_the_fix(tmp_path):
    directory = _saved(tmp_path)
    _flip_bytes(_largest_data_file(directory, 2))
    os.remove(os.path.join(directory, "1", "state", "_METADATA"))
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.Checkpointer(directory).restore(_state(0))
    message = str(err.value)
    assert message.startswith(f"no intact checkpoint in {directory}: {directory}/2 is corrupt")
    assert f"{directory}/1 has " in message and f"mv {directory} {directory}.bad" in message
    assert os.path.isdir(os.path.join(directory, "2"))  # nothing moved when nothing restores


def test_checksums_see_any_changed_word_and_position():
    x = jnp.arange(12, dtype=jnp.float32).reshape(3, 4)
    base = checkpoint.checksums({"x": x})
    assert checkpoint.checksums({"x": x}) == base
    assert checkpoint.checksums({"x": x.at[1, 2].set(jnp.nextafter(6.0, 7.0))}) != base
    assert checkpoint.checksums({"x": x.T.reshape(3, 4)}) != base  # same words, other places
    leaves = {"f": jnp.ones(3, jnp.bfloat16), "b": jnp.array([True, False]), "i": jnp.arange(3)}
    assert set(checkpoint.checksums(leaves)) == {"f", "b", "i"}
    assert checkpoint.checksums(dict(leaves, b=jnp.array([True, True]))) != checkpoint.checksums(leaves)
