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

`verify` scores one response in this process (for notebooks and evaluation
scripts on the main thread); `verify_batch` is the training path.
"""
from __future__ import annotations

import atexit
import collections
import multiprocessing
import multiprocessing.connection
import threading
import time
from typing import Sequence

import numpy as np

from purejax.rewards import _verify_worker
from purejax.rewards.answers import answer_rejection, extract_answer

DEFAULT_TIMEOUT_S = 1.0


def verify(response_text: str, ground_truth: str, *, correct: float = 1.0, wrong: float = 0.0,
           timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """`correct` if the response's last boxed answer equals `ground_truth`, else `wrong`.

    Runs in this process. On the main thread each parse and comparison is
    bounded by math-verify's SIGALRM timer; off the main thread (where signals
    do not work) the call is routed through the shared worker pool instead.
    """
    if threading.current_thread() is not threading.main_thread():
        return float(verify_batch([response_text], [ground_truth], correct=correct, wrong=wrong,
                                  timeout_s=timeout_s)[0])
    answer = _checked_answer(response_text, ground_truth)
    if answer is None:
        return float(wrong)
    return float(correct if _verify_worker.is_equivalent(answer, ground_truth, timeout_s) else wrong)


def verify_batch(texts: Sequence[str], truths: Sequence[str | None], *, correct: float = 1.0,
                 wrong: float = 0.0, workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S,
                 pool: "VerifierPool | None" = None) -> np.ndarray:
    """Scores B responses against their ground truths; float32[B], one score per item, in order.

    Args:
      texts: B decoded responses.
      truths: B ground-truth answers; None (no ground truth) scores `wrong`.
      correct, wrong: the two reward values.
      workers: worker processes of the shared pool; 0 scores in this process
        (main thread only: bounded by SIGALRM and the input caps, no hard kill).
      timeout_s: hard deadline per item in a worker; a worker that misses it is
        killed and replaced and the item scores `wrong`.
      pool: an explicit VerifierPool (overrides `workers` / `timeout_s`).
    """
    if len(texts) != len(truths):
        raise ValueError(f"verify_batch: `texts` has {len(texts)} items but `truths` has "
                         f"{len(truths)}; pass one ground truth (or None) per response.")
    answers = [_checked_answer(t, g) for t, g in zip(texts, truths)]
    todo = [i for i, a in enumerate(answers) if a is not None]
    ok = np.zeros(len(texts), dtype=bool)
    if todo:
        if pool is None and workers == 0:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("verify_batch: workers=0 needs the main thread (SIGALRM "
                                   "timers); use workers >= 1 from other threads.")
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


class VerifierPool:
    """Worker processes comparing answers, each item under a hard deadline.

    A worker that misses its deadline (a comparison stuck in C code) or dies is
    killed and replaced; its item scores False. Workers are forked from a
    forkserver that has math-verify imported, so a replacement is ready in
    milliseconds and the parent (which may hold JAX threads) is never forked.
    Safe to use from one thread at a time; `map` is serialised by a lock.
    """

    def __init__(self, workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_limit_mb: int = 2048):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"VerifierPool: `workers` must be an int >= 1, got {workers!r}.")
        if not timeout_s > 0:
            raise ValueError(f"VerifierPool: `timeout_s` must be > 0 seconds, got {timeout_s!r}.")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self.restarts = 0  # workers killed for missing a deadline or dying (for logging)
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["purejax.rewards._verify_worker"])
        self._procs: list = [None] * workers
        self._conns: list = [None] * workers
        self._lock = threading.Lock()
        self._job = 0

    def _start(self, w: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_verify_worker.worker_main, daemon=True,
                                 args=(child, self.timeout_s, self.memory_limit_mb))
        proc.start()
        child.close()
        self._procs[w], self._conns[w] = proc, parent

    def _kill(self, w: int) -> None:
        proc, conn = self._procs[w], self._conns[w]
        self._procs[w] = self._conns[w] = None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()
            proc.join(timeout=5)

    def map(self, answers: Sequence[str], truths: Sequence[str]) -> np.ndarray:
        """bool[N]: is answers[i] equivalent to truths[i]. Never raises for bad items."""
        with self._lock:
            return self._map(answers, truths)

    def _map(self, answers, truths) -> np.ndarray:
        n = len(answers)
        ok = np.zeros(n, dtype=bool)
        pending = collections.deque(range(n))
        busy: dict[int, tuple[int, int, float]] = {}  # worker -> (item, job id, deadline)
        try:
            while pending or busy:
                for w in range(self.workers):
                    if w in busy or not pending:
                        continue
                    if self._procs[w] is None or not self._procs[w].is_alive():
                        self._kill(w)
                        self._start(w)
                    item = pending.popleft()
                    self._job += 1
                    try:
                        self._conns[w].send((self._job, answers[item], truths[item]))
                    except (BrokenPipeError, OSError):
                        self._kill(w)
                        self.restarts += 1
                        continue  # item scores False
                    # The deadline starts when the worker gets the item, so a slow
                    # start of a fresh worker is not charged to the item.
                    busy[w] = (item, self._job, time.monotonic() + self.timeout_s + 0.25)
                if not busy:
                    continue
                now = time.monotonic()
                wait_s = max(0.0, min(d for _, _, d in busy.values()) - now)
                by_conn = {self._conns[w]: w for w in busy}
                ready = multiprocessing.connection.wait(list(by_conn), timeout=wait_s)
                for conn in ready:
                    w = by_conn[conn]
                    item, job, _ = busy.pop(w)
                    try:
                        got_job, result = conn.recv()
                        ok[item] = bool(result) and got_job == job
                    except (EOFError, OSError):  # the worker died (memory, signal)
                        self._kill(w)
                        self.restarts += 1
                now = time.monotonic()
                for w, (item, _, deadline) in list(busy.items()):
                    if now >= deadline:
                        busy.pop(w)
                        self._kill(w)
                        self.restarts += 1
        finally:
            for w in busy:  # interrupted mid-batch: no worker may hold a stale reply
                self._kill(w)
        return ok

    def close(self) -> None:
        for w in range(self.workers):
            self._kill(w)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# The deadline includes 0.25 s of IPC slack on top of math-verify's own 1 s timer,
# so a slow Python-level comparison ends by SIGALRM (cheap) before the hard kill.
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
