"""Reads and writes HF checkpoint directories (config.json + safetensors) for the Decoder.

A path is a local directory or a Hub id resolved through huggingface_hub's local cache
(purejax.model_paths.resolve_checkpoint). Supported architectures: Qwen2ForCausalLM,
LlamaForCausalLM, Qwen2ForTokenClassification, LlamaForTokenClassification.

Loading refuses, with one CheckpointError naming the file (and tensor), what would otherwise
load silently wrong or fail with a bare library error: an unreadable config.json, a truncated
or garbled safetensors file, an integer or boolean tensor where a float weight belongs, and
NaN or infinite weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from purejax.models.config import DecoderConfig
from purejax.models.decoder import Decoder

# Tensors some checkpoints carry that hold no parameters of ours (old RoPE buffers).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
# safetensors dtype codes of float weights; anything else (I32, BOOL, ...) is not a weight of ours.
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class CheckpointError(ValueError):
    """An HF checkpoint that cannot be loaded as it is; the message names the file and tensor."""


class _TensorSpec(NamedTuple):
    hf_name: str
    path: tuple  # our nnx state path
    hf_shape: tuple[int, ...]
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]


def _linear_in(shape_ours):
    """HF nn.Linear weight [out, in] <-> ours [in, *out_split] (e.g. [D, N, H])."""

    def to_ours(w):
        return w.T.reshape(shape_ours)

    def to_hf(w):
        return w.reshape(shape_ours[0], -1).T

    return to_ours, to_hf


def _linear_out(shape_ours):
    """HF nn.Linear weight [out, in] <-> ours [*in_split, out] (e.g. o_proj [N, H, D])."""

    def to_ours(w):
        return w.T.reshape(shape_ours)

    def to_hf(w):
        return w.reshape(-1, shape_ours[-1]).T

    return to_ours, to_hf


def _same(w):
    return w


def _reshape(shape_ours, shape_hf):
    return (lambda w: w.reshape(shape_ours)), (lambda w: w.reshape(shape_hf))


def _tensor_specs(c: DecoderConfig) -> list[_TensorSpec]:
    """Every HF tensor of this architecture with its shape and our parameter path."""
    d, f, v = c.hidden_size, c.intermediate_size, c.vocab_size
    n, k, h = c.num_heads, c.num_kv_heads, c.resolved_head_dim
    specs = [_TensorSpec("model.embed_tokens.weight", ("embed_vd",), (v, d), _same, _same)]
    for i in range(c.num_layers):
        hf, ours = f"model.layers.{i}.", ("layers", i)

        def add(name, path, hf_shape, fns):
            specs.append(_TensorSpec(hf + name, ours + path, hf_shape, *fns))

        add("input_layernorm.weight", ("input_norm", "weight"), (d,), (_same, _same))
        add("post_attention_layernorm.weight", ("post_attn_norm", "weight"), (d,), (_same, _same))
        add("self_attn.q_proj.weight", ("attn", "q_dnh"), (n * h, d), _linear_in((d, n, h)))
        add("self_attn.k_proj.weight", ("attn", "k_dkh"), (k * h, d), _linear_in((d, k, h)))
        add("self_attn.v_proj.weight", ("attn", "v_dkh"), (k * h, d), _linear_in((d, k, h)))
        add("self_attn.o_proj.weight", ("attn", "o_nhd"), (d, n * h), _linear_out((n, h, d)))
        if c.qkv_bias:
            add("self_attn.q_proj.bias", ("attn", "q_bias_nh"), (n * h,), _reshape((n, h), (n * h,)))
            add("self_attn.k_proj.bias", ("attn", "k_bias_kh"), (k * h,), _reshape((k, h), (k * h,)))
            add("self_attn.v_proj.bias", ("attn", "v_bias_kh"), (k * h,), _reshape((k, h), (k * h,)))
        if c.o_bias:
            add("self_attn.o_proj.bias", ("attn", "o_bias_d"), (d,), (_same, _same))
        add("mlp.gate_proj.weight", ("mlp", "gate_df"), (f, d), _linear_in((d, f)))
        add("mlp.up_proj.weight", ("mlp", "up_df"), (f, d), _linear_in((d, f)))
        add("mlp.down_proj.weight", ("mlp", "down_fd"), (d, f), _linear_in((f, d)))
        if c.mlp_bias:
            add("mlp.gate_proj.bias", ("mlp", "gate_bias_f"), (f,), (_same, _same))
            add("mlp.up_proj.bias", ("mlp", "up_bias_f"), (f,), (_same, _same))
            add("mlp.down_proj.bias", ("mlp", "down_bias_d"), (d,), (_same, _same))
    specs.append(_TensorSpec("model.norm.weight", ("final_norm", "weight"), (d,), _same, _same))
    if c.head == "lm" and not c.tie_word_embeddings:
        specs.append(_TensorSpec("lm_head.weight", ("lm_head_vd",), (v, d), _same, _same))
    if c.head == "classifier":
        specs.append(
            _TensorSpec("score.weight", ("score_dc",), (c.num_labels, d), *_linear_in((d, c.num_labels)))
        )
        specs.append(_TensorSpec("score.bias", ("score_bias_c",), (c.num_labels,), _same, _same))
    return specs


def _read_json(file: str) -> dict:
    try:
        with open(file, encoding="utf-8") as f:
            value = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); re-download or re-save the checkpoint.") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(value).__name__}.")
    return value


def _open(file: str):
    try:
        return safe_open(file, framework="numpy")
    except Exception as e:  # noqa: BLE001 - SafetensorError for a truncated header, OSError, ...
        raise CheckpointError(
            f"{file}: not a readable safetensors file ({type(e).__name__}: {e}); the file is truncated or "
            f"damaged: re-download it."
        ) from None


def _tensor_files(path: str) -> dict[str, str]:
    """Tensor name -> safetensors file, from model.safetensors or a sharded index."""
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(single):
        with _open(single) as f:
            return {name: single for name in f.keys()}
    if os.path.exists(index):
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: has no 'weight_map' object (tensor name -> file).")
        return {name: os.path.join(path, file) for name, file in weight_map.items()}
    raise FileNotFoundError(
        f"{path} has neither model.safetensors nor model.safetensors.index.json; purejax reads "
        f"only safetensors checkpoints (re-save a .bin checkpoint with transformers' "
        f"save_pretrained(safe_serialization=True))."
    )


def _local(path: str) -> str:
    from purejax.model_paths import resolve_checkpoint

    return resolve_checkpoint(path)


def load_config(path: str) -> DecoderConfig:
    """DecoderConfig from `path`/config.json (`path` a directory or a cached Hub id)."""
    config_path = os.path.join(_local(path), "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"{config_path} not found: load_pretrained needs a local HF "
            f"checkpoint directory with config.json."
        )
    hf = _read_json(config_path)
    try:
        return DecoderConfig.from_hf(hf)
    except (ValueError, KeyError, TypeError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(f"{config_path}: {detail}") from None


def _weight(file: str, handle, name: str) -> np.ndarray:
    """Tensor `name` of `file`, refused unless it is a finite float tensor."""
    try:
        dtype = handle.get_slice(name).get_dtype()
        value = handle.get_tensor(name)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"{file}: tensor {name!r} cannot be read ({type(e).__name__}: {e}); the file is truncated or "
            f"damaged: re-download it."
        ) from None
    if dtype not in _FLOAT_DTYPES:
        raise CheckpointError(
            f"{file}: tensor {name!r} has dtype {dtype}; weights must be floats ({', '.join(_FLOAT_DTYPES)}). "
            f"Casting integers or booleans to weights would load a different model: re-export the checkpoint."
        )
    finite = np.isfinite(value)
    if not finite.all():
        bad = int(value.size - np.count_nonzero(finite))
        raise CheckpointError(
            f"{file}: tensor {name!r} has {bad} NaN or infinite values of {value.size}; the checkpoint is "
            f"corrupt or was saved from a diverged run."
        )
    return value


def load_pretrained(path: str, dtype=jnp.float32) -> Decoder:
    """Loads an HF checkpoint (directory or cached Hub id) into a Decoder whose params/compute use `dtype`.

    Raises ValueError naming the tensor and its expected shape when one is missing or has the
    wrong shape, and naming any tensor this architecture does not have; CheckpointError (a
    ValueError) naming the file and tensor for unreadable files and non-float or non-finite
    weights.
    """
    path = _local(path)
    config = load_config(path)
    files = _tensor_files(path)
    specs = _tensor_specs(config)
    expected = {s.hf_name for s in specs}
    unexpected = sorted(
        name
        for name in files
        if name not in expected
        and not name.endswith(_IGNORED_SUFFIXES)
        # Tied checkpoints sometimes still store lm_head.weight; HF ignores it too.
        and not (name == "lm_head.weight" and config.tie_word_embeddings and config.head == "lm")
    )
    if unexpected:
        raise ValueError(
            f"{path}: tensor {unexpected[0]!r} (and {len(unexpected) - 1} more) is not "
            f"part of {config.architecture} with this config.json; check "
            f"'architectures', 'attention_bias', 'mlp_bias' and 'tie_word_embeddings'."
        )
    for s in specs:
        if s.hf_name not in files:
            raise ValueError(
                f"{path}: missing tensor {s.hf_name!r}, expected shape {s.hf_shape} "
                f"for {config.architecture} with this config.json."
            )

    abstract = nnx.eval_shape(lambda: Decoder(config, dtype=dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = dict(nnx.to_flat_state(state))
    handles = {}
    try:
        for s in specs:
            file = files[s.hf_name]
            if file not in handles:
                if not os.path.exists(file):
                    raise CheckpointError(f"{file}: missing (the index names it for tensor {s.hf_name!r}).")
                handles[file] = _open(file)
            handle = handles[file]
            shape = tuple(handle.get_slice(s.hf_name).get_shape())
            if shape != s.hf_shape:
                raise ValueError(
                    f"{path}: tensor {s.hf_name!r} has shape {shape}, expected shape "
                    f"{s.hf_shape} from config.json ({config.architecture})."
                )
            value = s.to_ours(_weight(file, handle, s.hf_name))
            flat[s.path].set_value(jnp.asarray(value, dtype=dtype))
    finally:
        handles.clear()
    loaded = {s.path for s in specs}
    missing = [p for p in flat if p not in loaded]
    assert not missing, f"internal: parameters without an HF tensor: {missing}"
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def save_pretrained(model: Decoder, path: str) -> None:
    """Writes `path`/config.json + model.safetensors that transformers loads as the same model.

    Tensors are stored in the model's parameter dtype.
    """
    config = model.config
    hf_config = config.to_hf(dtype=str(model.dtype))
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    tensors = {}
    for s in _tensor_specs(config):
        value = np.asarray(jax.device_get(flat[s.path].get_value()))
        tensors[s.hf_name] = np.ascontiguousarray(s.to_hf(value))
        assert tensors[s.hf_name].shape == s.hf_shape, (s.hf_name, tensors[s.hf_name].shape)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config, f, indent=2, sort_keys=True)
    # transformers requires the "format" metadata to read a safetensors file.
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def export_pretrained(
    model: Decoder, tokenizer, path: str, extra_json: dict[str, dict] | None = None
) -> None:
    """`save_pretrained` plus the tokenizer, generation_config.json and small JSON files, written atomically.

    Everything goes into a temporary sibling directory that is renamed into place
    (replacing an earlier export at `path`), so a crash never leaves a half-written
    checkpoint where transformers or `load_pretrained` would find it. The files get the
    modes the umask gives (not tempfile's 0600 / 0700). A causal LM's generation_config.json
    holds the EOS ids purejax's sampler stops on, so transformers, vLLM and lm-eval stop on
    the same tokens.
    """
    from purejax import atomic

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        save_pretrained(model, tmp)
        tokenizer.save_pretrained(tmp)
        for name, payload in (extra_json or {}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=2, sort_keys=True, default=str)
        if model.config.head == "lm":
            with open(os.path.join(tmp, "generation_config.json"), "w", encoding="utf-8") as f:
                json.dump(generation_config(tokenizer), f, indent=2, sort_keys=True)
        atomic.publish_mode(tmp)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def generation_config(tokenizer) -> dict:
    """The generation_config.json of an exported policy: the sampler's stop tokens as EOS.

    Only the token ids: sampling settings belong to whoever generates.
    """
    from purejax.sampling import stop_token_ids

    config = {"eos_token_id": stop_token_ids(tokenizer)}
    if tokenizer.pad_token_id is not None:
        config["pad_token_id"] = int(tokenizer.pad_token_id)
    if tokenizer.bos_token_id is not None:
        config["bos_token_id"] = int(tokenizer.bos_token_id)
    return config
