"""Several training runs at once, each in its own process, with the results they give one by one.

    runs = [parallel_runs.Run("guess/pure_prm", config, "W/guess/pure_prm"), ...]
    walls = parallel_runs.train_all(runs, tasks.build_task, workers=2)   # {name: wall seconds}

Why processes: the miniature's update works on d_model 64, and one process keeps a 2-core CPU
~70% busy (the host loop, small ops that XLA runs on one thread). Two runs side by side fill
the gaps: on a 2-core Xeon, two 30-step comparison arms, each its own process, took 61-63 s
side by side against 44.6 s each alone, 1.4x the throughput. End to end a sweep gains less,
1.2-1.3x (the comparison's 7 arms: 11.6 min against 13.7; the five findings: 35.7 against
45), since the last run of a sweep may run alone and the warm starts are trained one at a
time (`purejax.cache.building`); `python bench/parallel_runs.py` measures it.

Why the results do not change: each process sees every core, so XLA splits its loops and
reductions over the same threads as a run alone, and a run is bit for bit what it writes
alone (checked, tests/test_parallel_runs.py). Pinning each process to its own core
(`taskset`) would change that split and the rounding with it: XLA:CPU's results depend on
the number of threads it sees.

Each child trains quietly and writes its output to WORKDIR/worker.log; the parent shows one
progress bar per run, read from the runs' metrics.jsonl. A run that fails leaves the others
running; `RunsFailed` names every failed run and its log at the end. SIGTERM or Ctrl-C in the
parent reaches the children as SIGTERM, which ends each at its next step boundary with a
checkpoint (`purejax.preemption`), so the same command resumes all of them.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from typing import Callable, Sequence

from tqdm.auto import tqdm

from purejax import metrics_log, report, trainer, xla_cache

LOG_NAME = "worker.log"
POLL_S = 1.0
STOP_GRACE_S = 120.0  # a child ends at its next step boundary after SIGTERM: one step and a checkpoint


class RunsFailed(RuntimeError):
    """One or more runs ended with an error; the message names each and its log."""


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # on its progress bar and in errors
    config: object  # a validated, locked ml_collections.ConfigDict
    workdir: str


def train_all(
    runs: Sequence[Run], build_task: Callable, workers: int = 1, show_progress: bool = True
) -> dict[str, float]:
    """Trains every run (resuming unfinished ones), `workers` at a time; returns {name: wall
    seconds}. One worker trains them here, in order; more start each in a fresh process,
    the longest (most steps) first, so the last to finish are the short ones.

    `build_task(config, show_progress)` gives a run's task (`purejax.tasks.build_task`); it must
    be a module-level function, which a child process imports by name.
    """
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}.")
    for field, values in (
        ("name", [r.name for r in runs]),
        ("workdir", [os.path.abspath(r.workdir) for r in runs]),
    ):
        if len(set(values)) != len(values):
            raise ValueError(f"runs: each {field} must be unique (two runs would share it), got {values}.")
    if workers > 1:
        return _Pool(runs, build_task, workers, show_progress).run()
    walls = {}
    for i, run in enumerate(runs):
        if show_progress:
            print(f"[{i + 1}/{len(runs)}] {run.name}", flush=True)
        walls[run.name] = _train(run, build_task, show_progress)
    return walls


def _train(run: Run, build_task, show_progress: bool) -> float:
    start = time.perf_counter()
    task = build_task(run.config, show_progress=show_progress)
    trainer.Trainer(run.config, task, run.workdir, show_progress).run()
    return time.perf_counter() - start


def _child(run: Run, build_task, log_path: str, conn) -> None:
    """A child process: the run's output (C++ logs included) into its log, then its wall time
    or its error back to the parent."""
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False)
    try:
        xla_cache.enable()
        conn.send(("done", _train(run, build_task, show_progress=False)))
    except BaseException as error:  # the parent reports it; SystemExit(143) is a graceful stop
        traceback.print_exc()
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


class _Pool:
    def __init__(self, runs, build_task, workers, show_progress):
        self.queue = sorted(runs, key=lambda r: -int(r.config.total_steps))  # stable: ties keep their order
        self.build_task, self.workers, self.show_progress = build_task, workers, show_progress
        self.context = multiprocessing.get_context("spawn")  # a forked JAX runtime deadlocks
        self.running = {}  # name -> (process, connection, run)
        self.walls, self.errors = {}, {}
        self.bars = {r.name: _Bar(r, i, show_progress) for i, r in enumerate(runs)}

    def run(self) -> dict[str, float]:
        previous = None
        if _main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_system_exit)
        try:
            while self.queue or self.running:
                while self.queue and len(self.running) < self.workers:
                    self._start(self.queue.pop(0))
                self._wait()
        except BaseException:
            self._stop_children()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            for bar in self.bars.values():
                bar.close()
        if self.errors:
            raise RunsFailed(
                f"{len(self.errors)} of {len(self.bars)} runs failed (the others finished):\n"
                + "\n".join(f"  {name}: {message}" for name, message in self.errors.items())
                + "\nRerun the same command to resume every run from its last checkpoint."
            )
        return self.walls

    def _start(self, run: Run):
        os.makedirs(run.workdir, exist_ok=True)
        receive, send = self.context.Pipe(duplex=False)
        log_path = os.path.join(run.workdir, LOG_NAME)
        process = self.context.Process(
            target=_child, args=(run, self.build_task, log_path, send), name=f"purejax:{run.name}"
        )
        process.start()
        send.close()  # the child's end: the parent sees EOF if the child dies without a word
        self.running[run.name] = (process, receive, run)

    def _wait(self):
        handles = [conn for _, conn, _ in self.running.values()]
        ready = multiprocessing.connection.wait(handles, timeout=POLL_S)
        for name, (process, conn, run) in list(self.running.items()):
            if conn in ready:
                try:
                    status, value = conn.recv()
                except EOFError:  # died without a word: its exit code is known once it is joined
                    status, value = "died", None
                process.join()
                del self.running[name]
                if status == "done":
                    self.walls[name] = value
                else:
                    if status == "died":
                        value = f"the process died with exit code {process.exitcode}"
                    self.errors[name] = f"{value} (log: {os.path.join(run.workdir, LOG_NAME)})"
            self.bars[name].refresh()

    def _stop_children(self):
        for process, _, _ in self.running.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: a checkpoint at the next step boundary
        deadline = time.monotonic() + STOP_GRACE_S
        for process, _, _ in self.running.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)


class _Bar:
    """A run's progress bar in the parent: its steps and live metrics, read from the last line
    of each seed's metrics.jsonl (written one whole line at a time)."""

    def __init__(self, run: Run, position: int, show: bool):
        seeds = range(int(run.config.seed), int(run.config.seed) + int(run.config.num_seeds))
        self.files = [os.path.join(d, "metrics.jsonl") for d in metrics_log.seed_dirs(run.workdir, seeds)]
        self.bar = tqdm(
            total=int(run.config.total_steps), desc=run.name, position=position, disable=not show,
            dynamic_ncols=True, leave=True,
        )  # fmt: skip
        self.show = show
        self.refresh()

    def refresh(self):
        if not self.show:
            return
        last = [r for r in (_last_record(f) for f in self.files) if r]
        if last:
            self.bar.n = min(int(r["step"]) for r in last)
            self.bar.set_postfix(report.progress(last), refresh=False)
            self.bar.refresh()

    def close(self):
        self.refresh()
        self.bar.close()


def _last_record(path: str, tail_bytes: int = 1 << 16) -> dict | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record:
            return record
    return None
