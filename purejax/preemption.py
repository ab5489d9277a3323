"""Graceful preemption: SIGTERM (a cloud scheduler taking the machine back) ends the run at the
next step boundary with a checkpoint, and the same command resumes it exactly.

    stop = StopRequest()          # installs the handler (main thread only)
    ...                           # at each step boundary, after the step's records are written:
    if stop.agreed(): save a checkpoint; raise Preempted(step)
    stop.close()                  # puts the previous handler back
"""

from __future__ import annotations

import contextlib
import signal

import jax
import numpy as np


class Preempted(SystemExit):
    """SIGTERM arrived: the run wrote a checkpoint at a step boundary and stops (exit code 143)."""

    def __init__(self, step: int):
        super().__init__(143)
        self.step = step


class StopRequest:
    """SIGTERM (cloud preemption) sets a flag; the loop checks it at the step boundary, so a step
    is never cut in half. On several processes they agree first, so all save together."""

    def __init__(self):
        self.requested = False
        self._previous = None
        with contextlib.suppress(ValueError):  # signals can only be caught on the main thread
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def agreed(self) -> bool:
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.asarray(self.requested))))

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
