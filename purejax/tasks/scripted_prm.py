"""A scripted process reward model with the weaknesses PURE documents, for controlled studies.

It scores every step of a response to the arithmetic task in [-1, 1], the scale
of a learned PRM's 2 p(+) - 1 (PURE_SPEC §2), from the oracle's step label
(`purejax.tasks.arith.label_step`):

    step                                              default score
    correct "a op b = c"                              +0.8   (correct)
    wrong or malformed arithmetic                     -0.8   (wrong)
    filler "thinking" (prose without work)            +0.9   (filler)       weakness 1
    boxed answer equal to the last computed value     +0.8   (correct)
    boxed answer differing from it                    -0.8   (wrong)
    boxed answer with no computation before it        +0.9   (unchecked)    weakness 2
    empty first step                                  +0.9   (unchecked)    weakness 2
    empty later step                                   0.0   (empty)

plus noise uniform in [-noise, noise] (default 0.1), clipped to [-1, 1].

A step of several lines ("\\n" inside a step, the single giant step of a `merged` trace)
is scored by `multiline_steps`:

    "as_text" (default)   the step is one piece of text, as the oracle labels it: with a
                          boxed answer it is an answer with no computation before it
                          (unchecked), else malformed work (wrong)
    "by_line"             each line is judged in order, with the rules above and the running
                          context, and the step scores its worst line: a PRM that reads the
                          content of a giant step, so a correct one rates like correct work

Weaknesses, each a behaviour the paper observed in its learned PRM:

1. Filler is over-rated, above real work (PURE_SPEC §8.1): the PRM likes
   plan-like "thinking" steps. Under sum-form credit every extra filler step
   adds ~0.9 to the return, so the policy can raise its return by writing
   filler instead of solving: the collapse of sum-form PRM training.
2. A response with no work is rated high (PURE_SPEC §8.2): a causal PRM scores
   an answer-only or empty first step without context, and it rates them high.
   Min-form credit removes weakness 1's incentive but not this one: a one-step
   "The answer is \\boxed{7}." has min-form value ~0.9 > 0.8, PURE-PRM's late
   hack. A verifiable reward on a share of prompts anchors against it (§8.3).

Shown the problem (`problems=`, as the training loop does: a learned PRM
reads the prompt), "correct" also requires the equation to be the problem's
next operation on the running value, and a boxed answer to complete the
problem. Without the problem the PRM cannot tell a finished solution from one
that stops after its first correct line, so min-form credit learns to stop
early: a weakness of a question-blind scorer, not one the paper documents.

The scores are fixed by this table, never tuned to force a result. The table is also
the `scripted_prm` reward source's parameters (`reward_source("scripted_prm",
wrong=-0.4)`, or `--config.rewards.prm.wrong=-0.4` on a command line), so a study of
how credit assignment depends on the PRM's scale changes a config, not this module. Like a
learned PRM, the model is a deterministic function of its input: the noise is
a hash of (seed, the response text through the step), so the same prefix
always gets the same score and resampling cannot average it away. The PRM
checks arithmetic and consistency with the previous result, never whether a
step is the one the question asks for unless it is given the problem.

Step ends come from the token ids, exactly as `purejax.steps.step_end_mask`
marks them (separator tokens and the last valid token). The k-th step is the
text of the tokens after the (k-1)-th step end up to and including the k-th,
decoded, with the trailing separator removed; its score lands on the k-th
step-end position. This equals `text.split("\\n\\n")` whenever every "\\n\\n"
of the text ends a token; a sampled policy may also write "\\n\\n" as two "\\n"
tokens, which is not a step end, and the token view is the one credit
assignment uses, so it is the one scored.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Sequence

import numpy as np

from purejax.rewards.sources import HostRows, hash_uniform, register_source
from purejax.steps import separator_ids, step_end_mask_bt
from purejax.tasks import arith

_NOISE_SALT = zlib.crc32(b"scripted_prm/noise")
MULTILINE_MODES = ("as_text", "by_line")


@dataclasses.dataclass(frozen=True)
class ScriptedPRMScores:
    """The score of each kind of step (see the module docstring)."""

    correct: float = 0.8
    wrong: float = -0.8
    filler: float = 0.9  # weakness 1 (PURE_SPEC §8.1)
    unchecked: float = 0.9  # weakness 2 (PURE_SPEC §8.2)
    empty: float = 0.0
    noise: float = 0.1  # half-width of the uniform noise
    multiline_steps: str = "as_text"  # or "by_line" (see the module docstring)

    def __post_init__(self):
        if self.multiline_steps not in MULTILINE_MODES:
            raise ValueError(
                f"ScriptedPRMScores.multiline_steps must be one of {MULTILINE_MODES}, got "
                f"{self.multiline_steps!r}."
            )
        for field in dataclasses.fields(self):
            if field.type != "float":  # the scores and the noise; multiline_steps is checked above
                continue
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
                raise ValueError(
                    f"ScriptedPRMScores.{field.name} must be a number in [-1, 1], got {value!r}."
                )
        if self.noise < 0:
            raise ValueError(f"ScriptedPRMScores.noise must be >= 0, got {self.noise}.")


def clean_scores(
    steps: Sequence[str],
    scores: ScriptedPRMScores = ScriptedPRMScores(),
    problem: arith.Problem | None = None,
) -> np.ndarray:
    """float32[n]: the noiseless score of each step of one response (the table above).

    With `problem` (the question the PRM is shown, as a learned PRM sees the
    prompt), an equation is correct only if it is also the problem's next
    operation on the running value, and an answer only if it completes the
    problem; without it, steps are judged on their own arithmetic.
    """
    out = np.zeros(len(steps), np.float32)
    context = _Context()
    for k, step in enumerate(steps):
        pieces = [step]
        if scores.multiline_steps == "by_line":
            pieces = [line for line in step.split(arith.LINE_BREAK) if line.strip()] or [step]
        out[k] = min(_score_piece(piece, k == 0, scores, problem, context) for piece in pieces)
    return out


@dataclasses.dataclass
class _Context:
    """What the steps so far have computed."""

    last_value: int | None = None  # result of the latest equation-like step
    done_ops: int = 0  # operations of the problem carried out, in order


def _score_piece(
    piece: str, first: bool, scores: ScriptedPRMScores, problem: arith.Problem | None, context: _Context
) -> float:
    """The noiseless score of one step (or one line of a step), advancing `context`."""
    label = arith.label_step(piece)
    parsed = arith.parse_equation(piece)
    if problem is not None:
        label = _in_context(label, piece, problem, context.done_ops, context.last_value)
        if label == "correct" and parsed is not None:
            context.done_ops += 1
    if label == "correct":
        score = scores.correct
    elif label == "wrong":
        score = scores.wrong
    elif label == "filler":
        score = scores.filler
    elif label == "empty":
        score = scores.unchecked if first else scores.empty
    elif context.last_value is None:  # an answer with no computation before it
        score = scores.unchecked
    elif problem is not None:
        complete = context.done_ops == len(problem.ops) and arith.boxed_integer(piece) == problem.answer
        score = scores.correct if complete else scores.wrong
    else:
        score = scores.correct if arith.boxed_integer(piece) == context.last_value else scores.wrong
    if parsed is not None:
        context.last_value = parsed[3]
    return score


def _in_context(label: str, step: str, problem: arith.Problem, done_ops: int, last_value) -> str:
    """An arithmetically correct equation that is not the problem's next operation is wrong."""
    if label != "correct":
        return label
    a, op, b, _ = arith.parse_equation(step)
    current = problem.start if done_ops == 0 else last_value
    expected = problem.ops[done_ops] if done_ops < len(problem.ops) else None
    return "correct" if expected == (op, b) and a == current else "wrong"


def step_scores(
    steps: Sequence[str],
    scores: ScriptedPRMScores = ScriptedPRMScores(),
    seed: int = 0,
    problem: arith.Problem | None = None,
) -> np.ndarray:
    """float32[n] in [-1, 1]: noisy scores of the steps of one response.

    The noise of step k is a function of (seed, steps[0..k]) only.
    """
    clean = clean_scores(steps, scores, problem)
    if scores.noise == 0 or not len(steps):
        return clean
    prefix_keys = [zlib.crc32(arith.SEPARATOR.join(steps[: k + 1]).encode()) for k in range(len(steps))]
    u = hash_uniform(seed, _NOISE_SALT, np.asarray(prefix_keys, np.int64))
    return np.clip(clean + scores.noise * (2.0 * u - 1.0), -1.0, 1.0).astype(np.float32)


def score_text(text: str, scores: ScriptedPRMScores = ScriptedPRMScores(), seed: int = 0) -> np.ndarray:
    """Scores of the steps of a decoded response, split with `arith.split_steps`."""
    return step_scores(arith.split_steps(text), scores, seed)


class ScriptedPRM:
    """Host-side scripted PRM: response tokens in, float32[B, T] step rewards out.

        prm = ScriptedPRM(tokenizer)
        r_bt = prm(response_ids, response_mask)    # scores on step ends, 0 elsewhere

    Args:
      tokenizer: the policy's HF tokenizer (decodes step segments).
      scores: the score table.
      seed: noise seed.
      separator: the step separator; step-end tokens are `purejax.steps.separator_ids`.
    """

    def __init__(
        self,
        tokenizer,
        scores: ScriptedPRMScores = ScriptedPRMScores(),
        seed: int = 0,
        separator: str = arith.SEPARATOR,
    ):
        self.tokenizer = tokenizer
        self.scores = scores
        self.seed = int(seed)
        self.separator = separator
        self.separator_ids = separator_ids(tokenizer, separator)

    def step_ends(self, response_ids, response_mask) -> np.ndarray:
        """bool[B, T]: `purejax.steps.step_end_mask` over the rows."""
        return np.asarray(
            step_end_mask_bt(np.asarray(response_ids), np.asarray(response_mask), self.separator_ids)
        )

    def step_texts(self, response_ids, response_mask, step_end=None) -> list[list[str]]:
        """The text of every step of every row, in step-end order (see module docstring)."""
        ids = np.asarray(response_ids)
        mask = np.asarray(response_mask).astype(bool)
        _check_shapes(ids, mask)
        ends = self.step_ends(ids, mask) if step_end is None else np.asarray(step_end, bool)
        if ends.shape != ids.shape:
            raise ValueError(
                f"ScriptedPRM: step_end must have the shape of response_ids {ids.shape}, got {ends.shape}."
            )
        segments, counts = [], []
        for b in range(ids.shape[0]):
            end_positions = np.flatnonzero(ends[b] & mask[b])
            start = 0
            for end in end_positions:
                segments.append(ids[b, start : end + 1][mask[b, start : end + 1]].tolist())
                start = end + 1
            counts.append(len(end_positions))
        # One batched decode for the whole batch.
        texts = self.tokenizer.batch_decode(
            segments, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        texts = [t[: -len(self.separator)] if t.endswith(self.separator) else t for t in texts]
        out, i = [], 0
        for n in counts:
            out.append(texts[i : i + n])
            i += n
        return out

    def __call__(self, response_ids, response_mask, step_end=None, problems=None, scores=None) -> np.ndarray:
        """float32[B, T]: the k-th step's score on the row's k-th step end, 0 elsewhere.

        Args:
          response_ids: int[B, T] right-padded response tokens.
          response_mask: bool or 0/1 [B, T].
          step_end: optional bool[B, T] step ends (computed from the ids if None).
          problems: optional B problems the responses answer (see `clean_scores`).
          scores: the score table of this call (default: the one given at construction).
        """
        scores = self.scores if scores is None else scores
        ids = np.asarray(response_ids)
        mask = np.asarray(response_mask).astype(bool)
        _check_shapes(ids, mask)
        ends = self.step_ends(ids, mask) if step_end is None else np.asarray(step_end, bool)
        texts = self.step_texts(ids, mask, ends)
        r_bt = np.zeros(ids.shape, np.float32)
        for b, steps in enumerate(texts):
            problem = None if problems is None else problems[b]
            r_bt[b, np.flatnonzero(ends[b] & mask[b])] = step_scores(steps, scores, self.seed, problem)
        return r_bt


def _check_shapes(ids: np.ndarray, mask: np.ndarray) -> None:
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"ScriptedPRM: response_ids must be an integer array [batch, width], got "
            f"dtype {ids.dtype} shape {ids.shape}."
        )
    if mask.shape != ids.shape:
        raise ValueError(
            f"ScriptedPRM: response_mask must have the shape of response_ids {ids.shape}, got {mask.shape}."
        )


class ScriptedStepRewards:
    """The scorer the `scripted_prm` reward source is handed (`scorers["scripted_prm"]`).

    Like a learned PRM it reads the prompt: each row's problem is found from its
    decoded question, so steps are judged in the context of the question asked.
    """

    def __init__(self, tokenizer, problems: Sequence[arith.Problem], seed: int = 0):
        self.prm = ScriptedPRM(tokenizer, seed=seed)
        self.tokenizer = tokenizer
        self.by_prompt = {p.prompt: p for p in problems}

    def step_rewards(self, tokens, scores: ScriptedPRMScores | None = None) -> np.ndarray:
        """float32[B, T] step rewards of a TokenBatch (numpy arrays), with `scores` (default table)."""
        ids = np.where(np.asarray(tokens.prompt_mask, bool), np.asarray(tokens.prompt_ids), -1)
        prompts = self.tokenizer.batch_decode([row[row >= 0] for row in ids], skip_special_tokens=True)
        problems = [self.by_prompt.get(p) for p in prompts]
        return self.prm(tokens.response_ids, tokens.response_mask, tokens.step_end, problems, scores)


def _check_scores(entry):
    """(field, message) when the source's score table is invalid, else None."""
    values = {f.name: entry[f.name] for f in dataclasses.fields(ScriptedPRMScores)}
    try:
        ScriptedPRMScores(**values)
    except (TypeError, ValueError) as error:
        field = next((name for name in values if f".{name} " in str(error)), "correct")
        return field, str(error).rstrip(".")  # the config error adds its own
    return None


# The score table is the source's parameters (`reward_source("scripted_prm", wrong=-0.3)`), so a
# study of how credit assignment depends on the PRM's scale edits a config, not this module.
@register_source(
    "scripted_prm",
    kind="host",
    level="step",
    scorer="scripted_prm",
    params=dataclasses.asdict(ScriptedPRMScores()),
    check=_check_scores,
)
def _scripted_prm_source(rows: HostRows, scorer: ScriptedStepRewards, **scores):
    """The arithmetic miniature's scripted PRM (purejax.tasks.scripted_prm), on the host."""
    return scorer.step_rewards(rows.tokens, ScriptedPRMScores(**scores))
