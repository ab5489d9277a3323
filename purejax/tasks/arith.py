"""A built-in multi-step arithmetic task: problems, reasoning traces and an oracle.

The miniature of PURE's setting (PURE_SPEC §8) needs a task where every step of a
response can be checked, so a scripted PRM can rate steps and experiments can
count real versus filler work. A problem is a chain of 2-4 operations applied
left to right to small integers:

    Question: Compute (17 + 5) * 3 - 8.
    Answer:
    17 + 5 = 22

    22 * 3 = 66

    66 - 8 = 58

    The answer is \\boxed{58}.

Steps are separated by "\\n\\n" and the final answer is boxed, so
`purejax.steps` and `purejax.rewards.verify` apply unchanged.

Splits. Whether a problem is held out is a hash of its question text
(`split_of`), so the train and held-out splits are disjoint for every seed and
both are deterministic given (spec, seed).

Traces for supervised warm-starting (`render_trace`): `correct`; `error`, one
step's result off by 1-3, the wrong value carried on consistently (later steps
are correct arithmetic on it, the final answer is wrong); `filler`, a correct
trace with 1-2 "thinking" steps inserted that do no work; `guess`, an answer without
work; `merged`, a correct trace written as one giant step (its lines joined by "\\n").

Oracle (`label_step`, `grade`), one label per step, from the step text alone:

    correct  "a op b = c" with c == a op b
    wrong    "a op b = c" with c != a op b, or a step with digits or "=" that is
             not such an equation (malformed work counts as wrong work)
    filler   prose with no digit, no "=" and no boxed answer ("Let me think.")
    answer   holds a \\boxed{...}; its correctness is `Grade.answer_correct`
    empty    only whitespace

The oracle labels a step as one piece of text: a step of several lines (a `merged`
trace) is `answer` when it holds the boxed answer, else `wrong`. The scripted PRM can
judge such a step line by line instead (`ScriptedPRMScores.multiline_steps`).

The oracle checks arithmetic, not relevance: "2 + 2 = 4" in a response to an
unrelated problem is `correct`; whether the work solved *this* problem shows in
the final answer only.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import NamedTuple, Sequence

import numpy as np

from purejax.rewards.answers import extract_answer

SEPARATOR = "\n\n"
LINE_BREAK = "\n"  # joins the lines of one step; only a `merged` trace writes several
PROMPT_TEMPLATE = "Question: {question}\nAnswer:\n"
OPS = ("+", "-", "*")
TRACE_KINDS = ("correct", "error", "filler", "guess", "merged")
# The kinds the task tokenizer is trained on: "guess" and "merged" came later and write no new
# text, so they stay out and the tokenizer (and every warm start without them) is what it was.
TOKENIZER_TRACE_KINDS = ("correct", "error", "filler")
STEP_LABELS = ("correct", "wrong", "filler", "answer", "empty")
SPLITS = ("train", "heldout")
# "Thinking" steps that do no work: the plan-like text a PRM over-rates (PURE_SPEC §8.1).
FILLER_PHRASES = (
    "Let me think about this carefully.",
    "Let's double-check the plan.",
    "First, let me understand the problem.",
    "I will compute it step by step.",
)

_EQUATION = re.compile(r"^\s*(-?\d+)\s*([-+*])\s*(-?\d+)\s*=\s*(-?\d+)\s*\.?\s*$")
_INTEGER = re.compile(r"^\s*(-?\d+)\s*$")


@dataclasses.dataclass(frozen=True)
class ArithSpec:
    """Which problems exist.

    Every value, intermediate or final, stays in [0, max_value]; the first number
    is in [1, max_start], later operands in [1, max_operand] ([2, max_operand] for
    "*"). `heldout_fraction` of all problems (by question hash) are held out.
    """

    min_ops: int = 2
    max_ops: int = 4
    max_start: int = 12
    max_operand: int = 6
    max_value: int = 30
    heldout_fraction: float = 0.1

    def __post_init__(self):
        for name in ("min_ops", "max_start", "max_operand", "max_value"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ArithSpec.{name} must be an int >= 1, got {value!r}.")
        if not isinstance(self.max_ops, int) or self.max_ops < self.min_ops:
            raise ValueError(
                f"ArithSpec.max_ops must be an int >= min_ops ({self.min_ops}), got {self.max_ops!r}."
            )
        if self.max_operand < 2:
            raise ValueError(
                f"ArithSpec.max_operand must be >= 2 (the smallest factor of '*'), got {self.max_operand}."
            )
        if self.max_start > self.max_value:
            raise ValueError(
                f"ArithSpec.max_start ({self.max_start}) must be <= max_value ({self.max_value})."
            )
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"ArithSpec.heldout_fraction must be in (0, 1), got {self.heldout_fraction!r}.")


@dataclasses.dataclass(frozen=True)
class Problem:
    """`start`, then each (op, operand) applied left to right."""

    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def values(self) -> tuple[int, ...]:
        """The running value after each operation: values[-1] is the answer."""
        out, v = [], self.start
        for op, b in self.ops:
            v = apply_op(v, op, b)
            out.append(v)
        return tuple(out)

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def truth(self) -> str:
        """The ground truth as the verifier takes it."""
        return str(self.answer)

    @property
    def question(self) -> str:
        """E.g. "Compute (17 + 5) * 3 - 8." (parentheses only where precedence needs them)."""
        expr, top_level_sum = str(self.start), False
        for op, b in self.ops:
            if op == "*" and top_level_sum:
                expr = f"({expr})"
            expr = f"{expr} {op} {b}"
            top_level_sum = op in "+-" or (top_level_sum and op != "*")
        return f"Compute {expr}."

    @property
    def prompt(self) -> str:
        return format_prompt(self)


def apply_op(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"apply_op: op must be one of {OPS}, got {op!r}.")


def format_prompt(problem: Problem) -> str:
    return PROMPT_TEMPLATE.format(question=problem.question)


# ---------------------------------------------------------------- generation and splits


def split_of(problem: Problem, spec: ArithSpec = ArithSpec()) -> str:
    """'heldout' for a fixed `heldout_fraction` of problems (hash of the question), else 'train'."""
    bucket = zlib.crc32(problem.question.encode()) % 1_000_000
    return "heldout" if bucket < spec.heldout_fraction * 1_000_000 else "train"


def _valid_operands(v: int, op: str, spec: ArithSpec) -> range:
    if op == "+":
        return range(1, min(spec.max_operand, spec.max_value - v) + 1)
    if op == "-":
        return range(1, min(spec.max_operand, v) + 1)
    if v == 0:
        return range(0)  # "0 * b" teaches nothing.
    return range(2, min(spec.max_operand, spec.max_value // v) + 1)


def random_problem(rng: np.random.Generator, spec: ArithSpec = ArithSpec()) -> Problem:
    """One problem: uniform length, then per step a uniform valid op and a uniform operand."""
    n_ops = int(rng.integers(spec.min_ops, spec.max_ops + 1))
    v = int(rng.integers(1, spec.max_start + 1))
    start, ops = v, []
    for _ in range(n_ops):
        choices = [(op, r) for op in OPS if len(r := _valid_operands(v, op, spec))]
        op, operands = choices[int(rng.integers(len(choices)))]
        b = int(operands[int(rng.integers(len(operands)))])
        ops.append((op, b))
        v = apply_op(v, op, b)
    return Problem(start, tuple(ops))


def make_problems(split: str, n: int, seed: int = 0, spec: ArithSpec = ArithSpec()) -> list[Problem]:
    """`n` distinct problems of `split` ('train' or 'heldout'), deterministic given (spec, seed).

    Problems are drawn from `random_problem` and kept when `split_of` names
    `split`, so the two splits never share a question.
    """
    if split not in SPLITS:
        raise ValueError(f"make_problems: split must be one of {SPLITS}, got {split!r}.")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"make_problems: n must be an int >= 0, got {n!r}.")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    seen, out = set(), []
    attempts, max_attempts = 0, 20 * n + 1000
    while len(out) < n:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(
                f"make_problems: found only {len(out)} distinct {split} problems "
                f"of {n} requested in {max_attempts} draws; ask for fewer or "
                f"widen the ArithSpec."
            )
        problem = random_problem(rng, spec)
        if problem.question in seen or split_of(problem, spec) != split:
            continue
        seen.add(problem.question)
        out.append(problem)
    return out


# ---------------------------------------------------------------- traces


def equation(a: int, op: str, b: int, c: int) -> str:
    return f"{a} {op} {b} = {c}"


def answer_step(value) -> str:
    return f"The answer is \\boxed{{{value}}}."


def render_trace(problem: Problem, kind: str = "correct", rng: np.random.Generator | None = None) -> str:
    """A response for `problem`: steps joined by "\\n\\n", ending in the boxed answer.

    kind 'correct': every step right. 'error': one uniformly chosen step's result
    is off by 1-3 (never negative afterwards), later steps compute correctly from
    the wrong value, so the final answer is wrong. 'filler': a correct trace with
    1-2 `FILLER_PHRASES` steps inserted at uniform positions before the answer.
    'guess': the answer step alone, with a value drawn uniformly from [0, 30] (the
    default `ArithSpec.max_value`): an answer without work, as a base model sometimes
    writes one, and as the scripted PRM over-rates (weakness 2). 'merged': the correct
    trace with its lines joined by "\\n" into one step, the single giant step the
    `step_mean` baseline drives answers toward (PURE_SPEC §8.4).
    `rng` is needed for every kind but 'correct' and 'merged'.
    """
    if kind not in TRACE_KINDS:
        raise ValueError(f"render_trace: kind must be one of {TRACE_KINDS}, got {kind!r}.")
    if kind == "merged":
        return LINE_BREAK.join(split_steps(render_trace(problem)))
    if kind != "correct" and rng is None:
        raise ValueError(f"render_trace: kind {kind!r} is random; pass rng=np.random.default_rng(seed).")
    if kind == "guess":
        return answer_step(int(rng.integers(ArithSpec.max_value + 1)))
    error_at, delta = -1, 0
    if kind == "error":
        error_at = int(rng.integers(len(problem.ops)))
        delta = int(rng.choice([-3, -2, -1, 1, 2, 3]))
        if not _error_stays_non_negative(problem, error_at, delta):
            delta = abs(delta)  # a larger value never turns later results negative
    steps, v = [], problem.start
    for i, (op, b) in enumerate(problem.ops):
        c = apply_op(v, op, b) + (delta if i == error_at else 0)
        steps.append(equation(v, op, b, c))
        v = c
    if kind == "filler":
        for _ in range(int(rng.integers(1, 3))):
            phrase = FILLER_PHRASES[int(rng.integers(len(FILLER_PHRASES)))]
            steps.insert(int(rng.integers(len(steps) + 1)), phrase)
    steps.append(answer_step(v))
    return SEPARATOR.join(steps)


def _error_stays_non_negative(problem: Problem, error_at: int, delta: int) -> bool:
    v = problem.start
    for i, (op, b) in enumerate(problem.ops):
        v = apply_op(v, op, b) + (delta if i == error_at else 0)
        if v < 0:
            return False
    return True


# ---------------------------------------------------------------- oracle


def split_steps(text: str) -> list[str]:
    """The steps of a response text: `text.split("\\n\\n")` (an empty text is one empty step)."""
    return text.split(SEPARATOR)


def parse_equation(step: str) -> tuple[int, str, int, int] | None:
    """(a, op, b, c) of a step "a op b = c" (optional final "."), else None."""
    m = _EQUATION.match(step)
    if m is None:
        return None
    return int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))


def label_step(step: str) -> str:
    """The oracle label of one step; see the module docstring for the rules."""
    if not step.strip():
        return "empty"
    if "\\boxed" in step:
        return "answer"
    parsed = parse_equation(step)
    if parsed is not None:
        a, op, b, c = parsed
        return "correct" if apply_op(a, op, b) == c else "wrong"
    if "=" in step or any(ch.isdigit() for ch in step):
        return "wrong"
    return "filler"


def boxed_integer(text: str) -> int | None:
    """The last boxed answer of `text` as an integer, or None if absent or not an integer."""
    answer = extract_answer(text)
    if answer is None:
        return None
    m = _INTEGER.match(answer)
    return int(m.group(1)) if m else None


class Grade(NamedTuple):
    labels: tuple[str, ...]  # one oracle label per step
    answer: int | None  # the last boxed integer, None if absent
    answer_correct: bool  # answer == the problem's answer


def grade(text: str, problem: Problem) -> Grade:
    """Oracle labels of every step of `text` and whether its final answer is right."""
    answer = boxed_integer(text)
    return Grade(
        tuple(label_step(s) for s in split_steps(text)),
        answer,
        answer is not None and answer == problem.answer,
    )


def trace_mix(
    problems: Sequence[Problem], fractions: dict[str, float], seed: int = 0
) -> tuple[list[str], list[str]]:
    """(responses, kinds): one trace per problem, kinds drawn i.i.d. with `fractions`.

    `fractions` maps each of TRACE_KINDS (missing = 0) to a weight >= 0; weights
    are normalised.
    """
    unknown = sorted(set(fractions) - set(TRACE_KINDS))
    if unknown:
        raise ValueError(f"trace_mix: unknown trace kind {unknown[0]!r}; allowed {TRACE_KINDS}.")
    weights = np.array([float(fractions.get(k, 0.0)) for k in TRACE_KINDS])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"trace_mix: fractions must be >= 0 with a positive sum, got {fractions}.")
    rng = np.random.default_rng([seed, 7])
    kinds = [TRACE_KINDS[i] for i in rng.choice(len(TRACE_KINDS), len(problems), p=weights / weights.sum())]
    return [render_trace(p, k, rng) for p, k in zip(problems, kinds)], kinds
