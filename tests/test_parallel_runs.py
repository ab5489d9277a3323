"""purejax.parallel_runs: runs side by side in their own processes give the records they give one
by one, a failed or killed run is named with its log while the others finish, and SIGTERM to
the parent stops every child at a step boundary, resumable."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from purejax import compare, config as config_lib, parallel_runs, tasks
from purejax.metrics_log import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs", "smoke.py")


def _records(workdir):
    """A run's metrics without the timings, which differ run to run."""
    return [
        {k: v for k, v in r.items() if "/time/" not in k}
        for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
    ]


def _runs(workdir, arms=("sum", "pure_prm"), overrides=()):
    base = config_lib.load(SMOKE, list(overrides))
    return compare.sweep_runs(base, compare.select_arms(list(arms)), 1, str(workdir))


def build_task_or_fail(config, show_progress=True):
    """A task, except for the two failures a child can meet: an error, and dying without one."""
    if config.advantage.credit == "sum":
        raise RuntimeError("no task for the sum arm")
    if config.advantage.baseline == "step_mean":
        os._exit(3)
    return tasks.build_task(config, show_progress)


def test_side_by_side_runs_write_what_they_write_one_by_one(tmp_path):
    one_by_one = parallel_runs.train_all(
        _runs(tmp_path / "serial"), tasks.build_task, workers=1, show_progress=False
    )
    side_by_side = parallel_runs.train_all(
        _runs(tmp_path / "pool"), tasks.build_task, workers=2, show_progress=False
    )
    assert side_by_side.keys() == one_by_one.keys() == {"sum", "pure_prm"}
    for arm in ("sum", "pure_prm"):
        serial = _records(tmp_path / "serial" / arm)
        assert [r["step"] for r in serial] == [0, 1, 2, 3, 4]
        assert _records(tmp_path / "pool" / arm) == serial, arm
        assert os.path.isfile(tmp_path / "pool" / arm / parallel_runs.LOG_NAME)
    # Different arms, different records: the comparison above is not of two empty files.
    assert _records(tmp_path / "serial" / "sum") != _records(tmp_path / "serial" / "pure_prm")


def test_a_failed_and_a_dead_run_are_named_with_their_logs_and_the_others_finish(tmp_path):
    runs = _runs(tmp_path, arms=("sum", "pure_prm", "step_mean"))
    with pytest.raises(parallel_runs.RunsFailed) as failed:
        parallel_runs.train_all(runs, build_task_or_fail, workers=2, show_progress=False)
    message = str(failed.value)
    assert "2 of 3 runs failed" in message
    assert "sum: RuntimeError: no task for the sum arm" in message
    assert "step_mean: the process died with exit code 3" in message
    assert os.path.join(str(tmp_path), "sum", parallel_runs.LOG_NAME) in message
    assert "no task for the sum arm" in (tmp_path / "sum" / parallel_runs.LOG_NAME).read_text()
    assert [r["step"] for r in _records(tmp_path / "pure_prm")] == [0, 1, 2, 3, 4]


def test_bad_arguments_are_refused(tmp_path):
    runs = _runs(tmp_path)
    with pytest.raises(ValueError, match="workers: expected >= 1, got 0"):
        parallel_runs.train_all(runs, tasks.build_task, workers=0)
    with pytest.raises(ValueError, match="each name must be unique"):
        parallel_runs.train_all([runs[0], runs[0]], tasks.build_task, workers=2)
    same_dir = parallel_runs.Run("other", runs[1].config, runs[0].workdir)
    with pytest.raises(ValueError, match="each workdir must be unique"):
        parallel_runs.train_all([runs[0], same_dir], tasks.build_task, workers=2)


PARENT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_parallel_runs import _runs
    from purejax import parallel_runs, tasks
    parallel_runs.train_all(_runs({workdir!r}, overrides={overrides!r}), tasks.build_task, 2, False)
    print("finished")
    """
)


def test_sigterm_to_the_parent_stops_every_child_at_a_step_boundary_and_a_rerun_resumes(tmp_path):
    overrides = ("total_steps=20", "eval_every=10", "checkpoint_every=1")
    script = PARENT.format(root=ROOT, workdir=str(tmp_path / "pool"), overrides=overrides)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    metrics = [tmp_path / "pool" / arm / "metrics.jsonl" for arm in ("sum", "pure_prm")]
    deadline = time.monotonic() + 300
    while not all(m.exists() and len(m.read_text().splitlines()) >= 3 for m in metrics):
        assert parent.poll() is None and time.monotonic() < deadline, "the runs never got going"
        time.sleep(0.2)
    children = _training_children(parent.pid)
    assert len(children) == 2, children
    parent.send_signal(signal.SIGTERM)
    out, _ = parent.communicate(timeout=300)
    assert parent.returncode == 128 + signal.SIGTERM and "finished" not in out
    stopped = {m: len(m.read_text().splitlines()) for m in metrics}
    assert all(n < 21 for n in stopped.values()), stopped  # stopped early, not run to the end
    assert not [pid for pid in children if _alive(pid)]  # no orphan left training
    # The same call again resumes each run from its checkpoint, to the records of an uninterrupted run.
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    parallel_runs.train_all(
        _runs(tmp_path / "serial", overrides=overrides), tasks.build_task, workers=1, show_progress=False
    )
    for arm in ("sum", "pure_prm"):
        assert _records(tmp_path / "pool" / arm) == _records(tmp_path / "serial" / arm), arm


def _training_children(pid: int) -> list[int]:
    """The spawned children of `pid` that train (not multiprocessing's resource tracker)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    return [int(r[0]) for r in rows if len(r) == 3 and r[1] == str(pid) and "spawn_main" in r[2]]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\tZ" not in next(line for line in f if line.startswith("State:"))  # a zombie has ended
    except (FileNotFoundError, StopIteration):
        return False
