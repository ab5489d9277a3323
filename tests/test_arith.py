"""The arithmetic task, its tokenizer and the scripted PRM, against independent references."""

import ast
import dataclasses
import json
import operator
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import purejax as pj
from purejax.rewards import verify, verify_batch
from purejax.tasks import arith
from purejax.tasks import scripted_prm as sp
from purejax.tasks.tokenizer import build_tokenizer

SPEC = arith.ArithSpec()


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(vocab_size=192, n_problems=500, seed=0)


def _eval_expression(question: str) -> int:
    """Python's own evaluation of "Compute <expr>." (an independent reference)."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}

    def walk(node):
        if isinstance(node, ast.BinOp):
            return ops[type(node.op)](walk(node.left), walk(node.right))
        assert isinstance(node, ast.Constant)
        return node.value

    assert question.startswith("Compute ") and question.endswith(".")
    return walk(ast.parse(question[len("Compute ") : -1], mode="eval").body)


# ---------------------------------------------------------------- generator and splits


def test_generator_is_deterministic_and_seeded():
    a = arith.make_problems("train", 200, seed=3)
    b = arith.make_problems("train", 200, seed=3)
    c = arith.make_problems("train", 200, seed=4)
    assert a == b
    assert a != c
    assert len({p.question for p in a}) == 200  # distinct


def test_splits_are_disjoint_and_follow_the_hash():
    train = arith.make_problems("train", 3000, seed=0)
    heldout = arith.make_problems("heldout", 300, seed=0)
    assert not {p.question for p in train} & {p.question for p in heldout}
    assert all(arith.split_of(p) == "train" for p in train)
    assert all(arith.split_of(p) == "heldout" for p in heldout)
    # The held-out share of random problems is close to heldout_fraction.
    rng = np.random.default_rng(1)
    share = np.mean([arith.split_of(arith.random_problem(rng)) == "heldout" for _ in range(4000)])
    assert abs(share - SPEC.heldout_fraction) < 0.03


def test_questions_evaluate_to_the_answer_and_respect_the_spec():
    spec = arith.ArithSpec(min_ops=2, max_ops=4, max_start=12, max_operand=7, max_value=60)
    for p in arith.make_problems("train", 500, seed=2, spec=spec):
        assert _eval_expression(p.question) == p.answer
        assert spec.min_ops <= len(p.ops) <= spec.max_ops
        assert 1 <= p.start <= spec.max_start
        assert all(0 <= v <= spec.max_value for v in p.values)
        assert all(1 <= b <= spec.max_operand for _, b in p.ops)
        assert p.prompt == f"Question: {p.question}\nAnswer:\n"


def test_parentheses_only_where_needed():
    assert arith.Problem(17, (("+", 5), ("*", 3), ("-", 8))).question == "Compute (17 + 5) * 3 - 8."
    assert arith.Problem(4, (("*", 2), ("+", 1), ("*", 3))).question == "Compute (4 * 2 + 1) * 3."
    assert arith.Problem(9, (("-", 2), ("-", 3))).question == "Compute 9 - 2 - 3."


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="max_ops"):
        arith.ArithSpec(min_ops=3, max_ops=2)
    with pytest.raises(ValueError, match="split must be one of"):
        arith.make_problems("test", 3)
    with pytest.raises(ValueError, match="kind must be one of"):
        arith.render_trace(arith.make_problems("train", 1)[0], "bogus")
    with pytest.raises(ValueError, match="pass rng"):
        arith.render_trace(arith.make_problems("train", 1)[0], "error")
    with pytest.raises(ValueError, match="unknown trace kind"):
        arith.trace_mix(arith.make_problems("train", 2), {"corect": 1.0})


# ---------------------------------------------------------------- traces and oracle


def test_correct_traces_pass_the_verifier():
    problems = arith.make_problems("heldout", 60, seed=5)
    texts = [arith.render_trace(p) for p in problems]
    assert texts[0].endswith(f"\n\nThe answer is \\boxed{{{problems[0].answer}}}.")
    assert verify(texts[0], problems[0].truth) == 1.0  # through the worker pool, once
    np.testing.assert_array_equal(
        verify_batch(texts, [p.truth for p in problems], workers=0), np.ones(len(problems))
    )
    for t, p in zip(texts, problems):
        g = arith.grade(t, p)
        assert g.labels == ("correct",) * len(p.ops) + ("answer",)
        assert g.answer_correct and g.answer == p.answer


def test_error_traces_are_labelled_wrong_at_the_injected_step():
    rng = np.random.default_rng(0)
    problems = arith.make_problems("train", 300, seed=6)
    texts = [arith.render_trace(p, "error", rng) for p in problems]
    wrong_answers = verify_batch(texts, [p.truth for p in problems], workers=0)
    assert not wrong_answers.any()
    positions = set()
    for t, p in zip(texts, problems):
        steps = arith.split_steps(t)
        equations = [arith.parse_equation(s) for s in steps[:-1]]
        # Reference: the injected step is the first whose result differs from the truth.
        first_off = next(k for k, (*_, c) in enumerate(equations) if c != p.values[k])
        labels = arith.grade(t, p).labels
        assert labels[first_off] == "wrong"
        assert labels.count("wrong") == 1 and labels[-1] == "answer"
        # Later steps compute correctly from the wrong value, and the answer carries it.
        for k in range(1, len(equations)):
            assert equations[k][0] == equations[k - 1][3]
        assert arith.boxed_integer(t) == equations[-1][3] != p.answer
        assert all(c >= 0 for *_, c in equations)
        positions.add(first_off)
    assert positions == {0, 1, 2, 3}  # every position gets errors


def test_filler_traces_are_correct_traces_plus_filler():
    rng = np.random.default_rng(1)
    for p in arith.make_problems("train", 100, seed=7):
        t = arith.render_trace(p, "filler", rng)
        labels = arith.grade(t, p).labels
        assert 1 <= labels.count("filler") <= 2 and labels[-1] == "answer"
        kept = [s for s in arith.split_steps(t) if s not in arith.FILLER_PHRASES]
        assert arith.SEPARATOR.join(kept) == arith.render_trace(p)


@pytest.mark.parametrize(
    "step,label",
    [
        ("3 + 4 = 7", "correct"),
        ("12 * 3 = 36.", "correct"),
        ("20 - 25 = -5", "correct"),
        ("3 + 4 = 8", "wrong"),
        ("3 + = 7", "wrong"),
        ("7 7 7", "wrong"),
        ("x = 3", "wrong"),
        ("Let me think about this carefully.", "filler"),
        ("Thank you.", "filler"),
        ("", "empty"),
        ("  \n", "empty"),
        ("The answer is \\boxed{7}.", "answer"),
        ("\\boxed{}", "answer"),
    ],
)
def test_label_step_hand_cases(step, label):
    assert arith.label_step(step) == label


def test_trace_mix_follows_the_fractions():
    problems = arith.make_problems("train", 2000, seed=8)
    texts, kinds = arith.trace_mix(problems, {"correct": 0.6, "error": 0.25, "filler": 0.15})
    shares = {k: kinds.count(k) / len(kinds) for k in arith.TRACE_KINDS}
    assert abs(shares["correct"] - 0.6) < 0.04 and abs(shares["filler"] - 0.15) < 0.03
    assert arith.trace_mix(problems, {"correct": 0.6, "error": 0.25, "filler": 0.15}) == (texts, kinds)
    # A zero weight for a later kind draws the same traces (the warm starts stay what they were).
    assert arith.trace_mix(problems, {"correct": 0.6, "error": 0.25, "filler": 0.15, "guess": 0.0}) == (
        texts,
        kinds,
    )


def test_guess_traces_answer_without_work_and_the_prm_over_rates_them():
    problems = arith.make_problems("train", 400, seed=8)
    texts, kinds = arith.trace_mix(problems, {"correct": 0.9, "guess": 0.1}, seed=3)
    guesses = [t for t, k in zip(texts, kinds) if k == "guess"]
    assert 0.07 < len(guesses) / len(texts) < 0.13
    values = set()
    for text in guesses:
        assert arith.split_steps(text) == [text] and text == arith.answer_step(arith.boxed_integer(text))
        values.add(arith.boxed_integer(text))
        assert sp.clean_scores([text]).tolist() == pytest.approx([sp.ScriptedPRMScores().unchecked])
    assert values <= set(range(31)) and len(values) > 10


def test_merged_traces_are_the_correct_trace_in_one_step():
    problems = arith.make_problems("train", 300, seed=8)
    texts, kinds = arith.trace_mix(problems, {"correct": 0.8, "merged": 0.2}, seed=3)
    merged = [(t, p) for t, k, p in zip(texts, kinds, problems) if k == "merged"]
    assert 0.14 < len(merged) / len(texts) < 0.26
    for text, problem in merged:
        assert arith.split_steps(text) == [text]
        assert text.split(arith.LINE_BREAK) == arith.split_steps(arith.render_trace(problem))
        assert arith.grade(text, problem).answer_correct
    # A zero weight for the new kind draws the same traces as before it existed.
    mix = {"correct": 0.6, "error": 0.25, "filler": 0.15, "guess": 0.0}
    assert arith.trace_mix(problems, {**mix, "merged": 0.0}, seed=3) == arith.trace_mix(problems, mix, seed=3)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_is_deterministic_across_processes(tokenizer):
    again = build_tokenizer(vocab_size=192, n_problems=500, seed=0)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert 100 <= len(tokenizer) <= 300
    # Another interpreter with another hash seed learns the same merges.
    code = (
        "import json; from purejax.tasks.tokenizer import build_tokenizer; "
        "print(json.dumps(build_tokenizer(vocab_size=192, n_problems=500, seed=0)"
        ".backend_tokenizer.to_str()))"
    )
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert json.loads(out) == tokenizer.backend_tokenizer.to_str()


def test_tokenizer_round_trip_and_single_digit_tokens(tokenizer):
    rng = np.random.default_rng(2)
    problems = arith.make_problems("heldout", 30, seed=1)
    texts = [p.prompt for p in problems] + [
        arith.render_trace(p, k, rng) for p in problems for k in arith.TRACE_KINDS
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if any(ch.isdigit() for ch in text):
            assert len(text) == 1, f"token {token_id} {text!r} merges a digit"
    assert [tokenizer.decode([i]) for i in tokenizer("1234")["input_ids"]] == list("1234")
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)


def test_separator_ids_include_merged_tokens(tokenizer):
    ids = pj.separator_ids(tokenizer)
    decoded = {tokenizer.decode([int(i)]) for i in ids}
    assert "\n\n" in decoded and ".\n\n" in decoded
    # A filler step ends in the merged ".\n\n", an equation step in a bare "\n\n".
    text = "3 + 4 = 7\n\nLet me think about this carefully.\n\nThe answer is \\boxed{7}."
    pieces = [tokenizer.decode([i]) for i in tokenizer(text)["input_ids"]]
    assert "\n\n" in pieces and ".\n\n" in pieces


def test_saved_tokenizer_loads_with_auto_tokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = arith.render_trace(arith.make_problems("train", 1)[0], "filler", np.random.default_rng(0))
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(loaded) == len(tokenizer) and loaded.eos_token_id == tokenizer.eos_token_id
    np.testing.assert_array_equal(pj.separator_ids(loaded), pj.separator_ids(tokenizer))


# ---------------------------------------------------------------- scripted PRM


def test_clean_scores_hand_computed():
    s = sp.ScriptedPRMScores()
    steps = [
        "Let me think about this carefully.",
        "3 + 4 = 7",
        "7 * 2 = 15",
        "",
        "The answer is \\boxed{15}.",
    ]
    np.testing.assert_allclose(sp.clean_scores(steps), [0.9, 0.8, -0.8, 0.0, 0.8])
    # Answer inconsistent with the last result; answer-only and empty first steps (weakness 2).
    np.testing.assert_allclose(sp.clean_scores(["3 + 4 = 7", "\\boxed{8}"]), [0.8, -0.8])
    np.testing.assert_allclose(sp.clean_scores(["The answer is \\boxed{8}."]), [s.unchecked])
    np.testing.assert_allclose(sp.clean_scores(["", "3 + 4 = 7"]), [s.unchecked, s.correct])
    np.testing.assert_allclose(
        sp.clean_scores(["Let's double-check the plan.", "\\boxed{3}"]), [s.filler, s.unchecked]
    )
    # Filler is rated above real work (weakness 1).
    assert s.filler > s.correct


def test_noise_is_bounded_deterministic_and_prefix_keyed():
    steps = ["3 + 4 = 7", "7 * 2 = 14", "The answer is \\boxed{14}."]
    a = sp.step_scores(steps, seed=0)
    np.testing.assert_array_equal(a, sp.step_scores(steps, seed=0))
    assert np.all(np.abs(a - sp.clean_scores(steps)) <= 0.1 + 1e-6) and a.dtype == np.float32
    assert not np.array_equal(a, sp.step_scores(steps, seed=1))
    # A step's score depends only on the steps up to it.
    b = sp.step_scores(steps[:2] + ["Let me think."], seed=0)
    np.testing.assert_array_equal(a[:2], b[:2])
    np.testing.assert_array_equal(sp.score_text(arith.SEPARATOR.join(steps)), a)
    big = sp.step_scores(["Let me think."] * 50, sp.ScriptedPRMScores(noise=0.5))
    assert big.max() <= 1.0 and big.min() >= 0.4


def _naive_step_rewards(tokenizer, separator_set, ids, mask, scores, seed):
    """Token by token: accumulate a step until a separator or the last valid token, then score."""
    out = np.zeros(ids.shape, np.float32)
    for b in range(ids.shape[0]):
        valid = [t for t in range(ids.shape[1]) if mask[b, t]]
        steps, ends, current = [], [], []
        for t in valid:
            current.append(int(ids[b, t]))
            if int(ids[b, t]) in separator_set or t == valid[-1]:
                text = tokenizer.decode(current, skip_special_tokens=True)
                if text.endswith("\n\n"):
                    text = text[:-2]
                steps.append(text)
                ends.append(t)
                current = []
        for t, score in zip(ends, sp.step_scores(steps, scores, seed)):
            out[b, t] = score
    return out


def test_token_mapping_matches_a_naive_loop_on_random_tokens(tokenizer):
    prm = sp.ScriptedPRM(tokenizer, seed=3)
    separator_set = set(pj.separator_ids(tokenizer).tolist())
    rng = np.random.default_rng(0)
    b, t = 12, 40
    # Random ids with many separators, ragged right padding and one empty row.
    ids = rng.integers(0, len(tokenizer), (b, t)).astype(np.int32)
    ids[rng.random((b, t)) < 0.2] = rng.choice(sorted(separator_set))
    lengths = rng.integers(1, t + 1, b)
    lengths[4] = 0
    mask = np.arange(t)[None] < lengths[:, None]
    got = prm(ids, mask)
    np.testing.assert_array_equal(
        got, _naive_step_rewards(tokenizer, separator_set, ids, mask, prm.scores, 3)
    )
    # Scores sit exactly on the step ends of purejax.steps.step_end_mask.
    ends = np.asarray(jax.vmap(pj.step_end_mask, (0, 0, None))(ids, mask, prm.separator_ids))
    assert not got[~ends].any()
    assert not got[4].any()


def test_token_mapping_on_traces_equals_the_text_split(tokenizer):
    prm = sp.ScriptedPRM(tokenizer, seed=0)
    rng = np.random.default_rng(4)
    problems = arith.make_problems("heldout", 24, seed=2)
    texts = [arith.render_trace(p, k, rng) for p in problems for k in arith.TRACE_KINDS]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    width = max(map(len, encoded)) + 3
    ids = np.zeros((len(texts), width), np.int32)
    mask = np.zeros((len(texts), width), bool)
    for i, e in enumerate(encoded):
        ids[i, : len(e)], mask[i, : len(e)] = e, True
    r = prm(ids, mask)
    ends = prm.step_ends(ids, mask)
    assert prm.step_texts(ids, mask) == [arith.split_steps(t) for t in texts]
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(r[i, np.flatnonzero(ends[i])], sp.score_text(text))
    # Precomputed step ends give the same rewards.
    np.testing.assert_array_equal(prm(ids, mask, step_end=ends), r)


def test_scripted_prm_bad_input(tokenizer):
    prm = sp.ScriptedPRM(tokenizer)
    with pytest.raises(ValueError, match="response_mask must have the shape"):
        prm(np.zeros((2, 5), np.int32), np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="response_ids must be an integer array"):
        prm(np.zeros((2, 5), np.float32), np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="ScriptedPRMScores.filler"):
        sp.ScriptedPRMScores(filler=1.5)


def test_scripted_prm_shown_the_problem_judges_steps_in_context():
    from purejax.tasks import scripted_prm

    problem = arith.Problem(8, (("-", 2), ("+", 1), ("+", 5)))
    full = ["8 - 2 = 6", "6 + 1 = 7", "7 + 5 = 12", "The answer is \\boxed{12}."]
    early = ["8 - 2 = 6", "The answer is \\boxed{6}."]  # correct so far, stops early
    off_order = ["8 + 1 = 9", "9 - 2 = 7", "7 + 5 = 12", "The answer is \\boxed{12}."]
    score = lambda steps, p: scripted_prm.clean_scores(steps, problem=p).tolist()
    assert score(full, problem) == pytest.approx([0.8] * 4)
    assert score(early, problem) == pytest.approx([0.8, -0.8])
    assert score(early, None) == pytest.approx([0.8, 0.8])  # question-blind: cannot tell
    assert score(off_order, problem)[0] == pytest.approx(-0.8)
    # The documented weaknesses stay: filler over-rated, an answer with no work rated high.
    assert score(["Let me think about this carefully."] + full, problem)[0] == pytest.approx(0.9)
    assert score(["The answer is \\boxed{3}."], problem) == pytest.approx([0.9])


def test_a_giant_step_is_scored_as_text_or_by_its_worst_line():
    """A merged step (lines joined by "\\n"): by default an answer without work; by_line, by content."""
    problem = arith.Problem(8, (("-", 2), ("+", 1), ("+", 5)))
    lines = ["8 - 2 = 6", "6 + 1 = 7", "7 + 5 = 12", "The answer is \\boxed{12}."]
    slip = ["8 - 2 = 6", "6 + 1 = 8", "8 + 5 = 13", "The answer is \\boxed{13}."]
    giant, wrong_giant = arith.LINE_BREAK.join(lines), arith.LINE_BREAK.join(slip)
    by_line = sp.ScriptedPRMScores(multiline_steps="by_line", unchecked=0.25, wrong=0.0)
    as_text = dataclasses.replace(by_line, multiline_steps="as_text")
    score = lambda steps, table, p=problem: sp.clean_scores(steps, table, p).tolist()
    assert score([giant], as_text) == pytest.approx([0.25])  # a box with no work before it
    assert score([giant], by_line) == pytest.approx([0.8])
    assert score([wrong_giant], by_line) == pytest.approx([0.0])  # one wrong line: a wrong step
    assert score([wrong_giant], as_text) == pytest.approx([0.25])
    # Equations without the answer: malformed work as text; by line, correct, and the answer
    # after it completes the problem. Half-merged answers are judged on the running context.
    work = arith.LINE_BREAK.join(lines[:3])
    assert score([work, lines[3]], as_text) == pytest.approx([0.0, 0.25])
    assert score([work, lines[3]], by_line) == pytest.approx([0.8, 0.8])
    half = [lines[0], arith.LINE_BREAK.join(lines[1:])]
    assert score(half, by_line) == pytest.approx([0.8, 0.8])
    assert score(half, by_line, None) == pytest.approx([0.8, 0.8])  # question-blind
    # Blank lines are skipped; a filler line in a correct step scores the step's worst line.
    assert score([giant.replace("\n", "\n\n", 1) + "\n"], by_line) == pytest.approx([0.8])
    filler = arith.LINE_BREAK.join([arith.FILLER_PHRASES[0]] + lines)
    assert score([filler], by_line) == pytest.approx([0.8])
    # One-line steps score the same in both modes, over every trace kind.
    problems = arith.make_problems("train", 200, seed=4)
    texts, _ = arith.trace_mix(problems, {"correct": 1, "error": 1, "filler": 1, "guess": 1}, seed=5)
    for text, p in zip(texts, problems):
        steps = arith.split_steps(text)
        assert score(steps, by_line, p) == score(steps, as_text, p)
    with pytest.raises(ValueError, match="ScriptedPRMScores.multiline_steps must be one of"):
        sp.ScriptedPRMScores(multiline_steps="lines")


def test_the_score_table_is_the_source_parameters(tokenizer):
    """`reward_source("scripted_prm", wrong=-0.3)` scores wrong steps -0.3; a bad value names its field."""
    from purejax import config as config_lib
    from purejax.rewards.sources import SOURCE_TYPES

    smoke = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smoke.py")
    config = config_lib.load(smoke, ["rewards.prm.wrong=-0.3", "rewards.prm.noise=0.0"])
    params = {k: config.rewards.prm[k] for k in SOURCE_TYPES["scripted_prm"].params}
    assert params == {**dataclasses.asdict(sp.ScriptedPRMScores()), "wrong": -0.3, "noise": 0.0}
    steps = ["2 + 3 = 5", "5 * 2 = 11", "Let me think.", "The answer is \\boxed{11}."]
    # By the table: correct, wrong arithmetic, filler, an answer equal to the last value.
    assert sp.clean_scores(steps, sp.ScriptedPRMScores(**params)).tolist() == pytest.approx([0.8, -0.3, 0.9, 0.8])
    text = arith.SEPARATOR.join(steps)
    ids = np.asarray([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
    prm = sp.ScriptedPRM(tokenizer)
    got = prm(ids, np.ones_like(ids, bool), scores=sp.ScriptedPRMScores(**params))
    assert got[0, np.flatnonzero(prm.step_ends(ids, np.ones_like(ids, bool))[0])].tolist() == pytest.approx(
        [0.8, -0.3, 0.9, 0.8]
    )
    with pytest.raises(config_lib.ConfigError, match=r"rewards\.prm\.wrong.*\[-1, 1\]"):
        config_lib.load(smoke, ["rewards.prm.wrong=-1.5"])
