"""A hung step ends the process, so a scheduler can restart the run from its last checkpoint.

    watchdog = StepWatchdog(config.monitor.step_timeout_s)   # 0: off
    watchdog.arm(step)       # at the start of each step (restarts the clock)
    ...                      # rollout, scoring, update, evaluation, checkpoint
    watchdog.close()         # when the loop ends

A collective that one process of a pod never joins waits forever, with no error and no
timeout (jax-ml/jax#38503 for NCCL; the 2-process CPU test hung the same way, see
tests/_eager_ops.py), and a hung job holds its accelerators until someone notices. With a
timeout set, a step that outlasts it prints what happened and every thread's Python stack to
stderr, then exits the process with EXIT_CODE. Checkpoints survive it as they survive any
kill: one being written is an unfinished temporary that the next run ignores. The timer is a thread, which runs while the main thread waits
inside XLA (XLA releases the GIL while it executes).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading

EXIT_CODE = 124  # as coreutils' `timeout` reports a command it stopped


class StepWatchdog:
    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._timer: threading.Timer | None = None

    def arm(self, step: int) -> None:
        """Starts the clock of `step` (replacing a running one)."""
        self.disarm()
        if self.timeout_s > 0:
            self._timer = threading.Timer(self.timeout_s, self._expire, args=(step,))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    close = disarm

    def _expire(self, step: int) -> None:
        print(
            f"\npurejax: step {step} has run for more than monitor.step_timeout_s={self.timeout_s:g} s, "
            "hung (on a pod, most often a collective that another process never joined). Exiting "
            f"with code {EXIT_CODE}; rerun the same command to resume from the last checkpoint, or "
            "raise monitor.step_timeout_s if steps are this slow (the first one also compiles). "
            "Every thread's stack:",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_CODE)
