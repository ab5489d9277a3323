"""Per-token log-probabilities of given tokens under a causal LM, with one full forward pass."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def token_logprobs(
    model, input_ids: jax.Array, attention_mask: jax.Array, temperature: float = 1.0
) -> jax.Array:
    """logp[b, t] = log softmax(logits[b, t-1] / temperature)[input_ids[b, t]].

    Args:
      model: a causal-LM `Decoder` (head "lm").
      input_ids: int [B, T], e.g. a left-padded prompt followed by the response.
      attention_mask: [B, T], 1 on real tokens.
      temperature: > 0; the sampler's temperature, so logprobs match what it sampled from
        (top-k / top-p truncation is not re-applied here).
    Returns:
      float32 [B, T]; 0 at t = 0 (no context) and wherever attention_mask is 0.
    """
    chex.assert_rank([input_ids, attention_mask], 2)
    chex.assert_equal_shape([input_ids, attention_mask])
    if model.config.head != "lm":
        raise ValueError(
            f"token_logprobs needs a causal-LM model (config.head == 'lm'), got a {model.config.head!r} head."
        )
    if not temperature > 0:
        raise ValueError(f"token_logprobs: temperature must be > 0, got {temperature}.")
    logits_btv = model(input_ids, attention_mask)[:, :-1] / temperature
    targets_bt = input_ids[:, 1:]
    # log p = logit[target] - logsumexp(logits): avoids materialising a second [B, T, V] array.
    target_logit = jnp.take_along_axis(logits_btv, targets_bt[..., None], axis=-1)[..., 0]
    logp_bt = target_logit - jax.nn.logsumexp(logits_btv, axis=-1)
    logp_bt = jnp.where(attention_mask[:, 1:].astype(bool), logp_bt, 0.0)
    return jnp.concatenate([jnp.zeros_like(logp_bt[:, :1]), logp_bt], axis=1)
