"""The verifiable reward: is the last boxed answer equivalent to the ground truth?

PURE_SPEC §4: VR = 1 if the final answer (last `\\boxed{...}`) is equivalent to
the ground truth, else 0 (`correct=1, wrong=0`); the OpenRLHF branch codes it
{-1, 0} (`correct=0, wrong=-1`).

Equivalence is math-verify's (numbers, fractions, decimals, percentages,
radicals, intervals, tuples, sets, matrices, expressions, `x = 3` vs `3`,
`\\text{...}`, degrees, units). Model output is hostile input, so:

- the answer is isolated by linear string scanning (`extract_answer`) and
  refused before parsing if it is too long, too deeply nested, or a power tower
  (`answer_rejection`): those score `wrong` in microseconds;
- only LaTeX parsing is used, never sympy's `parse_expr` (which calls `eval`);
- inside a process, math-verify bounds each parse and comparison with SIGALRM
  (whole seconds, main thread only). That timer cannot interrupt C code (a
  big-integer power), so `verify_batch` runs comparisons in worker processes
  with a hard per-item deadline, and kills and replaces a worker that misses it.

`verify` scores one response, `verify_batch` many; both use the shared pool
unless `workers=0` (in-process, for trusted input and benchmarks).
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Sequence

import numpy as np

from purejax.rewards import _verify_worker
from purejax.rewards.answers import answer_rejection, extract_answer

DEFAULT_TIMEOUT_S = 1.0
_WORKER_SCRIPT = _verify_worker.__file__


def verify(
    response_text: str,
    ground_truth: str | None,
    *,
    correct: float = 1.0,
    wrong: float = 0.0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> float:
    """`correct` if the response's last boxed answer equals `ground_truth`, else `wrong`.

    Goes through the shared worker pool (started on first use), so the call is
    bounded by `timeout_s` (+ IPC slack) whatever the answer, on any thread.
    Answers refused by the input caps never start the pool.
    """
    return float(
        verify_batch([response_text], [ground_truth], correct=correct, wrong=wrong, timeout_s=timeout_s)[0]
    )


def verify_batch(
    texts: Sequence[str],
    truths: Sequence[str | None],
    *,
    correct: float = 1.0,
    wrong: float = 0.0,
    workers: int = 2,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pool: "VerifierPool | None" = None,
) -> np.ndarray:
    """Scores B responses against their ground truths; float32[B], one score per item, in order.

    Args:
      texts: B decoded responses.
      truths: B ground-truth answers; None (no ground truth) scores `wrong`.
      correct, wrong: the two reward values.
      workers: worker processes of the shared pool; 0 scores in this process
        (main thread only; for trusted input and benchmarks: SIGALRM cannot stop
        a comparison stuck in C code, e.g. `\\int_0^1 x^{100000} dx` takes ~10 s).
      timeout_s: hard deadline per item in a worker; a worker that misses it is
        killed and replaced and the item scores `wrong`.
      pool: an explicit VerifierPool (overrides `workers` / `timeout_s`).
    """
    if len(texts) != len(truths):
        raise ValueError(
            f"verify_batch: `texts` has {len(texts)} items but `truths` has "
            f"{len(truths)}; pass one ground truth (or None) per response."
        )
    answers = [_checked_answer(t, g) for t, g in zip(texts, truths)]
    todo = [i for i, a in enumerate(answers) if a is not None]
    ok = np.zeros(len(texts), dtype=bool)
    if todo:
        if pool is None and workers == 0:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError(
                    "verify_batch: workers=0 needs the main thread (SIGALRM "
                    "timers); use workers >= 1 from other threads."
                )
            ok[todo] = [_verify_worker.is_equivalent(answers[i], truths[i], timeout_s) for i in todo]
        else:
            pool = pool or default_pool(workers, timeout_s)
            ok[todo] = pool.map([answers[i] for i in todo], [truths[i] for i in todo])
    return np.where(ok, np.float32(correct), np.float32(wrong)).astype(np.float32)


def _checked_answer(text, truth) -> str | None:
    """The answer to compare, or None when the item scores `wrong` without parsing."""
    if not isinstance(truth, str) or not truth.strip():
        return None
    answer = extract_answer(text) if isinstance(text, str) else None
    if answer is None or not answer.strip() or answer_rejection(answer) is not None:
        return None
    return answer


class _Worker:
    """One worker process speaking JSON lines over its stdin/stdout."""

    def __init__(self, timeout_s: float, memory_limit_mb: int):
        self.proc = subprocess.Popen(
            [sys.executable, _WORKER_SCRIPT, repr(timeout_s), str(memory_limit_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )  # Ctrl-C in a terminal stays with the parent.
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.job: tuple[int, int, float] | None = None  # (item, job id, deadline)

    def send(self, message: dict) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def read_lines(self) -> list[dict] | None:
        """Complete lines available now; None once the worker has closed its stdout."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc.wait()


class VerifierPool:
    """Worker processes comparing answers, each item under a hard deadline.

    A worker that misses its deadline (a comparison stuck in C code) or dies is
    killed and replaced; its item scores False. Workers are separate Python
    processes started from `_verify_worker.py` (never forks of the caller, which
    may hold JAX threads, and independent of the caller's `__main__` guard); a
    replacement loads in about a second while the other workers keep going, and
    its start-up is never charged to an item. `map` is serialised by a lock.
    """

    def __init__(self, workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit_mb: int = 2048):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"VerifierPool: `workers` must be an int >= 1, got {workers!r}.")
        if not timeout_s > 0:
            raise ValueError(f"VerifierPool: `timeout_s` must be > 0 seconds, got {timeout_s!r}.")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self.restarts = 0  # workers killed for missing a deadline or dying (for logging)
        self._lock = threading.Lock()
        self._job = 0
        self._start_failures = 0
        self._pool = [_Worker(self.timeout_s, self.memory_limit_mb) for _ in range(workers)]

    def _replace(self, w: int) -> None:
        self._pool[w].kill()
        self._pool[w] = _Worker(self.timeout_s, self.memory_limit_mb)
        self.restarts += 1

    def map(self, answers: Sequence[str], truths: Sequence[str]) -> np.ndarray:
        """bool[N]: is answers[i] equivalent to truths[i]. Never raises for bad items."""
        with self._lock:
            if self._pool is None:
                raise RuntimeError("VerifierPool.map: the pool is closed; create a new one.")
            return self._map(list(answers), list(truths))

    def _map(self, answers, truths) -> np.ndarray:
        ok = np.zeros(len(answers), dtype=bool)
        pending = collections.deque(range(len(answers)))
        # Deadline = math-verify's own timer + slack: a slow Python-level comparison
        # ends by SIGALRM (cheap) before a hard kill (a restart) is needed.
        budget_s = self.timeout_s + 0.5
        try:
            while pending or any(w.job for w in self._pool):
                for w, worker in enumerate(self._pool):
                    if worker.ready and worker.job is None and pending:
                        item = pending.popleft()
                        self._job += 1
                        try:
                            worker.send({"id": self._job, "answer": answers[item], "truth": truths[item]})
                        except (BrokenPipeError, OSError):
                            self._replace(w)  # the item scores False
                            continue
                        worker.job = (item, self._job, time.monotonic() + budget_s)
                deadlines = [w.job[2] for w in self._pool if w.job]
                wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 5.0
                readable, _, _ = select.select([w.fd for w in self._pool], [], [], wait_s)
                for w, worker in enumerate(self._pool):
                    if worker.fd in readable:
                        lines = worker.read_lines()
                        if lines is None:  # died: out of memory, killed, crashed
                            if not worker.ready:
                                self._start_failures += 1
                                if self._start_failures >= 3:
                                    raise RuntimeError(
                                        "VerifierPool: worker processes exit during start-up; "
                                        f"run `{sys.executable} {_WORKER_SCRIPT} 1 0` to see why "
                                        "(math-verify missing or broken?)."
                                    )
                            self._replace(w)
                            continue
                        for message in lines:
                            if message.get("ready"):
                                worker.ready = True
                                self._start_failures = 0
                            elif worker.job and message.get("id") == worker.job[1]:
                                ok[worker.job[0]] = bool(message.get("ok"))
                                worker.job = None
                    if worker.job and time.monotonic() >= worker.job[2]:
                        self._replace(w)
        finally:
            for w, worker in enumerate(self._pool):
                if worker.job:  # interrupted mid-batch: no worker may keep a stale reply
                    self._replace(w)
        return ok

    def close(self) -> None:
        with self._lock:
            for worker in self._pool or []:
                worker.kill()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_DEFAULT_POOLS: dict[tuple[int, float], VerifierPool] = {}
_DEFAULT_LOCK = threading.Lock()


def default_pool(workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S) -> VerifierPool:
    """The process-wide pool for (workers, timeout_s), created on first use."""
    with _DEFAULT_LOCK:
        key = (int(workers), float(timeout_s))
        if key not in _DEFAULT_POOLS:
            _DEFAULT_POOLS[key] = VerifierPool(*key)
        return _DEFAULT_POOLS[key]


@atexit.register
def _close_default_pools() -> None:
    for pool in _DEFAULT_POOLS.values():
        pool.close()
