"""Reward-hacking statistics and alarms, metrics.jsonl and checkpoints."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from purejax import checkpoint, metrics_log, monitors


def _stats(**overrides):
    base = {
        "rollout/process_reward_sum": 0.3,
        "rollout/vr_accuracy": 0.5,
        "rollout/steps_mean": 4.0,
        "rollout/length_mean": 40.0,
        "rollout/frac_0_step": 0.0,
        "rollout/frac_1_step": 0.05,
        "rollout/repetition": 0.05,
    }
    base.update(overrides)
    return base


def test_rollout_stats_hand_computed():
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    ends = np.array([[0, 1, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], bool)
    stats = monitors.rollout_stats(
        response_mask=mask,
        step_end=ends,
        truncated=np.array([0, 0, 0, 1], bool),
        process_reward_sum=np.array([0.5, 0.2, 0.9, 0.1]),
        prm_min=np.array([0.4, -0.2, 0.9, 0.1]),
        vr_correct=np.array([1.0, 0.0, np.nan, 0.0]),
        texts=["ab", "abab", "", "xyz"],
    )
    assert stats["rollout/length_mean"] == 2.75
    assert stats["rollout/length_correct"] == 4.0
    assert stats["rollout/length_incorrect"] == 3.0
    assert stats["rollout/steps_mean"] == 1.25
    assert stats["rollout/frac_0_step"] == 0.25
    assert stats["rollout/frac_1_step"] == 0.5  # rows 1 and 3
    assert stats["rollout/truncation_ratio"] == 0.25
    assert stats["rollout/vr_accuracy"] == pytest.approx(1 / 3)
    # PRM verdicts (worst step > 0): [T, F, -, T] vs VR [T, F, -, F] -> 2 of 3 agree.
    assert stats["rollout/prm_vr_agreement"] == pytest.approx(2 / 3)
    assert stats["rollout/repetition"] > 0


def test_no_alarm_on_a_healthy_run():
    monitor = monitors.HackingMonitor()
    for i in range(20):
        alarms = monitor.update(_stats(**{"rollout/vr_accuracy": 0.5 + 0.01 * i}))
    assert not any(alarms.values())


def test_sum_form_hacking_signature():
    monitor = monitors.HackingMonitor()
    for i in range(12):
        alarms = monitor.update(
            _stats(
                **{
                    "rollout/process_reward_sum": 0.3 + 0.2 * i,
                    "rollout/vr_accuracy": max(0.5 - 0.05 * i, 0.0),
                    "rollout/steps_mean": 4.0 + 2.0 * i,
                }
            )
        )
    assert alarms["alarm/prm_up_vr_down"] == 1.0
    assert alarms["alarm/steps_explode"] == 1.0
    assert alarms["alarm/one_step_collapse"] == 0.0


def test_one_step_collapse_and_repetition():
    monitor = monitors.HackingMonitor()
    alarms = monitor.update(_stats(**{"rollout/frac_1_step": 0.7, "rollout/repetition": 0.35}))
    assert alarms["alarm/one_step_collapse"] == 1.0
    assert alarms["alarm/repetition"] == 1.0


def test_metrics_writer_truncates_to_the_resumed_step_and_drops_torn_lines(tmp_path):
    writer = metrics_log.MetricsWriter(str(tmp_path), tensorboard=False)
    for step in range(1, 5):
        writer.write(step, {"train/loss": np.float32(step), "eval/accuracy": float("nan")})
    writer.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')  # a run killed mid-write
    assert [r["step"] for r in metrics_log.read_metrics(str(tmp_path / "metrics.jsonl"))] == [1, 2, 3, 4]
    writer = metrics_log.MetricsWriter(str(tmp_path), resume_step=2, tensorboard=True)
    writer.write(3, {"train/loss": 30.0})
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    assert json.loads(lines[0]) == {"step": 1, "eval/accuracy": None, "train/loss": 1.0}
    assert json.loads(lines[2])["train/loss"] == 30.0
    assert os.listdir(tmp_path / "tensorboard")


def _state(value):
    return {"params": {"w": jnp.full((3, 2), value, jnp.float32)}, "step": jnp.array(int(value), jnp.int32)}


def test_checkpointer_keeps_the_last_k_and_restores_exactly(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=2)
    assert ckpt.restore(_state(0)) is None
    for step in (1, 2, 3):
        ckpt.save(step, _state(step + 0.5), {"step": step, "history": [step]})
    assert ckpt.latest_step() == 3
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["2", "3"]
    state, meta = ckpt.restore(_state(0))
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 3.5))
    assert meta == {"step": 3, "history": [3]}
    state, _ = ckpt.restore(_state(0), step=2)
    assert float(state["params"]["w"][0, 0]) == 2.5


def test_checkpointer_ignores_a_half_written_checkpoint(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=3)
    ckpt.save(1, _state(1.0), {"step": 1})
    # What a kill during the write of step 2 leaves: orbax's temporary directory.
    os.makedirs(tmp_path / "ckpt" / "2.orbax-checkpoint-tmp-123" / "state")
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=3)
    assert ckpt.latest_step() == 1
    state, meta = ckpt.restore(_state(0.0))
    assert meta["step"] == 1


def test_checkpointer_refuses_a_mismatched_state(tmp_path):
    """The error names the first leaf that differs, before orbax reads any array."""
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(1, _state(1.0), {"step": 1})
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))  # as a resumed run opens it
    step = jnp.array(0, jnp.int32)
    stored = r"'params/w' is float32\[3, 2\] in the checkpoint, "
    with pytest.raises(ValueError, match=stored + r"float32\[4, 2\] in this run"):
        ckpt.restore({"params": {"w": jnp.zeros((4, 2))}, "step": step})
    with pytest.raises(ValueError, match=stored + r"bfloat16\[3, 2\] in this run"):
        ckpt.restore({"params": {"w": jnp.zeros((3, 2), jnp.bfloat16)}, "step": step})
    with pytest.raises(ValueError, match="does not match this run's state \\(it has no array 'params/b'\\)"):
        ckpt.restore({"params": {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}, "step": step})
    with pytest.raises(ValueError, match="it has an array 'step' this run's state does not"):
        ckpt.restore({"params": {"w": jnp.zeros((3, 2))}})
    state, _ = ckpt.restore(_state(0.0))  # the matching state still restores
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 1.0))


def test_skipped_streaks_count_whole_skipped_steps_per_seed():
    from purejax.monitors import skipped_streaks

    streaks, stuck = skipped_streaks([0, 2], [{"train/skipped": 1.0}, {"train/skipped": 1.0}], limit=3)
    assert streaks == [1, 3] and stuck == 1
    streaks, stuck = skipped_streaks(streaks, [{"train/skipped": 0.75}, {"train/skipped": 0.0}], limit=3)
    assert streaks == [0, 0] and stuck is None
    assert skipped_streaks([9], [{"train/skipped": 1.0}], limit=0) == ([10], None)  # 0: never stop
