"""Best-of-N with a PRM: one score per response from its step rewards, and the picks.

Each response's step rewards r_1..r_S are aggregated by one of AGGREGATIONS:

    min       min_i r_i                        (PURE's min-form value)
    soft_min  sum_i softmax(-r/T)_i r_i        (the sum of PURE's transformed rewards, T = 0.1)
    last      r_S                              (the last step, an outcome-style score)
    sum       sum_i r_i                        (sum-form, the hackable one)

and the argmax response per problem is kept (`purejax.evaluation` generates and scores).
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax import credit
from purejax import steps as steps_lib
from purejax.rewards.answers import extract_answer
from purejax.rewards.prm import prm_step_rewards
from purejax.task import step_token_id

AGGREGATIONS = ("min", "soft_min", "last", "sum")
SOFT_MIN_TEMPERATURE = 0.1  # PURE_SPEC §3's default T


def aggregate_step_rewards(r_t, step_end_t, temperature=SOFT_MIN_TEMPERATURE) -> jnp.ndarray:
    """One response's score under each of AGGREGATIONS: float32[len(AGGREGATIONS)].

    Args:
      r_t: float[T] step rewards on step ends (anything elsewhere is ignored).
      step_end_t: bool or 0/1 [T] valid step ends.
      temperature: T of the soft-min transform.

    Returns:
      [min, soft_min, last, sum] of the step rewards; -inf for all four when the
      response has no step end (never picked over one that has). min, soft_min and sum
      are G_0 of `purejax.credit`'s returns: the value each credit mode gives the response.
    """
    end_t = jnp.asarray(step_end_t).astype(bool)
    r_t = jnp.where(end_t, jnp.asarray(r_t, jnp.float32), 0.0)
    last_index = jnp.max(jnp.where(end_t, jnp.arange(r_t.shape[0]), -1))
    # Every token up to the last step end counts as valid, so the returns see every step.
    valid_t = jnp.arange(r_t.shape[0]) <= last_index
    scores = jnp.stack(
        [
            credit.min_form_returns(r_t, end_t, valid_t)[0],
            credit.soft_min_returns(r_t, end_t, valid_t, temperature)[0],
            r_t[jnp.maximum(last_index, 0)],
            credit.sum_form_returns(r_t, valid_t)[0],
        ]
    )
    return jnp.where(jnp.any(end_t), scores, -jnp.inf)


def best_of_n_accuracy(scores_pna, correct_pn) -> dict[str, float]:
    """Accuracy of picking argmax_j scores[p, j, a] (first on ties) for each aggregation a.

    Args:
      scores_pna: float[P, N, len(AGGREGATIONS)] per-response scores.
      correct_pn: 0/1 [P, N] verifier scores.
    """
    scores_pna, correct_pn = np.asarray(scores_pna), np.asarray(correct_pn, np.float64)
    picked_pa = np.argmax(scores_pna, axis=1)
    hit_pa = np.take_along_axis(correct_pn, picked_pa, axis=1)
    return {
        name: float(hit_pa[:, a].mean()) if len(hit_pa) else math.nan for a, name in enumerate(AGGREGATIONS)
    }


def majority_vote_correct(texts: Sequence[str], correct: Sequence[float]) -> float:
    """1/0: is the most frequent extracted answer (first to appear on ties) correct? 0 if none has one."""
    answers = [extract_answer(t) for t in texts]
    keys = ["".join(a.split()) if a is not None else None for a in answers]
    counts = collections.Counter(k for k in keys if k)
    if not counts:
        return 0.0
    top = max(counts.values())
    winner = next(k for k in keys if k and counts[k] == top)
    return float(correct[keys.index(winner)])


def prm_step_token_id(prm_model, tokenizer, step_token: str = "\n") -> int:
    """The PRM's step-token id in the policy's tokenizer, after checking the PRM fits that tokenizer."""
    if prm_model.config.head != "classifier":
        raise ValueError("prm: the PRM must be a ...ForTokenClassification checkpoint (num_labels=2).")
    if prm_model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"prm: the PRM has {prm_model.config.vocab_size} token embeddings but the policy's "
            f"tokenizer has {len(tokenizer)} tokens; the PRM must share the policy's vocabulary "
            "(PURE-PRM-7B and the Qwen2.5 models do)."
        )
    return step_token_id(tokenizer, step_token)


@functools.partial(jax.jit, static_argnames=("graphdef", "micro_batch", "partitioner"))
def score_steps(graphdef, state, *arrays, micro_batch, partitioner=None):
    """(step ends bool [B, T], PRM step rewards [B, T], aggregates [B, len(AGGREGATIONS)]) of one chunk.

    arrays: prompt ids and mask, response tokens and mask, separator ids, the step token id and
    the soft-min temperature. The PRM runs on `micro_batch` rows at a time (lax.map), bounding
    its [rows, heads, S, S] attention; its parameters are an argument, never constants baked
    into the program. With a partitioner it is traced under the mesh (the Decoder's sharding
    constraints apply).
    """
    if partitioner is None:
        return _score_steps_body(graphdef, state, *arrays, micro_batch=micro_batch)
    with partitioner.active():
        return _score_steps_body(graphdef, state, *arrays, micro_batch=micro_batch)


def _score_steps_body(
    graphdef,
    state,
    prompt_ids,
    prompt_mask,
    tokens,
    mask,
    separators,
    step_token_id,
    temperature,
    *,
    micro_batch,
):
    end = jax.vmap(steps_lib.step_end_mask, (0, 0, None))(tokens, mask, separators)
    prm = nnx.merge(graphdef, state)

    def rewards(rows):
        return prm_step_rewards(lambda ids, m: prm(ids, m, scan=True), *rows, step_token_id)

    # Chunk c holds rows c, c + chunks, ...: with rows split over devices in contiguous
    # blocks, every chunk draws from every device.
    split = lambda x: x.reshape(micro_batch, -1, *x.shape[1:]).swapaxes(0, 1)
    r = jax.lax.map(rewards, tuple(split(x) for x in (prompt_ids, prompt_mask, tokens, mask, end)))
    r = r.swapaxes(0, 1).reshape(tokens.shape)
    return end, r, jax.vmap(aggregate_step_rewards, (0, 0, None))(r, end, temperature)
