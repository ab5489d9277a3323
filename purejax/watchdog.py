"""A hung step ends the process, so a scheduler can restart the run from its last checkpoint.

    watchdog = StepWatchdog(config.monitor.step_timeout_s)   # seconds; 0: off; -1: AUTO
    watchdog.arm(step, kind)  # at the start of each step (restarts the clock)
    ...                       # rollout, scoring, update, evaluation, checkpoint
    watchdog.close()          # when the loop ends

A collective that one process of a pod never joins waits forever, with no error and no
timeout (jax-ml/jax#38503 for NCCL; the 2-process CPU test hung the same way, see
tests/_eager_ops.py), and a hung job holds its accelerators until someone notices. With a
timeout set, a step that outlasts it prints what happened and every thread's Python stack to
stderr, then exits the process with EXIT_CODE. Checkpoints survive it as they survive any
kill: one being written is an unfinished temporary that the next run ignores. The timer is a thread, which runs while the main thread waits
inside XLA (XLA releases the GIL while it executes).

AUTO (-1, the default) needs no number from the user: a step may take AUTO_FACTOR times the
slowest step of its kind this process has run, and at least AUTO_FLOOR_S. A kind is what the
step does besides training (evaluate, checkpoint, the final export): the first step of each
kind in a process has no limit, since it compiles, and so the first evaluation after a resume
can take as long as it needs, where a fixed timeout set from training steps would end it again
at every rerun. What AUTO cannot catch is a hang in the first step of a kind.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time

EXIT_CODE = 124  # as coreutils' `timeout` reports a command it stopped
AUTO = -1.0
AUTO_FACTOR = 10.0
AUTO_FLOOR_S = 1800.0  # a slow checkpoint write or a busy shared filesystem is not a hang


def step_kind(step: int, total: int, eval_every: int, checkpoint_every: int) -> str:
    """What the loop's `step` (1-based, as logged) does besides training, for AUTO's limits."""
    if step == total:
        return "final"  # evaluation, checkpoint and the export
    return "+".join(
        ["train"] + ["eval"] * (step % eval_every == 0) + ["checkpoint"] * (step % checkpoint_every == 0)
    )


class StepWatchdog:
    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._timer: threading.Timer | None = None
        self._running: tuple[str, float] | None = None  # (kind, start) of the armed step
        self._slowest: dict[str, float] = {}  # kind -> the slowest such step so far (AUTO)

    def limit(self, kind: str = "") -> float | None:
        """The seconds a step of `kind` may take now; None: no limit."""
        if self.timeout_s != AUTO:
            return self.timeout_s if self.timeout_s > 0 else None
        slowest = self._slowest.get(kind)
        return None if slowest is None else max(AUTO_FLOOR_S, AUTO_FACTOR * slowest)

    def arm(self, step: int, kind: str = "") -> None:
        """Starts the clock of `step` (ending the running one), a step of `kind`."""
        self.disarm()
        limit = self.limit(kind)
        self._running = (kind, time.monotonic())
        if limit is not None:
            self._timer = threading.Timer(limit, self._expire, args=(step, limit))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._running is not None:
            kind, start = self._running
            self._slowest[kind] = max(self._slowest.get(kind, 0.0), time.monotonic() - start)
            self._running = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    close = disarm

    def _expire(self, step: int, limit: float) -> None:
        why = (
            f"monitor.step_timeout_s={self.timeout_s:g}"
            if self.timeout_s != AUTO
            else f"monitor.step_timeout_s=-1: {AUTO_FACTOR:g}x the slowest step of its kind so far, at least {AUTO_FLOOR_S:g} s"
        )
        print(
            f"\npurejax: step {step} has run for more than {limit:g} s ({why}), "
            "hung (on a pod, most often a collective that another process never joined). Exiting "
            f"with code {EXIT_CODE}; rerun the same command to resume from the last checkpoint, "
            "with monitor.step_timeout_s set to more seconds than the slowest step takes if steps are "
            "this slow (0 turns the watchdog off). Every thread's stack:",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_CODE)
