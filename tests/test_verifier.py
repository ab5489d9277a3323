"""The math verifier: MATH500 golds, equivalent forms, hostile input, pool robustness."""

import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest

from purejax.rewards import VerifierPool, extract_answer, verify, verify_batch
from purejax.data import DATA_DIR
from purejax.rewards.answers import answer_rejection

MATH500 = os.path.join(DATA_DIR, "math500.jsonl")


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(workers=2, timeout_s=1.0) as p:
        yield p


def _perturb(gold: str) -> str:
    """A meaningfully different answer: +1 on the first number, else the next choice letter,
    else `\\text{not ...}`, else `(gold)+1`."""
    number = re.search(r"\d+", gold)
    if number:
        return gold[: number.start()] + str(int(number.group()) + 1) + gold[number.end() :]
    choice = re.fullmatch(r"\\text\{\s*\(([A-Z])\)\s*\}", gold.strip())
    if choice:
        return "\\text{(%s)}" % chr(ord(choice.group(1)) + 1)
    word = re.fullmatch(r"\\text\{(.*)\}", gold.strip())
    if word:
        return "\\text{not %s}" % word.group(1)
    return "(%s)+1" % gold


@pytest.mark.slow
def test_math500_golds_score_one_and_perturbed_golds_zero(pool):
    golds = [json.loads(line)["answer"] for line in open(MATH500)]
    assert len(golds) == 500
    wrapped = ["Reasoning...\n\nSo the final answer is $\\boxed{%s}$." % g for g in golds]
    perturbed = ["So the final answer is $\\boxed{%s}$." % _perturb(g) for g in golds]
    assert all(p != g for p, g in zip(map(_perturb, golds), golds))
    right = verify_batch(wrapped, golds, pool=pool)
    wrong = verify_batch(perturbed, golds, pool=pool)
    print(
        f"MATH500: {int(right.sum())}/500 golds score 1, "
        f"{int((wrong == 0).sum())}/500 perturbed golds score 0"
    )
    # No gold is excluded: all 500 parse and match themselves.
    assert [g for g, s in zip(golds, right) if s != 1.0] == []
    assert [g for g, s in zip(golds, wrong) if s != 0.0] == []


EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("\\dfrac12", "0.5"),
    ("50\\%", "0.5"),
    ("0.5", "50\\%"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    ("[0,1) \\cup (2, 3]", "[0, 1)\\cup(2,3]"),
    ("(1,2)", "(1, 2)"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)"),
    ("x=3", "3"),
    ("3", "x = 3"),
    ("\\text{(B)}", "B"),
    ("B", "\\text{(B)}"),
    ("(B)", "\\text{(B)}"),
    ("30^\\circ", "30"),
    ("30", "30^{\\circ}"),
    ("5\\text{ cm}", "5"),
    ("864 \\mbox{ inches}^2", "864"),
    ("\\$18.90", "18.90"),
    ("\\text{Tuesday}", "\\text{Tuesday}"),
    ("\\text{tuesday}", "\\text{Tuesday}"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("3,2,1", "1, 2, 3"),
    ("1{,}000", "1000"),
    ("27", "27.0"),
    ("52_8", "52_8"),
    ("52", "52_8"),
    ("4210_{5}", "4210_5"),
    ("2+3i", "3i+2"),
]
DIFFERENT = [
    ("0.6", "\\frac{1}{2}"),
    ("(0,1)", "[0,1)"),
    ("(2,1)", "(1,2)"),
    ("y=4", "x=3"),
    ("\\text{(C)}", "B"),
    ("q-p", "p-q"),
    ("\\text{odd}", "\\text{even}"),
    ("\\begin{pmatrix}1\\\\3\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("52_9", "52_8"),
    ("53_8", "52_8"),
    ("4.67", "\\frac{14}{3}"),
    ("Monday", "\\text{Tuesday}"),
]


def test_equivalent_forms_score_one_and_different_forms_zero(pool):
    texts = ["The answer is $\\boxed{%s}$" % a for a, _ in EQUIVALENT + DIFFERENT]
    truths = [g for _, g in EQUIVALENT + DIFFERENT]
    scores = verify_batch(texts, truths, pool=pool)
    n = len(EQUIVALENT)
    assert [c for c, s in zip(EQUIVALENT, scores[:n]) if s != 1] == []
    assert [c for c, s in zip(DIFFERENT, scores[n:]) if s != 0] == []


def test_openrlhf_coding_and_missing_truth(pool):
    texts = ["\\boxed{2}", "\\boxed{3}", "\\boxed{2}"]
    got = verify_batch(texts, ["2", "2", None], correct=0.0, wrong=-1.0, pool=pool)
    np.testing.assert_array_equal(got, [0.0, -1.0, -1.0])
    assert got.dtype == np.float32


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\fbox{7}", "7"),
        ("\\boxed{1} and finally \\fbox{x^{2}}", "x^{2}"),
        ("The answer is $\\boxed 5$.", "5"),
        ("\\boxed {12}", "12"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\left\\{ 3 \\right.}", "\\left\\{ 3 \\right."),
        ("\\boxed{3} ... \\boxed{", None),  # truncated inside the last answer
        ("no answer here", None),
        ("\\boxedfoo{3}", None),
        ("", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


HOSTILE = [
    "\\boxed{9^{9^{9^9}}}",
    "\\boxed{10^{10000}!}",
    "\\boxed{(10^{100})!}",
    "\\boxed{2^{2^{33}}}",
    "\\boxed{" + "{" * 3000 + "5" + "}" * 3000 + "}",
    "\\boxed{" + "(" * 3000 + "5" + ")" * 3000 + "}",
    "\\boxed{5",
    "\\boxed{__import__('os').system('touch /tmp/purejax_pwned')}",
    "\\boxed{import os; os.system('touch /tmp/purejax_pwned')}",
    "x" * 5_000_000 + "\\boxed{" + "9" * 100_000 + "}",
    "\\boxed{2^{100000000}}",  # passes the caps: stopped by the timer
    "\\boxed{\\int_0^1 x^{100000} dx}",  # passes the caps: ~10 s in-process without limits
]
# Stopped by math-verify's 1 s timer on any CPU. (2^{100000000} finished in 0.36-1.0 s by the
# machine and its load, so tests that need an item to outlast a deadline flaked in CI.)
SLOW = "\\boxed{2^{1000000000}}"


@pytest.mark.slow
def test_hostile_answers_score_zero_within_bound(pool, tmp_path):
    for text in HOSTILE:
        start = time.monotonic()
        got = verify_batch([text], ["5"], pool=pool)
        elapsed = time.monotonic() - start
        assert got.tolist() == [0.0], text[:40]
        assert elapsed < 5.0, (text[:40], elapsed)  # a bound against hangs, not a speed test
    assert not os.path.exists("/tmp/purejax_pwned")  # no hostile answer ran as code
    assert verify_batch(["\\boxed{5}"], ["5"], pool=pool).tolist() == [1.0]


def test_worker_past_its_deadline_is_killed_and_results_stay_in_order():
    # A 0.2 s deadline (+0.5 s slack) is shorter than math-verify's 1 s timer, so
    # SLOW items can only end by killing their worker: the hard-kill path.
    with VerifierPool(workers=2, timeout_s=0.2) as fast_pool:
        texts = ["\\boxed{1}", SLOW, "\\boxed{3}", "\\boxed{\\frac{8}{2}}", SLOW, "\\boxed{7}"]
        truths = ["1", "2", "3", "4", "5", "6"]
        verify_batch(["\\boxed{1}"] * 2, ["1"] * 2, pool=fast_pool)  # workers started
        start = time.monotonic()
        got = verify_batch(texts, truths, pool=fast_pool)
        assert time.monotonic() - start < 20.0
        np.testing.assert_array_equal(got, [1, 0, 1, 1, 0, 0])
        assert fast_pool.restarts == 2
        np.testing.assert_array_equal(
            verify_batch(["\\boxed{2}", "\\boxed{x}"], ["2", "x"], pool=fast_pool), [1, 1]
        )


def test_caps_reject_before_parsing():
    assert answer_rejection("9^{9^{9^9}}") is not None
    assert answer_rejection("{" * 100 + "}" * 100) is not None
    assert answer_rejection("1" * 2000) is not None
    assert answer_rejection("100000!") is not None
    assert answer_rejection("\\frac{1}{2}") is None
    assert answer_rejection("2^{10}") is None
    assert answer_rejection("5!") is None


def test_verify_works_off_the_main_thread():
    results = []
    worker = threading.Thread(
        target=lambda: results.append((verify("\\boxed{\\frac{1}{2}}", "0.5"), verify("\\boxed{3}", "0.5")))
    )
    worker.start()
    worker.join(timeout=60)
    assert results == [(1.0, 0.0)]


def test_in_process_mode_matches_pool(pool):
    texts = ["\\boxed{%s}" % a for a, _ in EQUIVALENT[:8] + DIFFERENT[:4]]
    truths = [g for _, g in EQUIVALENT[:8] + DIFFERENT[:4]]
    np.testing.assert_array_equal(
        verify_batch(texts, truths, workers=0), verify_batch(texts, truths, pool=pool)
    )


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="truths"):
        verify_batch(["\\boxed{1}"], ["1", "2"], workers=0)


# ---------------------------------------------------------------- faults from outside


def _started(pool):
    """Waits until every worker of `pool` has said it is ready (through a real batch)."""
    verify_batch(["\\boxed{1}"] * pool.workers, ["1"] * pool.workers, pool=pool)
    return [w.proc for w in pool._pool]


def _kill_when_busy(pool, sig, times=1):
    """In a thread: `sig` to the worker holding an item, as soon as one does, `times` times."""

    def run():
        seen = set()
        end = time.monotonic() + 30
        while len(seen) < times and time.monotonic() < end:
            for worker in list(pool._pool or []):
                if worker is not None and worker.job and worker.proc.pid not in seen:
                    seen.add(worker.proc.pid)
                    os.kill(worker.proc.pid, sig)
            time.sleep(0.001)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_or_stopped_mid_item_gives_the_item_back():
    """The answers are correct: before requeueing, the killed worker's item scored 0."""
    with VerifierPool(workers=1, timeout_s=0.5) as one:
        (proc,) = _started(one)
        os.kill(proc.pid, signal.SIGSTOP)  # it cannot answer, so the kill lands mid-item
        thread = _kill_when_busy(one, signal.SIGKILL)
        assert verify_batch(["\\boxed{\\frac{1}{2}}"], ["0.5"], pool=one).tolist() == [1.0]
        thread.join()
        assert one.last_batch["requeued"] == 1 and one.last_batch["timeouts"] == 0
        (proc,) = _started(one)
        os.kill(proc.pid, signal.SIGSTOP)  # stopped, never killed: seen at the item's deadline
        texts = ["\\boxed{2}", "\\boxed{3}", "\\boxed{x+1}"]
        assert verify_batch(texts, ["2", "4", "1+x"], pool=one).tolist() == [1.0, 0.0, 1.0]
        assert one.last_batch["requeued"] == 1 and one.last_batch["timeouts"] == 0


def test_a_worker_that_died_while_idle_loses_no_item():
    with VerifierPool(workers=2, timeout_s=1.0) as two:
        for proc in _started(two):
            proc.kill()
            proc.wait()
        texts = ["\\boxed{%d}" % i for i in range(6)]
        assert verify_batch(texts, [str(i) for i in range(6)], pool=two).tolist() == [1.0] * 6


def test_killing_starting_workers_retries_with_backoff_instead_of_raising():
    """The issue's reproducer: three starts killed in a row used to raise and end training."""
    with VerifierPool(workers=1, timeout_s=1.0) as one:
        killed = set()

        def kill_starting():
            end = time.monotonic() + 30
            while len(killed) < 3 and time.monotonic() < end:
                worker = one._pool[0]
                if worker is not None and not worker.ready and worker.proc.pid not in killed:
                    killed.add(worker.proc.pid)
                    worker.proc.kill()
                time.sleep(0.001)

        thread = threading.Thread(target=kill_starting, daemon=True)
        thread.start()
        assert verify_batch(["\\boxed{7}"], ["7"], pool=one).tolist() == [1.0]
        thread.join()
        assert len(killed) == 3 and one.restarts >= 3


def test_a_missing_math_verify_fails_once_at_start_up(tmp_path, monkeypatch):
    from purejax.rewards import verifier

    broken = tmp_path / "worker.py"
    broken.write_text("import math_verify_that_is_not_installed\n")
    monkeypatch.setattr(verifier, "_WORKER_SCRIPT", str(broken))
    with pytest.raises(RuntimeError, match="cannot import math-verify .*pip install math-verify"):
        verifier.check_worker_imports(script=str(broken))


def test_a_batch_past_its_deadline_scores_the_rest_wrong_and_counts_them():
    with VerifierPool(workers=2, timeout_s=1.0) as two:
        _started(two)
        texts = ["\\boxed{1}", "\\boxed{2}"] + [SLOW] * 20 + ["\\boxed{3}"]
        truths = ["1", "2"] + ["5"] * 20 + ["3"]
        start = time.monotonic()
        got = verify_batch(texts, truths, pool=two, deadline_s=2.0)
        elapsed = time.monotonic() - start
        assert elapsed < 4.0, elapsed  # 20 SLOW items alone would take ~10 s on two workers
        assert got[:2].tolist() == [1.0, 1.0] and got[-1] == 0.0  # never reached: `wrong`
        assert two.last_batch["deadline_misses"] >= 5 and two.deadline_misses == two.last_batch["deadline_misses"]
        assert verify_batch(["\\boxed{3}"], ["3"], pool=two).tolist() == [1.0]  # the pool recovers


def test_the_default_batch_deadline_bounds_1000_slow_items():
    from purejax.rewards.verifier import batch_deadline_s

    assert batch_deadline_s(1000, 2, 1.0) < 100  # vs ~500 s of per-item deadlines
    assert batch_deadline_s(6, 2, 0.2) > 6 * 0.7 / 2  # every item may still use its own deadline


def test_hostile_inputs_with_a_killed_worker_still_score_in_order():
    with VerifierPool(workers=2, timeout_s=0.5) as two:
        _started(two)
        texts = [HOSTILE[0], "\\boxed{1}", SLOW, "\\boxed{\\frac{2}{4}}", HOSTILE[3], "\\boxed{9}"] * 2
        truths = ["5", "1", "5", "0.5", "5", "9"] * 2
        thread = _kill_when_busy(two, signal.SIGKILL, times=2)
        got = verify_batch(texts, truths, pool=two)
        thread.join()
        assert got.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0] * 2
        assert not os.path.exists("/tmp/purejax_pwned")
