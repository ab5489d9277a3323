"""Process rewards from a PRM (PURE_SPEC §2): one score per reasoning step.

The PRM is a causal LM with a 2-class token-classification head, trained with a
step token ("\\n") after each step and labelled on it. To score a response we
rebuild its PRM input with every step-end token replaced by that step token,
run one batched forward pass, and read r = p(+) - p(-) on the step ends.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

LogitsFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


class PRMScorer(NamedTuple):
    """What the `prm` reward source needs: the classifier and its step token id.

    logits_fn: `(input_ids int[B, S], attention_mask [B, S]) -> logits [B, S, 2]`,
      ideally already jitted. Prompts are left-padded, so it must derive position
      ids from the attention mask (cumsum - 1), as HF generation does, for padded
      rows to score like unpadded ones.
    step_token_id: the id of the PRM's step token (config.prm.step_token, "\\n").
    """

    logits_fn: LogitsFn
    step_token_id: int


def scorer_for(model, step_token_id: int, partitioner=None, batch_size: int = 0) -> PRMScorer:
    """A PRMScorer over an nnx token classifier (purejax.models.Decoder, num_labels = 2).

    One jitted forward with the weights as an argument, not constants baked into the
    compiled program, called on `batch_size` rows at a time (0: all rows at once; the last
    call is padded to the same size, so there is one compile). With a
    `purejax.sharding.Partitioner` the weights are sharded by their logical axes and the rows
    over data x fsdp, and the logits come back whole on every process, so scoring runs
    unchanged on a pod (config.prm.batch_size must then be a multiple of data x fsdp).
    """
    from flax import nnx

    from purejax import sharding

    graphdef, params = nnx.split(model)

    def forward(params, ids, mask):
        # Layers scanned: a forward over thousands of tokens keeps one layer's activations.
        return nnx.merge(graphdef, params)(ids, mask, scan=True)

    if partitioner is None:
        call = functools.partial(jax.jit(forward), params)
    else:
        params = partitioner.place(params)
        sharded_forward = partitioner.jit(forward)

        def call(ids, mask):
            rows = partitioner.batch(ids.shape[0])
            ids, mask = partitioner.put((np.asarray(ids), np.asarray(mask)), (rows, rows))
            return jnp.asarray(sharding.fetch(sharded_forward(params, ids, mask)))

    def logits_fn(ids, mask):
        rows = ids.shape[0]
        size = batch_size or rows
        out = []
        for start in range(0, rows, size):  # fixed-size row chunks, not a loop over rows
            chunk = slice(start, start + size)
            pad = size - ids[chunk].shape[0]
            ids_c, mask_c = (jnp.pad(x[chunk], ((0, pad), (0, 0))) for x in (ids, mask))
            out.append(call(ids_c, mask_c)[: size - pad])
        return out[0] if len(out) == 1 else jnp.concatenate(out)

    return PRMScorer(logits_fn, step_token_id)


def prm_inputs(prompt_ids, prompt_mask, response_ids, response_mask, step_end_mask, step_token_id):
    """The PRM's input for a batch of responses (PURE_SPEC §2): what it reads, and where.

    input_ids = [prompt ; response with every step-end token replaced by the step
    token], attention = [prompt_mask ; response_mask]. Used by `prm_step_rewards`
    at RL time and by `purejax.prm_data` to build training examples, so a trained
    PRM is labelled on exactly the tokens it is read on.

    Returns:
      (input_ids [B, P+T] in response_ids' dtype, attention int32 [B, P+T],
      end_bt bool [B, T]: the valid step ends, whose PRM positions are P + t).
    """
    response_ids = jnp.asarray(response_ids)
    end_bt = jnp.asarray(step_end_mask).astype(bool) & jnp.asarray(response_mask).astype(bool)
    prm_response_bt = jnp.where(end_bt, jnp.asarray(step_token_id, response_ids.dtype), response_ids)
    input_ids = jnp.concatenate([jnp.asarray(prompt_ids).astype(response_ids.dtype), prm_response_bt], axis=1)
    attention = jnp.concatenate([jnp.asarray(prompt_mask), jnp.asarray(response_mask)], axis=1).astype(
        jnp.int32
    )
    return input_ids, attention, end_bt


def prm_step_rewards(
    logits_fn: LogitsFn, prompt_ids, prompt_mask, response_ids, response_mask, step_end_mask, step_token_id
) -> jnp.ndarray:
    """PRM step rewards r_bt = softmax(logits)[1] - softmax(logits)[0] on step ends, 0 elsewhere.

    PRM input = [prompt ; response with each step-end token replaced by the step
    token]. The replacement keeps the length, so the logits at position P + i
    belong to response position i.

    Known wrinkle (PURE_SPEC §2, kept on purpose, as in the paper): step ends are
    found on the policy's tokens, and BPE merges text into the separator, so
    replacing a merged token such as "$$\\n\\n" or ".\\n\\n" by "\\n" also drops the
    "$$" / "." it carried. The PRM sees slightly different text than the policy
    wrote; the default follows the paper rather than silently "fixing" it.

    Args:
      logits_fn: `(input_ids int[B, P+T], attention_mask int32[B, P+T]) -> [B, P+T, 2]`.
      prompt_ids: int[B, P], left-padded.
      prompt_mask: bool or 0/1 [B, P].
      response_ids: int[B, T], right-padded.
      response_mask: bool or 0/1 [B, T].
      step_end_mask: bool[B, T] (vmapped `purejax.steps.step_end_mask`).
      step_token_id: int, the PRM's step token.

    Returns:
      float32[B, T], in [-1, 1] on step ends, 0 elsewhere (and on padding).
    """
    chex.assert_rank([prompt_ids, prompt_mask, response_ids, response_mask, step_end_mask], 2)
    chex.assert_equal_shape([prompt_ids, prompt_mask])
    chex.assert_equal_shape([response_ids, response_mask, step_end_mask])
    chex.assert_equal_shape_prefix([prompt_ids, response_ids], 1)
    width = response_ids.shape[1]
    input_ids, attention, end_bt = prm_inputs(
        prompt_ids, prompt_mask, response_ids, response_mask, step_end_mask, step_token_id
    )
    logits = logits_fn(input_ids, attention)
    chex.assert_shape(
        logits, (*input_ids.shape, 2), custom_message="prm_step_rewards: logits_fn must return [B, P+T, 2]"
    )
    p_bt2 = jax.nn.softmax(logits[:, -width:, :].astype(jnp.float32), axis=-1)
    return jnp.where(end_bt, p_bt2[..., 1] - p_bt2[..., 0], 0.0)
