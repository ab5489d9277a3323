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
  with a hard per-item deadline, and kills and replaces a worker that misses it;
  a whole batch has a deadline too, and a worker killed or stopped from outside
  gives its item back to the queue (see VerifierPool).

`verify` scores one response, `verify_batch` many; both use the shared pool
unless `workers=0` (in-process, for trusted input and benchmarks).
"""

from __future__ import annotations

import atexit
import collections
import functools
import json
import math
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
MAX_TIMEOUT_S = 3600.0  # per item; select() and SIGALRM overflow on huge values
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
    deadline_s: float | None = None,
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
      deadline_s: the whole batch's time limit in the pool (default `batch_deadline_s`);
        items unscored by then score `wrong` and are counted in the pool's
        `last_batch["deadline_misses"]`.
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
            ok[todo] = pool.map([answers[i] for i in todo], [truths[i] for i in todo], deadline_s)
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
        self.started = time.monotonic()
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


_SLACK_S = 0.5  # on top of math-verify's own timer, so a slow comparison ends by SIGALRM, not a kill
_START_SLACK_S = 10.0  # a worker loads in 1-3 s; a batch may have to (re)start several
_START_TIMEOUT_S = 60.0  # a worker not ready by then is stuck (or stopped) and replaced
_MAX_BACKOFF_S = 30.0
_MAX_REQUEUES = 2  # an item whose worker dies this many times scores `wrong`: it may be the cause


def batch_deadline_s(items: int, workers: int, timeout_s: float) -> float:
    """The default overall deadline of a batch of `items` answers.

    A typical comparison takes milliseconds, so a batch is allowed a tenth of the
    per-item timeout per item and worker, plus two whole per-item deadlines for
    stragglers and _START_SLACK_S for (re)starting workers. 1000 items on 2 workers
    at timeout_s=1 get 63 s, where hard per-item deadlines alone would allow 750 s.
    """
    per_item = timeout_s + _SLACK_S
    return _START_SLACK_S + 2 * per_item + math.ceil(items / workers) * timeout_s / 10


@functools.lru_cache(maxsize=None)
def check_worker_imports(executable: str = sys.executable, script: str = _WORKER_SCRIPT) -> None:
    """Raises RuntimeError if a verifier worker cannot import math-verify. Run once per
    process, at start-up (VerifierPool does; a trainer may call it before loading models):
    this, and only this, is a reason for training to stop, since no answer could be scored."""
    try:
        done = subprocess.run(
            [executable, script, "--check"], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"VerifierPool: `{executable} {script} --check` did not finish in 300 s; "
            "is the machine overloaded or the Python environment on a hung filesystem?"
        ) from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(
            f"VerifierPool: a verifier worker cannot import math-verify (`{executable} {script} "
            f"--check` exited {done.returncode}: {tail}). Install it into this environment: "
            "pip install math-verify."
        )


def _stopped(proc: subprocess.Popen) -> bool:
    """True if the process is stopped (SIGSTOP, a debugger): alive but never answering.
    Linux /proc; elsewhere a stopped worker counts as a slow item."""
    try:
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]  # the field after "(comm)"
    except (OSError, IndexError):
        return False
    return state in (b"T", b"t")


class VerifierPool:
    """Worker processes comparing answers, each item under a hard deadline, each batch too.

    - A worker that misses an item's deadline while running (a comparison stuck in C
      code) is killed and replaced; the item scores `wrong` (counted in `timeouts`).
    - A worker that dies or is stopped while holding an item is replaced and the item
      is requeued (`requeued`): the answer was not at fault. An item whose workers die
      _MAX_REQUEUES times scores `wrong`.
    - A worker that dies or hangs during start-up is restarted after a backoff
      (0.5 s, 1 s, 2 s, ... up to 30 s); that never raises. The one fatal case, a
      worker that cannot import math-verify, is checked once at construction.
    - A batch ends by its overall deadline (`map`'s `deadline_s`); the items not
      scored by then score `wrong` and are counted in `deadline_misses`.

    Workers are separate Python processes started from `_verify_worker.py` (never forks
    of the caller, which may hold JAX threads, and independent of the caller's
    `__main__` guard); a replacement loads in about a second while the other workers
    keep going, and its start-up is never charged to an item. `map` is serialised by a
    lock. `stats()` gives the cumulative counters, `last_batch` those of the last `map`.
    """

    def __init__(self, workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit_mb: int = 2048):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"VerifierPool: `workers` must be an int >= 1, got {workers!r}.")
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= MAX_TIMEOUT_S):
            raise ValueError(
                f"VerifierPool: `timeout_s` must be in (0, {MAX_TIMEOUT_S}] seconds, got {timeout_s!r}."
            )
        check_worker_imports()
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self.restarts = 0  # workers killed for missing a deadline, dying or stopping
        self.requeued = 0  # items put back after their worker died or stopped
        self.timeouts = 0  # items that scored `wrong` for missing their own deadline
        self.deadline_misses = 0  # items that scored `wrong` because their batch ran out of time
        self.last_batch: dict[str, int] = {}
        self._lock = threading.Lock()
        self._job = 0
        self._pool: list[_Worker | None] | None = [self._start() for _ in range(workers)]
        self._start_failures = [0] * workers  # consecutive, per slot: the backoff exponent
        self._restart_at = [0.0] * workers

    def stats(self) -> dict[str, int]:
        return dict(
            restarts=self.restarts,
            requeued=self.requeued,
            timeouts=self.timeouts,
            deadline_misses=self.deadline_misses,
        )

    def _start(self) -> _Worker:
        return _Worker(self.timeout_s, self.memory_limit_mb)

    def _retire(self, w: int) -> None:
        """Kills worker `w`; a replacement starts now, or after a backoff if it never got ready."""
        worker = self._pool[w]
        worker.kill()
        self.restarts += 1
        self._pool[w] = None
        if worker.ready:
            self._start_failures[w] = 0
            self._restart_at[w] = 0.0
        else:
            self._start_failures[w] += 1
            backoff = min(_SLACK_S * 2 ** (self._start_failures[w] - 1), _MAX_BACKOFF_S)
            self._restart_at[w] = time.monotonic() + backoff

    def map(self, answers: Sequence[str], truths: Sequence[str], deadline_s: float | None = None) -> np.ndarray:
        """bool[N]: is answers[i] equivalent to truths[i]. Never raises for bad items.

        deadline_s: the whole batch's time limit (default `batch_deadline_s(N, workers,
        timeout_s)`); items unscored by then are False and counted in `deadline_misses`.
        """
        with self._lock:
            if self._pool is None:
                raise RuntimeError("VerifierPool.map: the pool is closed; create a new one.")
            if deadline_s is None:
                deadline_s = batch_deadline_s(len(answers), self.workers, self.timeout_s)
            return self._map(list(answers), list(truths), time.monotonic() + deadline_s)

    def _map(self, answers, truths, batch_end: float) -> np.ndarray:
        ok = np.zeros(len(answers), dtype=bool)
        pending = collections.deque(range(len(answers)))
        deaths = collections.Counter()  # item -> times its worker died or stopped under it
        counts = dict(requeued=0, timeouts=0, deadline_misses=0, restarts=self.restarts)

        def requeue(item):
            deaths[item] += 1
            if deaths[item] <= _MAX_REQUEUES:
                pending.appendleft(item)
                counts["requeued"] += 1

        try:
            while pending or any(w is not None and w.job for w in self._pool):
                now = time.monotonic()
                if now >= batch_end:
                    unscored = len(pending) + sum(1 for w in self._pool if w is not None and w.job)
                    counts["deadline_misses"] += unscored
                    pending.clear()
                    break  # `finally` retires the workers still holding items
                for w, worker in enumerate(self._pool):
                    if worker is None and now >= self._restart_at[w]:
                        self._pool[w] = worker = self._start()
                    if worker is None:
                        continue
                    if worker.ready and worker.job is None and pending:
                        item = pending.popleft()
                        self._job += 1
                        try:
                            worker.send({"id": self._job, "answer": answers[item], "truth": truths[item]})
                        except (BrokenPipeError, OSError):  # died while idle
                            self._retire(w)
                            requeue(item)
                            continue
                        worker.job = (item, self._job, now + self.timeout_s + _SLACK_S)
                    elif not worker.ready and now >= worker.started + _START_TIMEOUT_S:
                        self._retire(w)
                live = [x for x in self._pool if x is not None]
                wakeups = [batch_end, *(x.job[2] for x in live if x.job)]
                wakeups += [x.started + _START_TIMEOUT_S for x in live if not x.ready]
                wakeups += [self._restart_at[w] for w, x in enumerate(self._pool) if x is None]
                wait_s = min(max(0.0, min(wakeups) - time.monotonic()), 5.0)
                readable, _, _ = select.select([x.fd for x in live], [], [], wait_s)
                for w, worker in enumerate(self._pool):
                    if worker is None:
                        continue
                    if worker.fd in readable:
                        lines = worker.read_lines()
                        if lines is None:  # died: out of memory, killed, crashed
                            item = worker.job[0] if worker.job else None
                            self._retire(w)
                            if item is not None:
                                requeue(item)
                            continue
                        for message in lines:
                            if message.get("ready"):
                                worker.ready = True
                                self._start_failures[w] = 0
                            elif worker.job and message.get("id") == worker.job[1]:
                                ok[worker.job[0]] = bool(message.get("ok"))
                                worker.job = None
                    if worker.job and time.monotonic() >= worker.job[2]:
                        item = worker.job[0]
                        stopped = _stopped(worker.proc)
                        self._retire(w)
                        if stopped:  # frozen from outside: the answer was never compared
                            requeue(item)
                        else:
                            counts["timeouts"] += 1
        finally:
            for w, worker in enumerate(self._pool):
                if worker is not None and worker.job:  # interrupted mid-batch: no stale replies
                    self._retire(w)
            counts["restarts"] = self.restarts - counts["restarts"]
            self.requeued += counts["requeued"]
            self.timeouts += counts["timeouts"]
            self.deadline_misses += counts["deadline_misses"]
            self.last_batch = counts
        return ok

    def close(self) -> None:
        with self._lock:
            for worker in self._pool or []:
                if worker is not None:
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


def pool_stats() -> dict[str, int]:
    """The counters of every default pool, summed: restarts, requeued, timeouts, deadline_misses."""
    totals = dict(restarts=0, requeued=0, timeouts=0, deadline_misses=0)
    with _DEFAULT_LOCK:
        for pool in _DEFAULT_POOLS.values():
            for key, value in pool.stats().items():
                totals[key] += value
    return totals


@atexit.register
def _close_default_pools() -> None:
    for pool in _DEFAULT_POOLS.values():
        pool.close()
