"""Small sequence-level shaping rewards: reasoning pattern, repetition, length, format.

Each takes what it needs (decoded texts or token lengths) for N rows and
returns float32[N]; the composition decides where they apply and their weight.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from purejax.rewards.answers import has_boxed_answer
from purejax.rewards.repetition import DEFAULT_MAX_CHARS, repetition_score

# Key reasoning phrases, as in the reasoning-pattern reward of Lv et al. 2025
# ("The Climb Carves Wisdom Deeper Than the Summit: On the Noisy Rewards in
# Learning to Reason"), which rewards their presence with no answer check at all.
DEFAULT_PHRASES = (
    "first",
    "let's verify",
    "let me verify",
    "double-check",
    "wait",
    "therefore",
    "alternatively",
    "let's check",
)


def reasoning_pattern_rewards(
    texts: Sequence[str],
    phrases: Sequence[str] = DEFAULT_PHRASES,
    per_phrase: float = 0.1,
    max_phrases: int = 5,
) -> np.ndarray:
    """r = per_phrase * min(#distinct phrases present, max_phrases); float32[N].

    Case-insensitive, on word boundaries ("first" does not match "firstly");
    counting distinct phrases, and capping, stops a policy from farming the
    reward by repeating one phrase. Bounded in [0, per_phrase * max_phrases].
    """
    if not phrases:
        return np.zeros(len(texts), np.float32)
    patterns = [re.compile(r"(?<!\w)" + re.escape(p.lower()) + r"(?!\w)") for p in phrases]
    found = np.array([[bool(p.search(t.lower())) for p in patterns] for t in texts], dtype=bool).reshape(
        len(texts), len(patterns)
    )
    return (per_phrase * np.minimum(found.sum(axis=1), max_phrases)).astype(np.float32)


def repetition_rewards(
    texts: Sequence[str], threshold: float = 0.2, penalty: float = 1.0, max_chars: int = DEFAULT_MAX_CHARS
) -> tuple[np.ndarray, np.ndarray]:
    """(-penalty where repetition_score > threshold else 0, the scores), both float32[N]."""
    scores = np.array([repetition_score(t, max_chars) for t in texts], dtype=np.float32)
    return np.where(scores > threshold, -penalty, 0.0).astype(np.float32), scores


def overlong_penalty(lengths, max_len: int, buffer: int) -> np.ndarray:
    """DAPO's soft overlong punishment; float32[N].

    0 for L <= max_len - buffer, then linear down to -1 at L = max_len, -1 beyond.
    """
    length = np.asarray(lengths, dtype=np.float64)
    return np.clip((max_len - buffer - length) / buffer, -1.0, 0.0).astype(np.float32)


def format_rewards(texts: Sequence[str]) -> np.ndarray:
    """1 if the response ends with a closed, non-empty `\\boxed{...}` answer, else 0; float32[N]."""
    return np.array([has_boxed_answer(t) for t in texts], dtype=np.float32)
