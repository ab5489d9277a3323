"""Reward sources registered by name, and the inputs they receive.

Two interfaces (STYLE.md rule 7):

- jittable sources (`kind="jax"`, the PRM): token arrays of the whole batch in,
  float[B, T] step rewards out; fixed shapes, so rows where the source does not
  apply are scored and then zeroed.
- host sources (`kind="host"`: verifier, shaping, noise): decoded strings in,
  numpy float32[N] out, called only on the N rows where the source applies.

A source type declares its level ("step" or "sequence") and its parameters with
their defaults; those defaults are also the schema `purejax.config` validates
against. Add one with `register_source`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from purejax.rewards import shaping
from purejax.rewards.prm import prm_step_rewards
from purejax.rewards.verifier import DEFAULT_TIMEOUT_S, verify_batch


class TokenBatch(NamedTuple):
    """Token arrays of B responses for jittable sources (prompts left-, responses right-padded)."""

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


@dataclasses.dataclass(frozen=True)
class SourceType:
    name: str
    kind: str  # "jax" | "host"
    level: str  # "step" | "sequence"
    fn: Callable
    params: Mapping[str, Any]  # parameter -> default (also its schema)
    check: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None
    doc: str = ""


SOURCE_TYPES: dict[str, SourceType] = {}


def register_source(name: str, *, kind: str, level: str, params: Mapping[str, Any] | None = None, check=None):
    """Decorator registering a reward source type under `name`.

    host: `fn(rows: HostRows, **params) -> float32[N]`.
    jax:  `fn(tokens: TokenBatch, prm: PRMScorer, **params) -> float[B, T]`.
    `check(params)` returns (param, message) for an invalid value, or None.
    """
    if kind not in ("jax", "host") or level not in ("step", "sequence"):
        raise ValueError(
            f"register_source({name!r}): kind must be 'jax' or 'host' and level "
            f"'step' or 'sequence', got {kind!r}, {level!r}."
        )

    def decorate(fn):
        SOURCE_TYPES[name] = SourceType(
            name, kind, level, fn, dict(params or {}), check, (fn.__doc__ or "").strip().split("\n")[0]
        )
        return fn

    return decorate


# ---------------------------------------------------------------- built-in sources


@register_source("prm", kind="jax", level="step")
def _prm(tokens: TokenBatch, prm):
    """PURE's PRM: r = p(+) - p(-) on every step end (PURE_SPEC §2).

    `prm` is a PRMScorer (a token classifier), or any object with
    `step_rewards(tokens: TokenBatch) -> float[B, T]`.
    """
    if prm is None:
        raise ValueError(
            "compose_rewards: the config has a 'prm' reward source but no `prm` "
            "was passed; pass prm=PRMScorer(logits_fn, step_token_id)."
        )
    if tokens is None:
        raise ValueError("compose_rewards: the 'prm' source needs `tokens` (a TokenBatch).")
    if hasattr(prm, "step_rewards"):
        # Any other step scorer, e.g. the arithmetic task's scripted PRM (purejax.tasks).
        return prm.step_rewards(tokens)
    return prm_step_rewards(
        prm.logits_fn,
        tokens.prompt_ids,
        tokens.prompt_mask,
        tokens.response_ids,
        tokens.response_mask,
        tokens.step_end,
        prm.step_token_id,
    )


def _check_verifiable(p):
    if p["correct"] <= p["wrong"]:
        return "correct", f"must be > wrong ({p['wrong']}), got {p['correct']}"
    if p["workers"] < 0:
        return "workers", f"must be >= 0 (0 = in-process), got {p['workers']}"
    if p["timeout_s"] <= 0:
        return "timeout_s", f"must be > 0 seconds, got {p['timeout_s']}"
    return None


@register_source(
    "verifiable",
    kind="host",
    level="sequence",
    params=dict(correct=1.0, wrong=0.0, workers=2, timeout_s=DEFAULT_TIMEOUT_S),
    check=_check_verifiable,
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


def _check_noise(p):
    if not 0 <= p["p"] <= 1:
        return "p", f"must be in [0, 1], got {p['p']}"
    if p["inner"] not in SOURCE_TYPES or SOURCE_TYPES[p["inner"]].kind != "host" or p["inner"] == "noise":
        allowed = sorted(n for n, t in SOURCE_TYPES.items() if t.kind == "host" and n != "noise")
        return "inner", f"must name a host source type, one of {allowed}; got {p['inner']!r}"
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


def host_rows(texts, truths, lengths, prompt_index, step, seed, rows: np.ndarray) -> HostRows:
    return HostRows(
        [texts[i] for i in rows],
        [truths[i] for i in rows],
        np.asarray(lengths)[rows],
        np.asarray(prompt_index)[rows],
        rows,
        int(step),
        int(seed),
    )


def step_end_mask_bt(response_ids, response_mask, separator_ids):
    """bool[B, T]: `purejax.steps.step_end_mask` over the rows of a batch (jitted)."""
    return _step_end_mask_bt(
        jnp.asarray(response_ids), jnp.asarray(response_mask), jnp.asarray(separator_ids)
    )


@jax.jit
def _step_end_mask_bt(response_ids, response_mask, separator_ids):
    from purejax.steps import step_end_mask

    return jax.vmap(step_end_mask, (0, 0, None))(response_ids, response_mask, separator_ids)
