"""The run record: workdir check, config fingerprint and refusal, config.json / environment.json."""

import json
import os
import time

import pytest

from purejax import config as config_lib
from purejax import run_record


def _config(*overrides):
    return config_lib.load("configs.qwen25_math_7b_prm_vr", overrides=list(overrides))


def test_fingerprint_ignores_total_steps_and_logging_but_not_what_changes_results():
    base = run_record.config_fingerprint(_config())
    same = _config("total_steps=900", "logging.sample_every=3", "logging.tensorboard=False", "checkpoint_every=7")
    assert run_record.config_fingerprint(same) == base
    assert "seed" in base and "rewards.vr.weight" in base and "optim.lr" in base
    assert not any(k.startswith(("logging.", "mesh.")) or k == "total_steps" for k in base)
    other = run_record.config_fingerprint(_config("seed=1", "rewards.vr.weight=2"))
    assert run_record.diff_fingerprints(base, other) == ["rewards.vr.weight", "seed"]
    # Read back from a checkpoint's JSON meta, it still compares equal.
    assert run_record.diff_fingerprints(json.loads(json.dumps(base)), base) == []
    assert run_record.diff_fingerprints({"a": 1}, {"b": 1}) == ["a", "b"]


def test_resume_with_another_config_is_refused_naming_each_key(tmp_path):
    stored = run_record.config_fingerprint(_config())
    run_record.check_same_config(stored, _config("total_steps=900"), str(tmp_path))
    run_record.check_same_config(None, _config("seed=3"), str(tmp_path))  # pre-fingerprint checkpoint
    with pytest.raises(run_record.ConfigMismatchError) as err:
        run_record.check_same_config(stored, _config("seed=1", "optim.lr=0.125"), str(tmp_path))
    message = str(err.value)
    assert "seed: 0 -> 1" in message and f"optim.lr: {_config().optim.lr!r} -> 0.125" in message
    assert str(tmp_path / "config.json") in message and "new --workdir" in message


def test_a_setting_added_later_at_its_default_does_not_block_resume(tmp_path):
    # A checkpoint written before `rollout.engine` existed: its run behaved as the default.
    stored = run_record.config_fingerprint(_config())
    del stored["rollout.engine"]
    defaults = run_record.config_fingerprint(config_lib.defaults())
    run_record.check_same_config(stored, _config(), str(tmp_path), defaults)
    with pytest.raises(run_record.ConfigMismatchError, match='rollout.engine: "<absent>" -> "continuous"'):
        run_record.check_same_config(stored, _config("rollout.engine=continuous"), str(tmp_path), defaults)
    with pytest.raises(run_record.ConfigMismatchError, match="rollout.engine"):
        run_record.check_same_config(stored, _config(), str(tmp_path))  # no defaults given: strict


def test_a_run_the_watchdog_ended_resumes_with_the_timeout_raised(tmp_path):
    """The watchdog's message says to raise monitor.step_timeout_s and rerun: that resume is
    accepted, also from a checkpoint written while the key was still fingerprinted."""
    stored = run_record.config_fingerprint(_config("monitor.step_timeout_s=60"))
    assert "monitor.step_timeout_s" not in stored
    run_record.check_same_config(stored, _config("monitor.step_timeout_s=3600"), str(tmp_path))
    older = {**stored, "monitor.step_timeout_s": 60.0}
    run_record.check_same_config(older, _config("monitor.step_timeout_s=3600"), str(tmp_path))
    with pytest.raises(run_record.ConfigMismatchError, match="monitor.early_stop"):  # that one changes results
        run_record.check_same_config(stored, _config("monitor.early_stop=True"), str(tmp_path))


def test_run_record_files_are_written_whole(tmp_path):
    config = _config()
    run_record.write_run_record(str(tmp_path), config)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "environment.json"]  # no temporaries left
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["optim"]["lr"] == config.optim.lr and written["total_steps"] == config.total_steps
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["packages"]["jax"] and env["devices"]["count"] >= 1
    assert env["git"] is None or len(env["git"]["commit"]) == 40


def test_check_workdir_refuses_a_file_and_an_unwritable_place_quickly(tmp_path):
    assert run_record.check_workdir(str(tmp_path / "new" / "w")) == str(tmp_path / "new" / "w")
    assert os.listdir(tmp_path / "new" / "w") == []  # the write probe is removed
    afile = tmp_path / "afile"
    afile.write_text("x")
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"workdir {afile} is a file, not a directory"):
        run_record.check_workdir(str(afile))
    with pytest.raises(ValueError, match=f"workdir {afile}/w is not writable .*--workdir"):
        run_record.check_workdir(str(afile / "w"))
    assert time.monotonic() - start < 1.0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_check_workdir_refuses_a_read_only_directory(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            run_record.check_workdir(str(tmp_path))
    finally:
        tmp_path.chmod(0o700)
