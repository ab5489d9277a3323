"""The answer comparison itself, and the loop a verifier worker process runs.

Kept apart from `verifier` so a worker process imports only what it needs, and
so the in-process and the pooled paths share one comparison.

Only math-verify's LaTeX extraction is used: its plain-expression extraction goes
through sympy's `parse_expr`, which evaluates text as Python, and model output is
never evaluated as code.
"""
from __future__ import annotations

import functools
import logging
import math
import re
import resource
import threading

import math_verify
from math_verify import LatexExtractionConfig

_LATEX_ONLY = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=True)]
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _seconds(timeout_s: float | None) -> int | None:
    """math-verify's timers take whole seconds and use SIGALRM (main thread only)."""
    if timeout_s is None or threading.current_thread() is not threading.main_thread():
        return None
    return max(1, math.ceil(timeout_s))


def _parse(answer: str, timeout_s: float | None):
    # The answer is already isolated; `$...$` makes the whole string one LaTeX span.
    latex = "$" + _UNESCAPED_DOLLAR.sub(" ", answer) + "$"
    return math_verify.parse(latex, extraction_config=_LATEX_ONLY,
                             parsing_timeout=_seconds(timeout_s))


@functools.lru_cache(maxsize=4096)
def _parse_truth(truth: str, timeout_s: float | None):
    # Each prompt's truth is compared with K responses: parse it once per process.
    return _parse(truth, timeout_s)


def is_equivalent(answer: str, truth: str, timeout_s: float | None = 1.0) -> bool:
    """True if the LaTeX `answer` is mathematically equivalent to `truth` (math-verify).

    Any parse failure, timeout or exception counts as not equivalent.
    """
    try:
        gold = _parse_truth(truth, timeout_s)
        pred = _parse(answer, timeout_s)
        if not gold or not pred:
            return False
        return bool(math_verify.verify(gold, pred, timeout_seconds=_seconds(timeout_s)))
    except Exception:  # noqa: BLE001 -- a grader error is a wrong answer, never a crash.
        return False


def worker_main(conn, timeout_s: float, memory_limit_mb: int) -> None:
    """Serve (job_id, answer, truth) -> (job_id, bool) until the pipe closes."""
    if memory_limit_mb > 0:
        # Huge integers exhaust memory before any timer fires; fail them as MemoryError.
        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    is_equivalent("1", "1", timeout_s)  # Warm up the LaTeX parser before the first timed job.
    while True:
        try:
            job_id, answer, truth = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = is_equivalent(answer, truth, timeout_s)
        except BaseException:  # noqa: BLE001 -- MemoryError, RecursionError, alarm leftovers.
            result = False
        try:
            conn.send((job_id, result))
        except (BrokenPipeError, OSError):
            return
