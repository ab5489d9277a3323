"""Faults of a whole run on configs/smoke.py: each ends in the same records and parameters as
an uninterrupted run, or in one clear error naming what to fix, with nothing lost.

- SIGTERM (preemption) mid-run: a checkpoint at the step boundary, exit code 143, exact resume.
- A kill during the final export: re-running the finished workdir writes the export, and
  stale temporary directories are removed.
- Resuming with a different config refuses and names each differing key; a workdir past
  total_steps says so; the run record (config.json, environment.json) is written.
- Updates that are all non-finite end the run after monitor.max_skipped_steps steps.
- A workdir that is a file fails before anything loads.
- A hung step ends the process after monitor.step_timeout_s, or by default after a multiple of
  the slowest step of its kind (exit code 124, every stack), and resumes with the timeout raised.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from purejax import preemption, run_record
from purejax import trainer as trainer_lib
from purejax.metrics_log import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "smoke.py")


def _edited(config, **fields):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for key, value in fields.items():
            section, _, name = key.rpartition(".")
            setattr(config[section] if section else config, name, value)
    return config


def _run(config, task, workdir, stop_after=None):
    trainer = trainer_lib.Trainer(config, task, str(workdir), show_progress=False)
    trainer.run(stop_after=stop_after)
    return trainer


def _records(workdir):
    return [{k: v for k, v in r.items() if "/time/" not in k} for r in read_metrics(f"{workdir}/metrics.jsonl")]


def test_sigterm_checkpoints_at_the_step_boundary_and_resumes_exactly(
    smoke_config, task, uninterrupted, tmp_path, monkeypatch
):
    reference_dir, reference = uninterrupted
    one_step = trainer_lib.Trainer._one_step

    def step_then_sigterm(self, step):
        records = one_step(self, step)
        if step == 0:  # the signal lands mid-step 1; the step finishes first
            os.kill(os.getpid(), signal.SIGTERM)
        return records

    monkeypatch.setattr(trainer_lib.Trainer, "_one_step", step_then_sigterm)
    with pytest.raises(preemption.Preempted) as stopped:
        _run(smoke_config, task, tmp_path)
    assert stopped.value.code == 143 and stopped.value.step == 1
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]  # checkpoint_every is 2
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back
    monkeypatch.undo()
    resumed = _run(smoke_config, task, tmp_path)
    assert _records(tmp_path) == _records(reference_dir)
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(reference.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_lost_export_is_written_by_rerunning_the_finished_workdir(smoke_config, task, tmp_path):
    _run(smoke_config, task, tmp_path)
    reference = (tmp_path / "policy" / "model.safetensors").read_bytes()
    import shutil

    shutil.rmtree(tmp_path / "policy")
    (tmp_path / ".policy.tmp-killed").mkdir()  # what a kill during the export leaves behind
    summary = trainer_lib.Trainer(smoke_config, task, str(tmp_path), show_progress=False).run()
    assert summary == [{"step": smoke_config.total_steps}]
    assert (tmp_path / "policy" / "model.safetensors").read_bytes() == reference
    assert not list(tmp_path.glob(".policy.tmp-*"))


def test_resume_with_another_config_refuses_naming_each_key(smoke_config, task, tmp_path):
    _run(smoke_config, task, tmp_path, stop_after=2)
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert recorded["seed"] == smoke_config.seed and "rewards" in recorded
    assert "jax" in json.loads((tmp_path / "environment.json").read_text())["packages"]
    other = _edited(smoke_config, seed=1, **{"optim.lr": 1e-4})
    with pytest.raises(run_record.ConfigMismatchError) as refused:
        _run(other, task, tmp_path)
    assert "seed: 0 -> 1" in str(refused.value) and "optim.lr" in str(refused.value)
    assert json.loads((tmp_path / "config.json").read_text()) == recorded  # the refused run wrote nothing
    # Extending the run and changing logging keys are allowed.
    longer = _edited(smoke_config, total_steps=6, **{"logging.sample_every": 3})
    _run(longer, task, tmp_path)
    assert read_metrics(str(tmp_path / "metrics.jsonl"))[-1]["step"] == 6


def test_a_workdir_past_total_steps_says_so(smoke_config, task, tmp_path):
    _run(smoke_config, task, tmp_path)
    shorter = _edited(smoke_config, total_steps=2)
    with pytest.raises(trainer_lib.PastTotalSteps, match="at step 4, past total_steps=2"):
        _run(shorter, task, tmp_path)


def test_all_skipped_updates_end_the_run_with_the_state_checkpointed(smoke_config, task, tmp_path):
    # lr 1e38 is finite in float32: the first AdamW update (lr x ~1) takes the weights to ~1e38,
    # and every later one overflows them, so it is skipped.
    config = _edited(smoke_config, **{"optim.lr": 1e38, "monitor.max_skipped_steps": 2})
    trainer = trainer_lib.Trainer(config, task, str(tmp_path), show_progress=False)
    with pytest.raises(trainer_lib.Diverged, match="last 2 RL steps"):
        trainer.run()
    records = read_metrics(str(tmp_path / "metrics.jsonl"))
    last = records[-1]["step"]
    assert last < config.total_steps
    assert [r["train/skipped"] for r in records[-2:]] == [1.0, 1.0] and records[-3]["train/skipped"] < 1
    for leaf in jax.tree.leaves(trainer.state.params):
        assert np.isfinite(np.asarray(leaf)).all()
    assert str(last) in os.listdir(tmp_path / "checkpoints")


def test_a_workdir_that_is_a_file_fails_before_anything_loads(tmp_path):
    from experiments import train

    target = tmp_path / "not_a_dir"
    target.write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        train.main(["--config", SMOKE, "--workdir", str(target)])


def _start_run(workdir):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "experiments.train", "--config", SMOKE, "--workdir", str(workdir), "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc, ready, timeout=240.0):
    """SIGKILLs `proc` as soon as `ready()` holds (polled every 5 ms); True if it was caught so."""
    import time

    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        if ready():
            proc.kill()
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    return False


def test_kill_9_mid_checkpoint_mid_export_and_at_random_leaves_an_exact_run(uninterrupted, tmp_path):
    """The real process killed with SIGKILL: while orbax writes a checkpoint, while the export is
    being written, and at a random moment; each re-run of the same command resumes, and the
    finished run equals the uninterrupted one (records, exported weights)."""
    import random

    reference_dir, _ = uninterrupted
    workdir = tmp_path / "killed"
    checkpoints = workdir / "checkpoints"
    moments = {
        # orbax writes a step into a temporary directory, then renames it
        "mid-checkpoint": lambda: checkpoints.is_dir() and any("tmp" in p.name for p in checkpoints.iterdir()),
        "mid-export": lambda: bool(list(workdir.glob(".policy.tmp-*"))),
    }
    caught = {}
    for name, ready in moments.items():
        caught[name] = _kill_when(_start_run(workdir), ready)
    delay = random.Random(0).uniform(5.0, 20.0)
    start = __import__("time").monotonic()
    caught["random"] = _kill_when(_start_run(workdir), lambda: __import__("time").monotonic() - start > delay)
    finish = _start_run(workdir)
    _, err = finish.communicate(timeout=600)
    assert finish.returncode == 0, err.decode()[-2000:]
    print(f"\nkills that landed where aimed: {caught}")
    assert _records(workdir) == _records(reference_dir)
    assert (workdir / "policy" / "model.safetensors").read_bytes() == (
        reference_dir / "policy" / "model.safetensors"
    ).read_bytes()
    assert not list(workdir.glob(".policy.tmp-*"))


_HANGING_RUN = """
import sys, time
from purejax import config as config_lib, tasks, trainer as trainer_lib
from purejax import watchdog
config = config_lib.load(sys.argv[1], ["monitor.step_timeout_s=" + sys.argv[3], *sys.argv[5:]])
watchdog.AUTO_FLOOR_S, watchdog.AUTO_FACTOR = 2.0, 2.0  # for -1 (auto): seconds here, not half an hour
if sys.argv[4] == "hang":
    evaluate, calls = trainer_lib.Trainer.evaluate, []

    def hang_at_the_third(self):  # steps 0 and 2 evaluate; step 4's waits in a collective nobody joins
        calls.append(1)
        return time.sleep(300) if len(calls) == 3 else evaluate(self)

    trainer_lib.Trainer.evaluate = hang_at_the_third
trainer_lib.Trainer(config, tasks.build_task(config), sys.argv[2], show_progress=False).run()
print("finished")
"""


def test_a_hung_step_exits_with_every_stack_after_monitor_step_timeout_s(tmp_path):
    """A step that hangs (here step 4's evaluation sleeps, as a pod's process waits in a collective
    another never joins) ends the process after monitor.step_timeout_s with exit code 124, a
    message naming the step and the setting, and every thread's stack, instead of waiting
    forever. Rerun as the message says, with the timeout raised, it resumes from the step-2
    checkpoint (the timeout is not part of the config's fingerprint) and finishes. 15 s covers
    the first steps' compiles on a loaded CI machine, where 2 s did not."""
    from purejax import watchdog

    workdir = str(tmp_path / "w")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _HANGING_RUN, SMOKE, workdir, "15", "hang"],
        cwd=ROOT, capture_output=True, text=True, timeout=250,
    )  # fmt: skip
    assert proc.returncode == watchdog.EXIT_CODE, proc.stderr[-2000:]
    assert time.monotonic() - start < 250  # the sleep would take 300 s
    assert "step 4 has run for more than 15 s (monitor.step_timeout_s=15)" in proc.stderr
    assert "rerun the same command to resume" in proc.stderr
    assert "in run" in proc.stderr and "trainer.py" in proc.stderr  # the main thread's stack
    assert "finished" not in proc.stdout
    assert [r["step"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))] == [0, 1, 2, 3]
    resumed = subprocess.run(
        [sys.executable, "-c", _HANGING_RUN, SMOKE, workdir, "600", "no hang"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0 and "finished" in resumed.stdout, resumed.stderr[-2000:]
    assert [r["step"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))] == [0, 1, 2, 3, 4]


def test_auto_step_timeout_ends_a_hung_step_of_a_kind_it_has_timed(tmp_path):
    """monitor.step_timeout_s=-1 (the default) needs no number: step 4 (train, evaluate,
    checkpoint) may take AUTO_FACTOR x step 2's time, the same kind, and at least AUTO_FLOOR_S
    (2 and 2 s here, not 10 and 30 min); it hangs, and the process ends with code 124."""
    from purejax import watchdog

    proc = subprocess.run(
        [sys.executable, "-c", _HANGING_RUN, SMOKE, str(tmp_path / "w"), "-1", "hang", "total_steps=6"],
        cwd=ROOT, capture_output=True, text=True, timeout=250,
    )  # fmt: skip
    assert proc.returncode == watchdog.EXIT_CODE, proc.stderr[-2000:]
    assert "step 4 has run for more than" in proc.stderr
    assert "monitor.step_timeout_s=-1: 2x the slowest step of its kind so far, at least 2 s" in proc.stderr


def test_auto_limits_follow_the_slowest_step_of_each_kind(monkeypatch):
    """The first step of a kind has no limit (it compiles); later ones get AUTO_FACTOR x the
    slowest of that kind, at least AUTO_FLOOR_S. A fixed timeout is the same for every step."""
    from purejax import watchdog

    assert watchdog.step_kind(1, 10, 5, 3) == "train"
    assert watchdog.step_kind(3, 10, 5, 3) == "train+checkpoint"
    assert watchdog.step_kind(5, 10, 5, 3) == "train+eval"
    assert watchdog.step_kind(6, 12, 2, 3) == "train+eval+checkpoint"
    assert watchdog.step_kind(10, 10, 5, 3) == "final"
    monkeypatch.setattr(watchdog, "AUTO_FLOOR_S", 0.01)
    auto = watchdog.StepWatchdog(watchdog.AUTO)
    assert auto.limit("train") is None
    auto.arm(1, "train")
    time.sleep(0.05)
    auto.arm(2, "train+eval")  # ends step 1: 0.05 s or a little more
    assert 10 * 0.05 <= auto.limit("train") < 10 * 0.5
    assert auto.limit("train+eval") is None  # running now, not yet timed
    auto.close()
    assert auto.limit("train+eval") is not None and auto.limit("final") is None
    assert watchdog.StepWatchdog(5).limit("final") == 5 and watchdog.StepWatchdog(0).limit("train") is None


def test_the_step_watchdog_is_quiet_when_disarmed_in_time():
    """Armed and disarmed within the timeout (every step of a healthy run), nothing happens."""
    code = (
        "import time; from purejax.watchdog import StepWatchdog\n"
        "w = StepWatchdog(0.5)\n"
        "for step in range(4):\n"
        "    w.arm(step); time.sleep(0.2); w.disarm()\n"
        "time.sleep(1.0); w.close(); print('alive')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr
