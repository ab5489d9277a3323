"""The math verifier: MATH500 golds, equivalent forms, hostile input, pool robustness."""

import json
import os
import re
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
SLOW = "\\boxed{2^{100000000}}"  # ~1 s in a worker before math-verify's timer stops it


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
