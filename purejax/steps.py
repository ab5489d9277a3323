"""Splitting a response into reasoning steps (PURE_SPEC §1).

A step ends at every token whose decoded text ends with the separator ("\\n\\n"
by default) and at the last valid token. BPE vocabularies merge the separator
with what precedes it (".\\n\\n", ":\\n\\n", "$$\\n\\n"), so the separator is a set
of ids computed once from the tokenizer, never a single id.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from purejax import _checks


def separator_ids(tokenizer, separator: str = "\n\n") -> np.ndarray:
    """Every vocabulary id whose decoded text ends with `separator`.

    Args:
      tokenizer: a HF tokenizer (anything with `len()` and `batch_decode`).
      separator: the step separator.

    Returns:
      int32[S], sorted ascending, S >= 1.

    Raises:
      ValueError: if `separator` is empty or no id decodes to text ending in it.
    """
    if not separator:
        raise ValueError("separator_ids: `separator` must be a non-empty string, e.g. '\\n\\n'.")
    vocab_size = len(tokenizer)
    # One batched call: decoding ids one by one costs minutes on a 150k vocabulary.
    texts = tokenizer.batch_decode(
        [[i] for i in range(vocab_size)], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    ids = np.asarray([i for i, text in enumerate(texts) if text.endswith(separator)], dtype=np.int32)
    if ids.size == 0:
        raise ValueError(
            f"separator_ids: no token of this tokenizer ({vocab_size} ids) decodes to text "
            f"ending in {separator!r}; pass the separator the model actually emits."
        )
    return ids


def step_end_mask(tokens_t, mask_t, separator_ids) -> jnp.ndarray:
    """Marks where each step of one response ends.

    e_t = m_t and (tokens_t in S or t is the last valid position).

    Args:
      tokens_t: int[T] response tokens.
      mask_t: bool or 0/1 [T], valid response tokens (padding is 0).
      separator_ids: int[S] separator ids, e.g. from `separator_ids`; need not be sorted.

    Returns:
      bool[T]: True at separator tokens and at the last valid token; False on padding.
      A row with no valid token has no step end.
    """
    fn = "step_end_mask"
    _checks.rank(fn, tokens_t=(tokens_t, 1), mask_t=(mask_t, 1), separator_ids=(separator_ids, 1))
    _checks.integer(fn, tokens_t=tokens_t, separator_ids=separator_ids)
    _checks.mask(fn, mask_t=mask_t)
    _checks.same_shape(fn, tokens_t=tokens_t, mask_t=mask_t)
    if np.shape(separator_ids)[0] == 0:
        raise ValueError(f"{fn}: `separator_ids` is empty; build it with purejax.separator_ids.")
    valid_t = jnp.asarray(mask_t).astype(bool)
    # A sorted lookup costs O(T log S) rather than the O(T S) of a broadcast compare.
    sorted_ids = jnp.sort(jnp.asarray(separator_ids))
    pos_t = jnp.clip(jnp.searchsorted(sorted_ids, tokens_t), 0, sorted_ids.shape[0] - 1)
    is_separator_t = sorted_ids[pos_t] == tokens_t
    return valid_t & (is_separator_t | is_last_valid(valid_t))


def step_end_mask_bt(response_ids, response_mask, separator_ids) -> jnp.ndarray:
    """bool[B, T]: `step_end_mask` over the rows of a batch (jitted; one compile per shape)."""
    return _step_end_mask_bt(
        jnp.asarray(response_ids), jnp.asarray(response_mask), jnp.asarray(separator_ids)
    )


@jax.jit
def _step_end_mask_bt(response_ids, response_mask, separator_ids):
    return jax.vmap(step_end_mask, (0, 0, None))(response_ids, response_mask, separator_ids)


def is_last_valid(mask_t) -> jnp.ndarray:
    """bool[T]: True at the last position where `mask_t` is set (nowhere if none is)."""
    valid_t = jnp.asarray(mask_t).astype(bool)
    t = jnp.arange(valid_t.shape[0])
    last = jnp.max(jnp.where(valid_t, t, -1))
    return t == last


def step_ids(step_end_t, mask_t) -> jnp.ndarray:
    """int32[T]: the index of the step each valid token belongs to, -1 on padding.

    A step runs from just after the previous step end through its own step end.
    """
    ends_before_t = jnp.cumsum(step_end_t.astype(jnp.int32)) - step_end_t.astype(jnp.int32)
    return jnp.where(jnp.asarray(mask_t).astype(bool), ends_before_t, -1)
