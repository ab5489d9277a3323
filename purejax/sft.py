"""Supervised fine-tuning (SFT): next-token cross-entropy on response tokens, AdamW.

    graphdef, state = init_sft_state(model, optimizer)
    step = make_sft_step(graphdef, optimizer)
    state, metrics = step(state, batch)          # one jitted update

A training example is [prompt ; response ; EOS], right-padded to a fixed width L
(`encode_examples`). The loss is the token mean over response tokens (EOS
included) of -log p(x_t | x_<t); prompt tokens are context only:

    loss = sum_{b,t} l_bt [t in response_b] / sum_{b,t} [t in response_b],
    l_bt = logsumexp(logits_b,t-1) - logits_b,t-1[x_bt].

Prompts and responses are tokenised separately and concatenated, exactly the
ids the RL loop feeds the policy (prompt ids, then sampled response ids).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from purejax import reductions
from purejax.optim import global_norm_clip


class SFTBatch(NamedTuple):
    input_ids: Any  # int32[B, L]: prompt, response, EOS, then padding
    attention_mask: Any  # bool[B, L]: real tokens
    loss_mask: Any  # bool[B, L]: response tokens and the EOS (the tokens predicted)


class SFTState(NamedTuple):
    params: Any  # nnx.State of the model's nnx.Param leaves
    opt_state: Any
    step: jnp.ndarray  # int32 scalar


def encode_examples(
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_len: int,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> SFTBatch:
    """Tokenises (prompt, response) pairs into a right-padded numpy SFTBatch of width max_len.

    Raises:
      ValueError: if the lists differ in length, the tokenizer has no EOS/pad id,
        or an example is longer than max_len (naming it and the length needed).
    """
    if len(prompts) != len(responses):
        raise ValueError(
            f"encode_examples: {len(prompts)} prompts but {len(responses)} "
            f"responses; pass one response per prompt."
        )
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    pad = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    if eos is None or pad is None:
        raise ValueError(
            "encode_examples: the tokenizer needs eos_token_id and pad_token_id (or pass them explicitly)."
        )
    kwargs = dict(add_special_tokens=False)
    prompt_ids = tokenizer(list(prompts), **kwargs)["input_ids"]
    response_ids = tokenizer(list(responses), **kwargs)["input_ids"]
    n = len(prompts)
    ids = np.full((n, max_len), pad, np.int32)
    attention = np.zeros((n, max_len), bool)
    loss = np.zeros((n, max_len), bool)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        row = p + r + [eos]
        if len(row) > max_len:
            raise ValueError(
                f"encode_examples: example {i} needs {len(row)} tokens "
                f"(prompt {len(p)}, response {len(r)}, EOS 1) but max_len is "
                f"{max_len}; raise max_len."
            )
        ids[i, : len(row)] = row
        attention[i, : len(row)] = True
        loss[i, len(p) : len(row)] = True
    return SFTBatch(ids, attention, loss)


def token_nll(logits_btv: jnp.ndarray, input_ids: jnp.ndarray) -> jnp.ndarray:
    """nll[b, t] = -log softmax(logits[b, t-1])[input_ids[b, t]]; float32[B, L], 0 at t = 0."""
    logits = logits_btv[:, :-1].astype(jnp.float32)
    target = jnp.take_along_axis(logits, input_ids[:, 1:, None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(logits, axis=-1) - target
    return jnp.concatenate([jnp.zeros_like(nll[:, :1]), nll], axis=1)


def sft_loss(model, batch: SFTBatch) -> tuple[jnp.ndarray, dict]:
    """Token-mean response cross-entropy and (loss, accuracy) metrics of one batch."""
    logits = model(batch.input_ids, batch.attention_mask)
    nll = token_nll(logits, batch.input_ids)
    predicted = jnp.concatenate(
        [jnp.zeros_like(batch.input_ids[:, :1]), jnp.argmax(logits[:, :-1], axis=-1)], axis=1
    )
    loss = reductions.masked_mean(nll, batch.loss_mask)
    accuracy = reductions.masked_mean((predicted == batch.input_ids).astype(jnp.float32), batch.loss_mask)
    return loss, dict(loss=loss, token_accuracy=accuracy)


def make_optimizer(
    lr: float, total_steps: int, warmup_steps: int = 0, weight_decay: float = 0.0, grad_clip: float = 1.0
) -> optax.GradientTransformation:
    """AdamW after global-norm clipping (0: none); linear warm-up then cosine decay to lr / 10."""
    if not lr > 0 or total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"make_optimizer: need lr > 0, total_steps >= 1 and 0 <= warmup_steps < "
            f"total_steps; got lr={lr}, total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}."
        )
    schedule = optax.warmup_cosine_decay_schedule(
        0.0 if warmup_steps else lr, lr, max(warmup_steps, 1), total_steps, end_value=lr / 10
    )
    return optax.chain(global_norm_clip(grad_clip), optax.adamw(schedule, weight_decay=weight_decay))


def init_sft_state(model: nnx.Module, optimizer: optax.GradientTransformation):
    """(graphdef, SFTState) of a model; merge back with `nnx.merge(graphdef, state.params)`."""
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, SFTState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_sft_step(graphdef, optimizer: optax.GradientTransformation):
    """The jitted `step(state, batch) -> (state, metrics)`; `state` is donated."""

    def loss_fn(params, batch):
        return sft_loss(nnx.merge(graphdef, params), batch)

    def step(state: SFTState, batch: SFTBatch):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return SFTState(params, opt_state, state.step + 1), metrics

    return jax.jit(step, donate_argnums=0)
