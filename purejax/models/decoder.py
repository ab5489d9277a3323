"""A Flax NNX decoder for the Qwen2 and Llama families, with a causal-LM or token-classifier head.

Shapes use einsum letters: b batch, t query positions, s key positions (a KV cache's slots),
d model width, n query heads, k KV heads, g query heads per KV head (n = k g), h head width,
f MLP width, v vocabulary, c classifier labels.

Every parameter carries logical axis names in its `out_sharding` metadata (read them with
`nnx.get_partition_spec`); a sharding config maps them to mesh axes. Parameters are created
without eager sharding, so a model builds the same on one device and under a mesh.

Semantics follow HF transformers: RMSNorm and softmax in float32, RoPE angles in float32,
positions from the attention mask (cumsum(mask) - 1, clipped at 0) so left padding does not
shift positions, padded keys never attended to.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from purejax import sharding
from purejax.models.config import DecoderConfig

_INIT_STD = 0.02  # HF initializer_range default for both families.


def _param(rngs: nnx.Rngs | None, shape, dtype, axes, init: str = "normal") -> nnx.Param:
    if init == "normal":
        value = _INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    return nnx.Param(value.astype(dtype), out_sharding=axes, eager_sharding=False)


def positions_from_mask(mask_bt: jax.Array) -> jax.Array:
    """HF positions for a padded batch: pos = cumsum(mask) - 1, clipped at 0. int32 [B, T]."""
    return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


def rope_inv_freq(config: DecoderConfig) -> jax.Array:
    """Per-pair inverse frequencies theta^(-2i/h), i < h/2, with optional HF rope scaling. [h/2]."""
    h = config.resolved_head_dim
    inv_freq = 1.0 / (config.rope_theta ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h))
    if config.rope_scaling is None:
        return inv_freq
    kind, factor, *rest = config.rope_scaling
    if kind == "linear":
        return inv_freq / factor
    low_freq_factor, high_freq_factor, old_context = rest  # llama3
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = old_context / low_freq_factor
    high_freq_wavelen = old_context / high_freq_factor
    scaled = jnp.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return jnp.where(is_medium, smoothed, scaled)


def apply_rope(x_btnh: jax.Array, pos_bt: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotates pairs (x_i, x_{i+h/2}) by angle pos * inv_freq_i (HF "rotate_half" convention)."""
    angle_bti = pos_bt[..., None].astype(jnp.float32) * inv_freq
    angle_bth = jnp.concatenate([angle_bti, angle_bti], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angle_bth).astype(x_btnh.dtype), jnp.sin(angle_bth).astype(x_btnh.dtype)
    x1, x2 = jnp.split(x_btnh, 2, axis=-1)
    return x_btnh * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


class RMSNorm(nnx.Module):
    """y = w * x / sqrt(mean(x^2) + eps), normalised in float32 and cast back (HF order)."""

    def __init__(self, dim: int, eps: float, dtype, rngs: nnx.Rngs | None = None):
        self.eps = eps
        self.weight = _param(rngs, (dim,), dtype, ("norm",), init="ones")

    def __call__(self, x_btd: jax.Array) -> jax.Array:
        x32 = x_btd.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...] * x32.astype(x_btd.dtype)


def attend(q_btnh: jax.Array, k_bkhs: jax.Array, v_bksh: jax.Array, mask_bts: jax.Array) -> jax.Array:
    """Grouped-query softmax attention; query head n uses KV head n // g. Returns [B, T, N, H].

    Keys are laid out [B, K, H, S] and values [B, K, S, H] (the KV cache's layout), so both
    products read them in place with the slot axis s where it is needed: minor for q.k
    (vectorised along s), second-minor for p.v (vectorised along h). For a single query
    (decoding) the products are written as multiply-and-reduce, which XLA fuses into one pass
    over the cache (on CPU, q.k as unrolled multiply-adds: `_decode_scores_cpu`); a
    [g, h] x [h, s] batched matmul per (b, k) is slower for such tiny g.
    """
    b, t, n, h = q_btnh.shape
    k = k_bkhs.shape[1]
    g = n // k
    q_bkrh = q_btnh.reshape(b, t, k, g, h).transpose(0, 2, 1, 3, 4).reshape(b, k, t * g, h)
    q_bkrh = q_bkrh * jnp.asarray(h**-0.5, q_bkrh.dtype)
    if t == 1:
        scores = decode_scores(q_bkrh, k_bkhs)
    else:
        scores = jnp.einsum("bkrh,bkhs->bkrs", q_bkrh, k_bkhs)
    scores = scores.reshape(b, k, t, g, -1).astype(jnp.float32)
    # finfo.min instead of -inf: a padded query row with no visible key stays finite.
    scores = jnp.where(mask_bts[:, None, :, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_bksh.dtype).reshape(b, k, t * g, -1)
    if t == 1:
        out = jnp.sum(probs[..., None] * v_bksh[:, :, None], axis=-2)
    else:
        out = jnp.einsum("bkrs,bksh->bkrh", probs, v_bksh)
    return out.reshape(b, k, t, g, h).transpose(0, 2, 1, 3, 4).reshape(b, t, n, h)


def decode_scores(q_bkrh, k_bkhs):
    """Scores [B, K, R, S] of R single-position queries per KV head against S keys, in the form
    fastest on the platform (`_decode_scores_cpu` on CPU)."""
    return jax.lax.platform_dependent(q_bkrh, k_bkhs, cpu=_decode_scores_cpu, default=_decode_scores)


def _decode_scores(q_bkrh, k_bkhs):
    """One query's scores [B, K, R, S]: a multiply-and-reduce over h, fused into one pass."""
    return jnp.sum(q_bkrh[..., None] * k_bkhs[:, :, None], axis=-2)


def _decode_scores_cpu(q_bkrh, k_bkhs):
    """`_decode_scores` as h multiply-adds of [B, K, R, S] slabs. XLA:CPU emits the reduce form
    as a single-threaded reduction over the cache's strided h axis (2.3 ms per layer at batch
    256, 255 slots); the unrolled sum is one elementwise fusion, vectorised along s and split
    over threads (1.6 ms), reading the cache once as well."""
    return sum(q_bkrh[:, :, :, i, None] * k_bkhs[:, :, None, i, :] for i in range(q_bkrh.shape[-1]))


# Full forwards longer than this attend in blocks of this many queries (`attend_in_blocks`).
QUERY_BLOCK = 1024


def attend_in_blocks(q_btnh, k_bkhs, v_bksh, mask_bts, block: int | None = None) -> jax.Array:
    """`attend`, `block` queries at a time inside a rematerialised loop: the same values, with
    [B, heads, block, S] scores alive instead of [B, heads, T, S], in the forward pass and the
    backward (at T = 8192 with 28 heads the full scores are 7.5 GB f32 per row). Used when
    T > 2 x block and block divides T; otherwise the single `attend`. block: QUERY_BLOCK if None."""
    block = block or QUERY_BLOCK
    b, t, n, h = q_btnh.shape
    if t <= 2 * block or t % block:
        return attend(q_btnh, k_bkhs, v_bksh, mask_bts)
    blocks = t // block
    q_cbtnh = q_btnh.reshape(b, blocks, block, n, h).swapaxes(0, 1)
    mask_cbts = mask_bts.reshape(b, blocks, block, -1).swapaxes(0, 1)

    @jax.checkpoint
    def one_block(xs):
        return attend(xs[0], k_bkhs, v_bksh, xs[1])

    out_cbtnh = jax.lax.map(one_block, (q_cbtnh, mask_cbts))
    return out_cbtnh.swapaxes(0, 1).reshape(b, t, n, h)


class LayerCache(NamedTuple):
    """One layer's keys [B, K, H, S] and values [B, K, S, H] for S slots."""

    k: jax.Array
    v: jax.Array


class Attention(nnx.Module):
    def __init__(self, config: DecoderConfig, dtype, rngs: nnx.Rngs | None = None):
        d, n, k, h = (config.hidden_size, config.num_heads, config.num_kv_heads, config.resolved_head_dim)
        self.q_dnh = _param(rngs, (d, n, h), dtype, ("embed", "q_heads", "head_dim"))
        self.k_dkh = _param(rngs, (d, k, h), dtype, ("embed", "kv_heads", "head_dim"))
        self.v_dkh = _param(rngs, (d, k, h), dtype, ("embed", "kv_heads", "head_dim"))
        self.o_nhd = _param(rngs, (n, h, d), dtype, ("q_heads", "head_dim", "embed"))
        if config.qkv_bias:
            self.q_bias_nh = _param(rngs, (n, h), dtype, ("q_heads", "head_dim"), init="zeros")
            self.k_bias_kh = _param(rngs, (k, h), dtype, ("kv_heads", "head_dim"), init="zeros")
            self.v_bias_kh = _param(rngs, (k, h), dtype, ("kv_heads", "head_dim"), init="zeros")
        if config.o_bias:
            self.o_bias_d = _param(rngs, (d,), dtype, ("embed",), init="zeros")
        self.qkv_bias, self.o_bias = config.qkv_bias, config.o_bias

    def __call__(
        self, x_btd, pos_bt, inv_freq, mask_bts, cache: LayerCache | None = None, slot=None, query_b=None
    ):
        """Self-attention. Without a cache, keys are the T inputs and mask_bts is [B, T, T].

        With a cache of S slots, the T new keys/values are written at slots slot..slot+T-1 and the
        queries attend over all S slots of the cache (mask_bts [B, T, S] hides unwritten and
        padded slots). Reading only the written slots through a static slice of the cache looks
        cheaper but XLA:CPU then materialises the slice, a copy of the cache per step.
        query_b (int [B], optional): compute the output for that one position per row only
        (keys and values still come from all T inputs); y then has T = 1.
        Returns (y_btd, updated cache or None).
        """
        k, v = self.keys_values(x_btd, pos_bt, inv_freq)
        t = x_btd.shape[1]
        if query_b is not None:
            x_btd, pos_bt, mask_bts = (_take_rows(a, query_b) for a in (x_btd, pos_bt, mask_bts))
        q = self.queries(x_btd, pos_bt, inv_freq)
        k_bkht, v_bkth = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)
        if cache is not None:
            # One dynamic_update_slice per step: XLA updates the loop-carried cache in place.
            cache = LayerCache(
                jax.lax.dynamic_update_slice(cache.k, k_bkht.astype(cache.k.dtype), (0, 0, 0, slot)),
                jax.lax.dynamic_update_slice(cache.v, v_bkth.astype(cache.v.dtype), (0, 0, slot, 0)),
            )
            if isinstance(slot, int) and slot == 0:
                # Prefill: slots >= T are not written yet, so the T fresh keys are all there is to see.
                mask_bts = mask_bts[:, :, :t]
            else:
                k_bkht, v_bkth = cache.k, cache.v
        # Without a cache (training, scoring) T can be thousands of tokens: attend in blocks.
        out_btnh = (
            attend(q, k_bkht, v_bkth, mask_bts)
            if cache is not None
            else attend_in_blocks(q, k_bkht, v_bkth, mask_bts)
        )
        return self.project_out(out_btnh), cache

    # The pieces of __call__, for callers that keep keys and values their own way (the paged
    # KV pool of `purejax.engine`).

    def keys_values(self, x_btd, pos_bt, inv_freq):
        """Keys (RoPE applied) and values of the inputs: ([B, T, K, H], [B, T, K, H])."""
        k = jnp.einsum("btd,dkh->btkh", x_btd, self.k_dkh[...])
        v = jnp.einsum("btd,dkh->btkh", x_btd, self.v_dkh[...])
        if self.qkv_bias:
            k, v = k + self.k_bias_kh[...], v + self.v_bias_kh[...]
        return apply_rope(k, pos_bt, inv_freq), v

    def queries(self, x_btd, pos_bt, inv_freq):
        """Queries with RoPE applied, [B, T, N, H]."""
        q = jnp.einsum("btd,dnh->btnh", x_btd, self.q_dnh[...])
        if self.qkv_bias:
            q = q + self.q_bias_nh[...]
        return apply_rope(q, pos_bt, inv_freq)

    def project_out(self, out_btnh):
        """Attention output [B, T, N, H] -> the residual update [B, T, D]."""
        y = jnp.einsum("btnh,nhd->btd", out_btnh, self.o_nhd[...])
        if self.o_bias:
            y = y + self.o_bias_d[...]
        return y


def _take_rows(a_bt, index_b):
    """a[b, index[b]] keeping a length-1 axis 1: [B, T, ...] -> [B, 1, ...]."""
    index = index_b.reshape((-1,) + (1,) * (a_bt.ndim - 1))
    return jnp.take_along_axis(a_bt, index, axis=1)


class MLP(nnx.Module):
    """SwiGLU: down(silu(x W_gate) * (x W_up))."""

    def __init__(self, config: DecoderConfig, dtype, rngs: nnx.Rngs | None = None):
        d, f = config.hidden_size, config.intermediate_size
        self.gate_df = _param(rngs, (d, f), dtype, ("embed", "mlp"))
        self.up_df = _param(rngs, (d, f), dtype, ("embed", "mlp"))
        self.down_fd = _param(rngs, (f, d), dtype, ("mlp", "embed"))
        self.mlp_bias = config.mlp_bias
        if config.mlp_bias:
            self.gate_bias_f = _param(rngs, (f,), dtype, ("mlp",), init="zeros")
            self.up_bias_f = _param(rngs, (f,), dtype, ("mlp",), init="zeros")
            self.down_bias_d = _param(rngs, (d,), dtype, ("embed",), init="zeros")

    def __call__(self, x_btd):
        gate = x_btd @ self.gate_df[...]
        up = x_btd @ self.up_df[...]
        if self.mlp_bias:
            gate, up = gate + self.gate_bias_f[...], up + self.up_bias_f[...]
        y = (jax.nn.silu(gate) * up) @ self.down_fd[...]
        if self.mlp_bias:
            y = y + self.down_bias_d[...]
        return y


class Block(nnx.Module):
    def __init__(self, config: DecoderConfig, dtype, rngs: nnx.Rngs | None = None):
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype, rngs)
        self.attn = Attention(config, dtype, rngs)
        self.post_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype, rngs)
        self.mlp = MLP(config, dtype, rngs)

    def __call__(self, x_btd, pos_bt, inv_freq, mask_bts, cache=None, slot=None, query_b=None):
        y, cache = self.attn(self.input_norm(x_btd), pos_bt, inv_freq, mask_bts, cache, slot, query_b)
        if query_b is not None:
            x_btd = _take_rows(x_btd, query_b)
        return self.after_attention(x_btd, y), cache

    def after_attention(self, x_btd, y_btd):
        """The block's residual stream after attention's update y: + y, then + MLP."""
        x_btd = x_btd + y_btd
        return x_btd + self.mlp(self.post_attn_norm(x_btd))


class Decoder(nnx.Module):
    """Qwen2/Llama decoder with a causal-LM head (logits [B, T, V]) or a token classifier
    (logits [B, T, num_labels], HF `...ForTokenClassification`: Linear with bias on the
    final hidden states).

    `model(input_ids, attention_mask)` returns float32 logits with HF semantics; `attention_mask`
    may be omitted (all ones). Build one with `init_model` or `load_pretrained`.
    """

    def __init__(self, config: DecoderConfig, dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.config = config
        self.dtype = jnp.dtype(dtype)
        v, d = config.vocab_size, config.hidden_size
        self.embed_vd = _param(rngs, (v, d), dtype, ("vocab", "embed"))
        self.layers = nnx.List([Block(config, dtype, rngs) for _ in range(config.num_layers)])
        self.final_norm = RMSNorm(d, config.rms_norm_eps, dtype, rngs)
        if config.head == "lm" and not config.tie_word_embeddings:
            self.lm_head_vd = _param(rngs, (v, d), dtype, ("vocab", "embed"))
        if config.head == "classifier":
            self.score_dc = _param(rngs, (d, config.num_labels), dtype, ("embed", "labels"))
            self.score_bias_c = _param(rngs, (config.num_labels,), dtype, ("labels",), init="zeros")

    # ------------------------------------------------------------------ full forward

    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array | None = None, scan: bool = False
    ) -> jax.Array:
        """input_ids int [B, T], attention_mask [B, T] (1 = real token) -> float32 logits [B, T, *].

        scan: run the layers as one lax.scan (same values; bounded memory for long inputs).
        """
        return self.head(self.hidden_states(input_ids, attention_mask, scan=scan))

    def hidden_states(
        self, input_ids, attention_mask=None, remat: bool = False, scan: bool = False
    ) -> jax.Array:
        """Final-norm hidden states [B, T, D] in the model dtype.

        scan: run the layers as one lax.scan over their stacked weights, so one layer's
          activations are alive at a time (`_scan_layers`); the values are the same.
        remat: scan, and recompute each layer's activations in the backward pass instead of
          keeping them, so a training step stores one [B, T, D] residual per layer.
        """
        if attention_mask is None:
            attention_mask = jnp.ones(input_ids.shape, jnp.int32)
        mask_bt = attention_mask.astype(bool)
        pos_bt = positions_from_mask(mask_bt)
        t = input_ids.shape[1]
        causal_ts = jnp.tril(jnp.ones((t, t), bool))
        mask_bts = causal_ts[None] & mask_bt[:, None, :]
        x = sharding.constrain(self.embed_vd[...][input_ids], sharding.RESIDUAL_AXES)
        inv_freq = rope_inv_freq(self.config)
        if remat or scan:
            x = _scan_layers(self.layers, x, pos_bt, inv_freq, mask_bts, remat)
        else:
            for layer in self.layers:
                x = _run_layer(layer, x, pos_bt, inv_freq, mask_bts)
                x = sharding.constrain(x, sharding.RESIDUAL_AXES)
        return self.final_norm(x)

    def head(self, h_btd: jax.Array) -> jax.Array:
        """Final hidden states [B, T, D] -> float32 logits [B, T, V] or [B, T, num_labels]."""
        if self.config.head == "classifier":
            return (h_btd @ self.score_dc[...] + self.score_bias_c[...]).astype(jnp.float32)
        w_vd = self.embed_vd[...] if self.config.tie_word_embeddings else self.lm_head_vd[...]
        logits_btv = jnp.einsum("btd,vd->btv", h_btd, w_vd).astype(jnp.float32)
        return sharding.constrain(logits_btv, sharding.LOGITS_AXES)

    # ------------------------------------------------------------------ KV-cached forward

    def init_cache(self, batch: int, slots: int, dtype=None) -> tuple[LayerCache, ...]:
        """Zeroed KV cache: per layer k [B, K, H, S] and v [B, K, S, H]."""
        c = self.config
        k_shape = (batch, c.num_kv_heads, c.resolved_head_dim, slots)
        v_shape = (batch, c.num_kv_heads, slots, c.resolved_head_dim)
        dtype = dtype or self.dtype
        return tuple(
            LayerCache(jnp.zeros(k_shape, dtype), jnp.zeros(v_shape, dtype)) for _ in range(c.num_layers)
        )

    def forward_cached(self, input_ids_bt, pos_bt, cache, slot, kv_mask_bs, last_b=None):
        """Runs T new tokens written at cache slots slot..slot+T-1.

        pos_bt: their RoPE positions; kv_mask_bs [B, S]: slots holding real tokens (the new ones
        included). Query t sees slot s iff kv_mask[b, s] and s <= slot + t. `slot` is an int or
        a traced scalar; a static 0 (prefill) attends over the T new keys only.
        last_b (int [B], optional): return hidden states at position last_b[b] only ([B, 1, D]);
        the final layer then skips attention output and MLP for the other positions (a prefill
        only needs its last token's output, and every position's keys and values).
        Returns (final hidden states [B, T, D], updated cache).
        """
        t, s = input_ids_bt.shape[1], kv_mask_bs.shape[1]
        q_slot_t = slot + jnp.arange(t)
        mask_bts = kv_mask_bs[:, None, :] & (jnp.arange(s)[None, :] <= q_slot_t[:, None])[None]
        x = sharding.constrain(self.embed_vd[...][input_ids_bt], sharding.RESIDUAL_AXES)
        inv_freq = rope_inv_freq(self.config)
        new_cache = []
        for i, (layer, layer_cache) in enumerate(zip(self.layers, cache)):
            query_b = last_b if i == len(self.layers) - 1 else None
            x, layer_cache = layer(x, pos_bt, inv_freq, mask_bts, layer_cache, slot, query_b)
            new_cache.append(layer_cache)
        return self.final_norm(x), tuple(new_cache)

    def forward_with_attention(self, input_ids_bt, pos_bt, attention, layer_states):
        """The forward of T new tokens with attention supplied by the caller, for KV caches
        laid out other than `LayerCache` (the paged pool of `purejax.engine`).

        attention(attn, h_btd, pos_bt, inv_freq, state) -> (y_btd, new state) is called once
        per layer with that layer's `Attention` module (use its keys_values / queries /
        project_out), the normed inputs and that layer's entry of `layer_states`.
        Returns (final hidden states [B, T, D], the new layer states as a tuple).
        """
        x = sharding.constrain(self.embed_vd[...][input_ids_bt], sharding.RESIDUAL_AXES)
        inv_freq = rope_inv_freq(self.config)
        new_states = []
        for layer, state in zip(self.layers, layer_states):
            y, state = attention(layer.attn, layer.input_norm(x), pos_bt, inv_freq, state)
            x = layer.after_attention(x, y)
            new_states.append(state)
        return self.final_norm(x), tuple(new_states)


def _run_layer(layer, x_btd, pos_bt, inv_freq, mask_bts):
    return layer(x_btd, pos_bt, inv_freq, mask_bts)[0]


def _scan_layers(layers, x_btd, pos_bt, inv_freq, mask_bts, remat: bool):
    """The layers as one lax.scan over their stacked parameters (each iteration
    rematerialised with `remat`): one layer's temporaries are alive at a time.

    A Python loop of layers does not guarantee that. Per-layer remat in a loop left the
    backward pass's recomputations unordered, and XLA:CPU scheduled them all up front (a
    4-layer step kept 1036 MiB of temporaries with or without remat, 334 MiB scanned); even a
    forward-only loop kept every layer's activations (the old/reference log-prob passes of a
    7B step planned 47 GiB more than scanned). Inside a scan the layers run one by one, in
    both directions, and the stored residuals are the [B, T, D] layer inputs.
    """
    splits = [nnx.split(layer) for layer in layers]  # every layer has the same structure
    graphdef = splits[0][0]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *(state for _, state in splits))

    def body(x, state):
        y = _run_layer(nnx.merge(graphdef, state), x, pos_bt, inv_freq, mask_bts)
        return sharding.constrain(y, sharding.RESIDUAL_AXES), None

    return jax.lax.scan(jax.checkpoint(body) if remat else body, x_btd, stacked)[0]


def init_model(config: DecoderConfig, seed: int | nnx.Rngs = 0, dtype=jnp.float32) -> Decoder:
    """A randomly initialised Decoder (weights N(0, 0.02^2), biases 0, norms 1, as HF does)."""
    rngs = seed if isinstance(seed, nnx.Rngs) else nnx.Rngs(params=seed)
    return Decoder(config, dtype=dtype, rngs=rngs)
