"""Batched autoregressive sampling with a KV cache: one jitted prefill + lax.while_loop decode.

    out = sample(model, prompt_ids, prompt_mask, max_new_tokens=128, rng=key,
                 temperature=1.0, top_k=0, top_p=1.0, eos_token_id=tokenizer.eos_token_id)
    out.tokens, out.mask, out.logprobs      # each [B, max_new_tokens]

Prompts are left-padded [B, P] (any padding works: positions come from the mask and the
first new token is predicted from each row's last real prompt token). The compiled function
is cached by (model structure, shapes, static options), so repeated calls with the same
shapes do not retrace; temperature and top_p are traced values and can change freely.

Cache layout: per layer keys [B, K, H, S] and values [B, K, S, H], S = P + max_new_tokens - 1
slots rounded up to a multiple of 8 (the last sampled token is never fed back). Slot P + i
holds the token sampled at step i. Each decode step writes one slot with dynamic_update_slice,
which XLA performs in place on the while-loop carry, and attention reads the cache in place
(no transpose, no copy; see `purejax.models.decoder.attend`). The prefill computes the LM
head only at each row's last prompt token, and its final layer runs attention output and MLP
only there.

Sampling draws by inverse CDF with two uniforms per row (`token_choice.draw`), and top-p finds its cut by
bisection (`token_choice.nucleus`): neither makes B x V random numbers nor sorts the vocabulary, which on
a CPU cost more than the model itself (73 ms and 1.6 s per step at 256 x 32k).
"""

from __future__ import annotations

import collections
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax import seed_map as seed_map_lib
from purejax import sharding
from purejax import token_choice
from purejax.models.decoder import Decoder, LayerCache, positions_from_mask

# How many times the jitted sampler body has been traced, by name (tests check that a second
# call with the same shapes does not retrace).
TRACE_COUNTS: collections.Counter = collections.Counter()


class SampleOutput(NamedTuple):
    tokens: jax.Array  # int32 [B, N]; pad_token_id after a row's EOS
    mask: jax.Array  # bool [B, N]; True on response tokens up to and including the EOS
    logprobs: jax.Array  # float32 [B, N]; log-prob of each token under the distribution it was
    # sampled from (after temperature / top-k / top-p); 0 where mask is False


def sample(
    model: Decoder,
    prompt_ids,
    prompt_mask,
    max_new_tokens: int,
    rng,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    partitioner=None,
) -> SampleOutput:
    """Samples max_new_tokens continuations of a batch of prompts.

    Args:
      model: a causal-LM Decoder.
      prompt_ids: int [B, P] prompt tokens (left-padded).
      prompt_mask: bool/int [B, P], 1 on real prompt tokens; every row needs at least one.
      max_new_tokens: N >= 1, the response width.
      rng: a jax PRNG key; step i samples with fold_in(rng, i).
      temperature: 0 is greedy (argmax); > 0 divides the logits.
      top_k: 0 = off; else keep the k most likely tokens.
      top_p: 1 = off; else keep the smallest set of most likely tokens whose probability
        (after temperature and top-k) reaches top_p.
      eos_token_id: None, one id or a list of ids; a row stops after emitting one.
      pad_token_id: written after a row's EOS.
      partitioner: a `purejax.sharding.Partitioner` (None: one device). Parameters are placed
        by their logical axes, prompts, KV cache and outputs split by rows over data x fsdp
        and the cache's KV heads over tensor; the jitted sampler is traced under the mesh.
    Returns:
      SampleOutput(tokens, mask, logprobs), each [B, N]. Greedy logprobs are log_softmax of the
      raw logits at the argmax.
    """
    eos = _check_inputs(
        model,
        prompt_ids,
        prompt_mask,
        max_new_tokens,
        rng,
        temperature,
        top_k,
        top_p,
        eos_token_id,
        pad_token_id,
    )
    graphdef, state = nnx.split(model)
    if partitioner is None:
        prompt_ids, prompt_mask = jnp.asarray(prompt_ids, jnp.int32), jnp.asarray(prompt_mask).astype(bool)
    else:
        # Committed global inputs fix the jitted sampler's input shardings, on one host or a pod
        # (parameters already placed by their logical axes are used as they are).
        state = partitioner.place(state)
        rows = partitioner.batch(np.shape(prompt_ids)[0])
        host = (np.asarray(prompt_ids, np.int32), np.asarray(prompt_mask).astype(bool))
        prompt_ids, prompt_mask = partitioner.put(host, (rows, rows))
        rng = partitioner.put(rng, partitioner.replicated())
    traced, static = _options(max_new_tokens, temperature, top_k, top_p, eos, pad_token_id)
    return _sample_jit(
        graphdef, state, prompt_ids, prompt_mask, rng, *traced, **static, partitioner=partitioner
    )


def sample_seeds(
    graphdef,
    params,
    prompt_ids,
    prompt_mask,
    max_new_tokens: int,
    rngs,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int = 0,
    partitioner=None,
    seed_map: str = "auto",
) -> SampleOutput:
    """`sample` for S policies at once, over a leading seed axis, in one compiled call.

    This is how a seed sweep runs its seeds (as purejaxrl does): one call per step for
    all of them, mapped over the seed axis as `seed_map` says (`purejax.seed_map`: 'loop'
    decodes seed after seed, each exactly as `sample` would; 'vmap' one batched decode).

    Args:
      graphdef: the policy's nnx GraphDef.
      params: its nnx.State with a leading axis S on every leaf.
      prompt_ids, prompt_mask: [S, B, P] (each seed its own prompts) or [B, P] (shared).
      rngs: S PRNG keys, [S, 2] or [S]; seed s samples with rngs[s].
      partitioner: as in `sample`; every seed's slice is sharded as one policy would be
        (parameters by logical axes, rows over data x fsdp), the seed axis replicated.
      seed_map: 'auto', 'loop' or 'vmap' (config.seed_map).
      Other arguments as in `sample`.
    Returns:
      SampleOutput with [S, B, N] fields; seed s equals `sample(nnx.merge(graphdef, params[s]),
      ..., rng=rngs[s])`, bit for bit with 'loop', up to float rounding of the batched
      matmuls with 'vmap'.
    """
    first = seed_map_lib.one_seed_shapes(params)  # not x[0]: a slice per leaf hung a 2-process run
    ids, mask = np.asarray(prompt_ids), np.asarray(prompt_mask)
    shared = ids.ndim == 2
    eos = _check_inputs(
        nnx.merge(graphdef, first),
        ids if shared else ids.reshape(-1, ids.shape[-1]),
        mask if shared else mask.reshape(-1, mask.shape[-1]),
        max_new_tokens,
        rngs[0],
        temperature,
        top_k,
        top_p,
        eos_token_id,
        pad_token_id,
    )
    seeds = (
        {x.shape[0] for x in jax.tree.leaves(params)} | {len(rngs)} | ({len(ids)} if not shared else set())
    )
    if len(seeds) != 1:
        raise ValueError(
            f"sample_seeds: params, rngs and per-seed prompts need one leading seed axis, got sizes {seeds}."
        )
    traced, static = _options(max_new_tokens, temperature, top_k, top_p, eos, pad_token_id)
    ids, mask = ids.astype(np.int32), mask.astype(bool)
    if partitioner is None:
        ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    else:
        # Committed global inputs fix the jitted sampler's input shardings (multi-host included).
        rows = partitioner.batch(ids.shape[-2])
        params = partitioner.put(params, partitioner.seed_stacked(partitioner.tree(first)))
        prompts = (rows, rows) if shared else partitioner.seed_stacked((rows, rows))
        ids, mask = partitioner.put((ids, mask), prompts)
        rngs = partitioner.put(rngs, partitioner.replicated())
    return _sample_seeds_jit(
        graphdef, params, ids, mask, rngs, *traced, **static, partitioner=partitioner,
        seed_map=seed_map_lib.resolve(seed_map),
    )  # fmt: skip


def _options(max_new_tokens, temperature, top_k, top_p, eos, pad_token_id):
    """(traced temperature and top_p, static options) of the jitted sampler: one compile per
    (shapes, static options); temperature and top_p change freely."""
    greedy = float(temperature) == 0.0
    traced = (jnp.float32(1.0 if greedy else temperature), jnp.float32(top_p))
    static = dict(
        max_new_tokens=int(max_new_tokens),
        greedy=greedy,
        top_k=int(top_k),
        use_top_p=float(top_p) < 1.0,
        eos=eos,
        pad_token_id=int(pad_token_id),
    )
    return traced, static


def stop_token_ids(tokenizer) -> list[int]:
    """The tokenizer's EOS plus the chat end-of-turn tokens Qwen models emit (<|im_end|>, <|endoftext|>)."""
    ids = set() if tokenizer.eos_token_id is None else {int(tokenizer.eos_token_id)}
    vocab = tokenizer.get_vocab()
    ids |= {int(vocab[t]) for t in ("<|im_end|>", "<|endoftext|>") if t in vocab}
    if not ids:
        raise ValueError("stop_token_ids: the tokenizer has no eos_token; set one so responses can end.")
    return sorted(ids)


def _check_inputs(
    model, prompt_ids, prompt_mask, max_new_tokens, rng, temperature, top_k, top_p, eos_token_id, pad_token_id
) -> tuple[int, ...]:
    """Validates sample()'s arguments; returns the EOS ids as a sorted tuple."""
    if not isinstance(model, Decoder) or model.config.head != "lm":
        raise ValueError("sample: model must be a causal-LM purejax Decoder (config.head == 'lm').")
    vocab = model.config.vocab_size
    ids, mask = np.asarray(prompt_ids), np.asarray(prompt_mask)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"sample: prompt_ids must be an integer array of rank 2 [batch, prompt_len], "
            f"got dtype {ids.dtype} shape {ids.shape}."
        )
    if mask.shape != ids.shape:
        raise ValueError(
            f"sample: prompt_mask must have the shape of prompt_ids {ids.shape}, got {mask.shape}."
        )
    if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f"sample: prompt_mask must be bool or integer (1 = real token), got {mask.dtype}.")
    if not mask.astype(bool).any(axis=1).all():
        raise ValueError(
            "sample: every row of prompt_mask needs at least one real token (row "
            f"{int(np.argmin(mask.astype(bool).any(axis=1)))} is all padding)."
        )
    real = ids[mask.astype(bool)]
    if real.size and (real.min() < 0 or real.max() >= vocab):
        raise ValueError(
            f"sample: prompt_ids must lie in [0, vocab_size={vocab}), got values in "
            f"[{real.min()}, {real.max()}]."
        )
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"sample: max_new_tokens must be an int >= 1, got {max_new_tokens!r}.")
    key_shape = rng.shape if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng.shape[:-1]
    if key_shape != ():
        raise ValueError(
            f"sample: rng must be a single PRNG key (jax.random.key(seed) or "
            f"jax.random.PRNGKey(seed)), got shape {rng.shape}."
        )
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"sample: temperature must be >= 0 (0 = greedy), got {temperature}.")
    if not isinstance(top_k, (int, np.integer)) or not 0 <= top_k:
        raise ValueError(f"sample: top_k must be an int >= 0 (0 = off), got {top_k!r}.")
    if top_k > vocab:
        raise ValueError(f"sample: top_k must be <= vocab_size ({vocab}), got {top_k}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"sample: top_p must satisfy 0 < top_p <= 1 (1 = off), got {top_p}.")
    if eos_token_id is None:
        eos = ()
    else:
        eos = tuple(sorted({int(e) for e in np.atleast_1d(np.asarray(eos_token_id))}))
        if any(not 0 <= e < vocab for e in eos):
            raise ValueError(f"sample: eos_token_id must be ids in [0, {vocab}), got {eos_token_id!r}.")
    if not 0 <= pad_token_id < vocab:
        raise ValueError(f"sample: pad_token_id must be in [0, {vocab}), got {pad_token_id}.")
    return eos


# The compile-time arguments of the jitted samplers: one compile per distinct combination.
_STATIC_ARGNAMES = (
    "graphdef",
    "max_new_tokens",
    "greedy",
    "top_k",
    "use_top_p",
    "eos",
    "pad_token_id",
    "partitioner",
)


class _Carry(NamedTuple):
    step: jax.Array  # int32 scalar: index of the latest chosen token
    cache: tuple  # per-layer LayerCache
    done_b: jax.Array  # bool: row has emitted an EOS
    tokens_bn: jax.Array
    mask_bn: jax.Array
    logp_bn: jax.Array


@jax.jit(static_argnames=_STATIC_ARGNAMES)
def _sample_jit(
    graphdef, state, prompt_ids_bp, prompt_mask_bp, rng, temperature, top_p, *, partitioner=None, **static
):
    if partitioner is None:
        return _sample_body(graphdef, state, prompt_ids_bp, prompt_mask_bp, rng, temperature, top_p, **static)
    with partitioner.active():
        out = _sample_body(graphdef, state, prompt_ids_bp, prompt_mask_bp, rng, temperature, top_p, **static)
        return jax.lax.with_sharding_constraint(out, partitioner.batch())


def _sample_body(graphdef, state, prompt_ids_bp, prompt_mask_bp, rng, temperature, top_p, **static):
    TRACE_COUNTS["sample"] += 1
    model = nnx.merge(graphdef, state)
    n, eos = static["max_new_tokens"], static["eos"]
    carry, kv_mask_bs, n_prompt_b = _prefill(
        model, prompt_ids_bp, prompt_mask_bp, rng, temperature, top_p, **static
    )
    p = prompt_ids_bp.shape[1]

    def body(c: _Carry) -> _Carry:
        return _decode_step(model, c, kv_mask_bs, n_prompt_b, p, rng, temperature, top_p, **static)

    def cond(c: _Carry):
        # The last token (step N-1) is never fed back.
        running = c.step < n - 1
        return running & ~jnp.all(c.done_b) if eos else running

    carry = jax.lax.while_loop(cond, body, carry)
    return SampleOutput(carry.tokens_bn, carry.mask_bn, carry.logp_bn)


def cache_slots(prompt_len: int, max_new_tokens: int) -> int:
    """KV cache slots for the prompt and every fed-back token, rounded up to a multiple of 8:
    the decode step's attention reads the whole cache along the slot axis, and XLA:CPU
    vectorises it better at an aligned length (255 -> 256 slots: 4.4 -> 4.0 ms per layer at
    batch 256)."""
    return -(-(prompt_len + max_new_tokens - 1) // 8) * 8


def _prefill(
    model, prompt_ids_bp, prompt_mask_bp, rng, temperature, top_p, *, max_new_tokens, pad_token_id, **choice
):
    """The prompt's forward into a fresh KV cache and the choice of token 0.

    Returns (carry at step 0, kv_mask_bs [B, S] of the slots that will hold real tokens,
    n_prompt_b [B] real prompt tokens per row). `choice`: greedy, top_k, use_top_p, eos.
    """
    b, p = prompt_ids_bp.shape
    n = max_new_tokens
    slots = cache_slots(p, n)
    fed_back = jnp.arange(slots - p) < n - 1  # the rounding's extra slots are never written
    kv_mask_bs = jnp.concatenate([prompt_mask_bp, jnp.broadcast_to(fed_back, (b, slots - p))], axis=1)
    cache = _constrain_cache(model.init_cache(b, slots))
    logits_bv, cache = _prompt_forward(model, prompt_ids_bp, prompt_mask_bp, cache)
    n_prompt_b = prompt_mask_bp.sum(axis=1).astype(jnp.int32)
    carry = _Carry(
        step=jnp.int32(0),
        cache=cache,
        done_b=jnp.zeros((b,), bool),
        tokens_bn=jnp.full((b, n), pad_token_id, jnp.int32),
        mask_bn=jnp.zeros((b, n), bool),
        logp_bn=jnp.zeros((b, n), jnp.float32),
    )
    carry = _record(carry, logits_bv, rng, temperature, top_p, pad_token_id=pad_token_id, **choice)
    return carry, kv_mask_bs, n_prompt_b


def _prompt_forward(model, prompt_ids_bp, prompt_mask_bp, cache):
    """The prompts' forward into the fresh cache `cache` (S >= P slots; the prompt goes to
    slots 0..P-1). Returns (logits at each row's last real prompt token [B, V], the cache).

    Logits only there: a [B, P, V] logits array would cost P times the decode step's largest
    matmul. (The mask of the slots after the prompt does not matter: a prefill attends over
    its own P keys only.)
    """
    p = prompt_ids_bp.shape[1]
    slots = cache[0].k.shape[-1]
    kv_mask_bs = jnp.pad(prompt_mask_bp, ((0, 0), (0, slots - p)))
    pos_bp = positions_from_mask(prompt_mask_bp)
    last_b = p - 1 - jnp.argmax(prompt_mask_bp[:, ::-1], axis=1)
    h_b1d, cache = model.forward_cached(prompt_ids_bp, pos_bp, cache, 0, kv_mask_bs, last_b=last_b)
    return model.head(h_b1d)[:, 0], cache


def _decode_step(
    model, c: _Carry, kv_mask_bs, n_prompt_b, p, rng, temperature, top_p, *, max_new_tokens, **choice
) -> _Carry:
    """One iteration of the decode loop: feeds token c.step back through the cache and chooses
    token c.step + 1 in the same iteration, so no [B, V] logits array is carried (and copied)
    between iterations. `p` is the prompt width (token i sits at cache slot p + i)."""
    token_b = jax.lax.dynamic_slice_in_dim(c.tokens_bn, c.step, 1, axis=1)
    pos_b1 = (n_prompt_b + c.step)[:, None]
    h_b1d, cache = model.forward_cached(token_b, pos_b1, c.cache, p + c.step, kv_mask_bs)
    c = c._replace(step=c.step + 1, cache=_constrain_cache(cache))
    return _record(c, model.head(h_b1d)[:, 0], rng, temperature, top_p, **choice)


def _record(c: _Carry, logits_bv, rng, temperature, top_p, *, greedy, top_k, use_top_p, eos, pad_token_id):
    """Chooses token c.step from its logits (pad after a row's EOS)."""
    token_b, logp_b = token_choice.choose(
        logits_bv,
        jax.random.fold_in(rng, c.step),
        temperature,
        top_p,
        greedy=greedy,
        top_k=top_k,
        use_top_p=use_top_p,
    )
    valid_b = ~c.done_b
    token_b = jnp.where(valid_b, token_b, pad_token_id)
    logp_b = jnp.where(valid_b, logp_b, 0.0)
    done_b = c.done_b | (jnp.isin(token_b, jnp.asarray(eos, jnp.int32)) if eos else False)
    col = (0, c.step)
    return c._replace(
        done_b=done_b,
        tokens_bn=jax.lax.dynamic_update_slice(c.tokens_bn, token_b[:, None], col),
        mask_bn=jax.lax.dynamic_update_slice(c.mask_bn, valid_b[:, None], col),
        logp_bn=jax.lax.dynamic_update_slice(c.logp_bn, logp_b[:, None], col),
    )


def _constrain_cache(cache):
    """Rows over data x fsdp, KV heads over tensor (a no-op without an active partitioner)."""
    return tuple(
        LayerCache(
            sharding.constrain(layer.k, sharding.CACHE_K_AXES),
            sharding.constrain(layer.v, sharding.CACHE_V_AXES),
        )
        for layer in cache
    )


@jax.jit(static_argnames=_STATIC_ARGNAMES + ("seed_map",))
def _sample_seeds_jit(
    graphdef, params, prompt_ids, prompt_mask, rngs, temperature, top_p, *, seed_map, partitioner=None, **static
):  # fmt: skip
    prompts_axis = None if prompt_ids.ndim == 2 else 0

    def one_seed(p, ids, mask, rng):
        return _sample_body(graphdef, p, ids, mask, rng, temperature, top_p, **static)

    sample_all = seed_map_lib.over_seeds(one_seed, seed_map, in_axes=(0, prompts_axis, prompts_axis, 0))
    if partitioner is None:
        return sample_all(params, prompt_ids, prompt_mask, rngs)
    with partitioner.active():
        out = sample_all(params, prompt_ids, prompt_mask, rngs)
        return jax.lax.with_sharding_constraint(out, partitioner.seed_stacked(partitioner.batch()))
