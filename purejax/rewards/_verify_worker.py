"""The answer comparison itself, and the loop a verifier worker process runs.

A worker is this file run as a script by `verifier.VerifierPool`.

Kept apart from `verifier` so a worker process imports only what it needs, and
so the in-process and the pooled paths share one comparison.

Only math-verify's LaTeX extraction is used: its plain-expression extraction goes
through sympy's `parse_expr`, which evaluates text as Python, and model output is
never evaluated as code.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import resource
import sys
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
    return math_verify.parse(latex, extraction_config=_LATEX_ONLY, parsing_timeout=_seconds(timeout_s))


@functools.lru_cache(maxsize=4096)
def _parse_truth(truth: str, timeout_s: float | None):
    # Each prompt's truth is compared with K responses: parse it once per process.
    return _parse(truth, timeout_s)


# A number written in base b: `52_8`, `4210_{5}`, `\\text{A2}_{16}`.
_BASE_NUMBER = re.compile(r"^\s*(?:\\text\{)?\s*([0-9A-Za-z]+)\s*\}?\s*_\s*\{?\s*(\d+)\s*\}?\s*$")


def _base_number(latex: str) -> tuple[str, int] | None:
    match = _BASE_NUMBER.match(latex)
    if match is None:
        return None
    return match.group(1).upper().lstrip("0") or "0", int(match.group(2))


def is_equivalent(answer: str, truth: str, timeout_s: float | None = 1.0) -> bool:
    """True if the LaTeX `answer` is mathematically equivalent to `truth` (math-verify).

    Any parse failure, timeout or exception counts as not equivalent. One
    normalisation precedes math-verify, for a case it gets wrong: numbers with a
    base subscript (math-verify drops the subscript, so `52_8` would equal
    `52_9`). Two based numbers are equal iff base and digits are; a based truth
    also accepts the bare digits (`52` for `52_8`), as graders do.
    """
    try:
        based_answer, based_truth = _base_number(answer), _base_number(truth)
        if based_answer is not None and based_truth is not None:
            return based_answer == based_truth
        gold = _parse_truth(truth, timeout_s)
        pred = _parse(answer, timeout_s)
        if not gold or not pred:
            return False
        return bool(math_verify.verify(gold, pred, timeout_seconds=_seconds(timeout_s)))
    except Exception:  # noqa: BLE001 -- a grader error is a wrong answer, never a crash.
        return False


def serve(timeout_s: float, memory_limit_mb: int) -> None:
    """Answer JSON lines {"id", "answer", "truth"} on stdin with {"id", "ok"} on stdout.

    The first line written is {"ready": true}, after the parser is warmed up, so the
    parent never charges start-up time to an item. Exits when stdin closes.
    """
    if memory_limit_mb > 0:
        # Huge integers exhaust memory before any timer fires; fail them as MemoryError.
        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    is_equivalent("1", "1", timeout_s)
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            job = json.loads(line)
        except ValueError:
            continue
        try:
            ok = is_equivalent(job["answer"], job["truth"], timeout_s)
        except BaseException:  # noqa: BLE001 -- MemoryError, RecursionError, alarm leftovers.
            ok = False
        out.write(json.dumps({"id": job.get("id"), "ok": bool(ok)}) + "\n")
        out.flush()


if __name__ == "__main__":
    # Run by path (not `-m purejax...`) so a worker imports math-verify, not JAX.
    if sys.argv[1:] == ["--check"]:  # verifier.check_worker_imports: math-verify imported above
        sys.exit(0 if is_equivalent("1", "1", None) else 1)
    serve(float(sys.argv[1]), int(sys.argv[2]))
