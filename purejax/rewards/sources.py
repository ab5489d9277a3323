"""Reward sources registered by name, and the inputs they receive.

Two interfaces (STYLE.md rule 7):

- model sources (`kind="model"`, the PRM): token arrays of the whole batch and a
  model-backed scorer in, float[B, T] step rewards out; fixed shapes, so rows
  where the source does not apply are scored and then zeroed.
- host sources (`kind="host"`: verifier, shaping, noise, a scripted PRM): the
  N rows where the source applies in (`HostRows`: decoded strings, token arrays),
  numpy float32[N] (sequence level) or float32[N, T] (step level) out.

A source type declares what it needs: its level ("step" or "sequence"), the named
scorer it is handed (`scorer="prm"`: the caller passes `scorers={"prm": ...}`, so a
second PRM or a value model is one more name, not a trainer change), its parameters
with their defaults (also the schema `purejax.config` validates against), and every
rule specific to it (`check`). Add one with `register_source`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from purejax.rewards import shaping
from purejax.rewards.prm import prm_step_rewards
from purejax.rewards.verifier import DEFAULT_TIMEOUT_S, verify_batch


class TokenBatch(NamedTuple):
    """Token arrays of B responses for model sources and host step sources (prompts left-, responses
    right-padded)."""

    prompt_ids: Any  # int[B, P]
    prompt_mask: Any  # bool[B, P]
    response_ids: Any  # int[B, T]
    response_mask: Any  # bool[B, T]
    step_end: Any  # bool[B, T], vmapped purejax.steps.step_end_mask


class HostRows(NamedTuple):
    """The N rows a host source scores (a subset of the batch, in batch order)."""

    texts: Sequence[str]  # decoded responses
    truths: Sequence[str | None]  # ground truths; None where the prompt has none
    lengths: np.ndarray  # int[N] valid response tokens
    prompt_index: np.ndarray  # int[N] dataset index of the row's prompt
    row_index: np.ndarray  # int[N] row in the full batch
    step: int  # training step (for reproducible noise)
    seed: int  # run seed
    tokens: TokenBatch | None = None  # the rows' token arrays (numpy), when the caller has them


# The fields every `config.rewards` entry has besides its type's parameters, with their
# defaults (level defaults to the type's own level).
COMMON_DEFAULTS = dict(weight=1.0, applies_to="all", fraction=1.0, baseline="shared")


@dataclasses.dataclass(frozen=True)
class SourceType:
    name: str
    kind: str  # "model" | "host"
    level: str  # "step" | "sequence"
    fn: Callable
    params: Mapping[str, Any]  # parameter -> default (also its schema)
    # check(entry) -> (field, message) for an invalid value, or None; `entry` holds the
    # common fields and the params, so a rule on either lives with its source.
    check: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None
    doc: str = ""
    scorer: str | None = None  # the name in `scorers` this source is handed
    # answer_correct(values, params) -> bool[N]: for sources that verify final answers, which
    # values mean "correct" (the monitors reuse them instead of verifying twice).
    answer_correct: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray] | None = None

    def defaults(self) -> dict[str, Any]:
        """Every field of a config entry of this type, at its default."""
        return dict(type=self.name, **COMMON_DEFAULTS, level=self.level, **self.params)


SOURCE_TYPES: dict[str, SourceType] = {}
KINDS = ("model", "host")


def register_source(
    name: str,
    *,
    kind: str,
    level: str,
    params: Mapping[str, Any] | None = None,
    check=None,
    scorer: str | None = None,
    answer_correct=None,
):
    """Decorator registering a reward source type under `name`.

    host:  `fn(rows: HostRows, [scorer,] **params) -> float32[N]` (sequence level) or
           float32[N, T] (step level, rewards on step ends).
    model: `fn(tokens: TokenBatch, scorer, **params) -> float[B, T]`.
    `scorer` names the entry of `compose_rewards(scorers=...)` passed to `fn` (model
    sources need one). `check(entry)` returns (field, message) for an invalid value, or None.
    """
    if kind not in KINDS or level not in ("step", "sequence"):
        raise ValueError(
            f"register_source({name!r}): kind must be one of {KINDS} and level "
            f"'step' or 'sequence', got {kind!r}, {level!r}."
        )
    if kind == "model" and not scorer:
        raise ValueError(f"register_source({name!r}): a model source names its scorer (scorer='prm').")

    def decorate(fn):
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        SOURCE_TYPES[name] = SourceType(
            name, kind, level, fn, dict(params or {}), check, doc, scorer, answer_correct
        )
        return fn

    return decorate


def scorers_needed(rewards: Mapping[str, Any]) -> set[str]:
    """The scorer names the configured sources need (`config.rewards` entries)."""
    return {SOURCE_TYPES[spec["type"]].scorer for spec in rewards.values()} - {None}


def model_scorers_needed(rewards: Mapping[str, Any]) -> set[str]:
    """The scorer names that model sources need: models that run on the devices."""
    types = [SOURCE_TYPES[spec["type"]] for spec in rewards.values()]
    return {t.scorer for t in types if t.kind == "model"}


# ---------------------------------------------------------------- built-in sources


@register_source("prm", kind="model", level="step", scorer="prm")
def _prm(tokens: TokenBatch, prm):
    """PURE's PRM: r = p(+) - p(-) on every step end (PURE_SPEC §2).

    `prm` is a PRMScorer (a token classifier's logits function and its step token).
    """
    return prm_step_rewards(
        prm.logits_fn,
        tokens.prompt_ids,
        tokens.prompt_mask,
        tokens.response_ids,
        tokens.response_mask,
        tokens.step_end,
        prm.step_token_id,
    )


# A per-item verifier deadline beyond an hour is a typo, and select()/SIGALRM overflow on huge ones.
MAX_VERIFIER_TIMEOUT_S = 3600.0


def _check_verifiable(p):
    if p["applies_to"] != "with_answer":
        return "applies_to", "the verifier needs a ground truth: set it to 'with_answer'"
    if p["correct"] <= p["wrong"]:
        return "correct", f"must be > wrong ({p['wrong']}), got {p['correct']}"
    if p["workers"] < 0:
        return "workers", f"must be >= 0 (0 = in-process), got {p['workers']}"
    if not 0 < p["timeout_s"] <= MAX_VERIFIER_TIMEOUT_S:
        return "timeout_s", f"must be in (0, {MAX_VERIFIER_TIMEOUT_S}] seconds, got {p['timeout_s']}"
    return None


@register_source(
    "verifiable",
    kind="host",
    level="sequence",
    params=dict(correct=1.0, wrong=0.0, workers=2, timeout_s=DEFAULT_TIMEOUT_S),
    check=_check_verifiable,
    answer_correct=lambda values, p: values == np.float32(p["correct"]),
)
def _verifiable(rows: HostRows, correct, wrong, workers, timeout_s):
    """VR: `correct` if the last boxed answer equals the ground truth, else `wrong` (§4)."""
    return verify_batch(
        rows.texts, rows.truths, correct=correct, wrong=wrong, workers=workers, timeout_s=timeout_s
    )


def _check_pattern(p):
    if p["per_phrase"] < 0 or p["max_phrases"] < 0:
        return "per_phrase", "per_phrase and max_phrases must be >= 0"
    if not all(isinstance(x, str) and x.strip() for x in p["phrases"]):
        return "phrases", "must be a tuple of non-empty strings"
    return None


@register_source(
    "reasoning_pattern",
    kind="host",
    level="sequence",
    params=dict(phrases=shaping.DEFAULT_PHRASES, per_phrase=0.1, max_phrases=5),
    check=_check_pattern,
)
def _reasoning_pattern(rows: HostRows, phrases, per_phrase, max_phrases):
    """per_phrase x (distinct key reasoning phrases present, capped at max_phrases)."""
    return shaping.reasoning_pattern_rewards(rows.texts, tuple(phrases), per_phrase, max_phrases)


def _check_repetition(p):
    if not 0 <= p["threshold"] < 1:
        return "threshold", f"must be in [0, 1), got {p['threshold']}"
    if p["max_chars"] < 2:
        return "max_chars", f"must be >= 2, got {p['max_chars']}"
    return None


@register_source(
    "repetition",
    kind="host",
    level="sequence",
    params=dict(threshold=0.2, penalty=1.0, max_chars=8192),
    check=_check_repetition,
)
def _repetition(rows: HostRows, threshold, penalty, max_chars):
    """-penalty if the repetition score (PURE_SPEC §8.5) exceeds threshold, else 0."""
    return shaping.repetition_rewards(rows.texts, threshold, penalty, max_chars)[0]


def _check_length(p):
    if not 0 < p["buffer"] <= p["max_len"]:
        return "buffer", f"must be in (0, max_len={p['max_len']}], got {p['buffer']}"
    return None


@register_source(
    "length", kind="host", level="sequence", params=dict(max_len=7168, buffer=1024), check=_check_length
)
def _length(rows: HostRows, max_len, buffer):
    """DAPO soft overlong penalty: 0 up to max_len - buffer tokens, linear to -1 at max_len."""
    return shaping.overlong_penalty(rows.lengths, max_len, buffer)


@register_source("format", kind="host", level="sequence")
def _format(rows: HostRows):
    """1 if a closed, non-empty final \\boxed{...} answer is present, else 0."""
    return shaping.format_rewards(rows.texts)


def _noisable(name: str) -> bool:
    source = SOURCE_TYPES.get(name)
    return source is not None and (source.kind, source.level, source.scorer) == ("host", "sequence", None)


def _check_noise(p):
    if not 0 <= p["p"] <= 1:
        return "p", f"must be in [0, 1], got {p['p']}"
    if not _noisable(p["inner"]) or p["inner"] == "noise":
        allowed = sorted(n for n in SOURCE_TYPES if _noisable(n) and n != "noise")
        return "inner", f"must name a host sequence source type, one of {allowed}; got {p['inner']!r}"
    inner = SOURCE_TYPES[p["inner"]]
    for key, value in dict(p["inner_params"]).items():
        if key not in inner.params:
            return f"inner_params.{key}", f"unknown key; allowed: {sorted(inner.params)}"
        if type(value) is not type(inner.params[key]) and not (
            isinstance(value, (int, float)) and isinstance(inner.params[key], float)
        ):
            return f"inner_params.{key}", f"must be {type(inner.params[key]).__name__}, got {value!r}"
    if inner.check is not None:  # the inner source's rules on its parameters; where it applies is noise's
        entry = {**inner.defaults(), **dict(p["inner_params"]), "applies_to": "with_answer"}
        problem = inner.check(entry)
        if problem is not None:
            return f"inner_params.{problem[0]}", problem[1]
    return None


@register_source(
    "noise",
    kind="host",
    level="sequence",
    params=dict(inner="verifiable", inner_params={}, p=0.1, low=0.0, high=1.0),
    check=_check_noise,
)
def _noise(rows: HostRows, inner, inner_params, p, low, high):
    """Another source's value, flipped (v -> low + high - v) with probability p per response.

    The flip is a deterministic hash of (seed, step, prompt index, batch row), so
    a run reproduces and resumes exactly. For the binary VR, low=0 and high=1 swap
    correct and wrong: the reward-noise setting of Lv et al. 2025.
    """
    inner_type = SOURCE_TYPES[inner]
    values = np.asarray(inner_type.fn(rows, **{**inner_type.params, **dict(inner_params)}), dtype=np.float32)
    flip = hash_uniform(rows.seed, _salt("noise/" + inner), rows.step, rows.prompt_index, rows.row_index) < p
    return np.where(flip, low + high - values, values).astype(np.float32)


# ---------------------------------------------------------------- deterministic hashing


def _salt(name: str) -> int:
    return zlib.crc32(name.encode())


def hash_uniform(*keys) -> np.ndarray:
    """Uniform [0, 1) floats from a splitmix64 hash of integer keys (scalars or arrays).

    Stateless and vectorised: the value for a row depends only on its keys, so
    subsampling and noise are reproducible across restarts and batch splits.
    """
    shape = np.broadcast(*[np.asarray(k) for k in keys]).shape
    x = np.zeros(shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            x = _splitmix64(x ^ np.asarray(key).astype(np.int64).astype(np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def applies_mask(
    name: str, applies_to: str, fraction: float, has_answer_b, prompt_index_b, seed: int
) -> np.ndarray:
    """bool[B]: rows the source `name` scores.

    'with_answer' keeps rows whose prompt has a ground truth; then a `fraction`
    of prompts is kept by hash(seed, source name, prompt index) < fraction, so all
    K samples of a prompt share the decision and it never changes within a run.
    """
    has_answer_b = np.asarray(has_answer_b, dtype=bool)
    base = has_answer_b if applies_to == "with_answer" else np.ones_like(has_answer_b)
    if fraction >= 1.0:
        return base
    keep = hash_uniform(seed, _salt(name), np.asarray(prompt_index_b)) < fraction
    return base & keep


def host_rows(texts, truths, lengths, prompt_index, step, seed, rows: np.ndarray, tokens=None) -> HostRows:
    return HostRows(
        [texts[i] for i in rows],
        [truths[i] for i in rows],
        np.asarray(lengths)[rows],
        np.asarray(prompt_index)[rows],
        rows,
        int(step),
        int(seed),
        None if tokens is None else TokenBatch(*(np.asarray(x)[rows] for x in tokens)),
    )
