"""Reward sources for PURE: PRM step scores, a guarded math verifier, shaping rewards,
and their composition from `config.rewards` (see `compose`)."""

from purejax.rewards.answers import answer_rejection, extract_answer, has_boxed_answer
from purejax.rewards.compose import ComposedRewards, compose_rewards, reward_metrics
from purejax.rewards.prm import PRMScorer, prm_step_rewards
from purejax.rewards.repetition import repetition_score, suffix_array_lcp
from purejax.rewards.shaping import (
    format_rewards,
    overlong_penalty,
    reasoning_pattern_rewards,
    repetition_rewards,
)
from purejax.rewards.sources import (
    SOURCE_TYPES,
    HostRows,
    SourceType,
    TokenBatch,
    applies_mask,
    hash_uniform,
    register_source,
)
from purejax.rewards.verifier import VerifierPool, default_pool, verify, verify_batch
