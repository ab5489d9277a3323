"""purejax.models vs transformers (torch CPU) on tiny random checkpoints; HF interop; bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file

import purejax.models as pm
from tests._tiny_hf import (
    TINY_CONFIGS,
    build_tiny_tokenizer,
    hf_config,
    load_hf_torch,
    padded_batch,
    save_tiny_hf,
    torch_logits,
)

# One compiled forward per config: eager op-by-op dispatch compiles every primitive separately
# and is several times slower on first use.
_forward = nnx.jit(lambda model, ids, mask: model(ids, mask))
_token_logprobs = nnx.jit(pm.token_logprobs, static_argnames="temperature")

# Left-padded rows of different lengths, one full row, one single-token row.
LENGTHS, WIDTH = [9, 4, 1, 7], 9


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    """(config name, head) -> saved tiny HF checkpoint, built once per module."""
    cache = {}

    def get(name, head="lm"):
        if (name, head) not in cache:
            cache[name, head] = save_tiny_hf(tmp_path_factory.mktemp(f"{name}_{head}"), name, head=head)
        return cache[name, head]

    return get


def _valid_max_diff(a, b, mask):
    return float(np.abs(np.asarray(a) - np.asarray(b))[np.asarray(mask).astype(bool)].max())


@pytest.mark.parametrize("head", ["lm", "classifier"])
@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_logits_match_transformers_on_left_padded_batch(ckpt_dir, name, head):
    path = ckpt_dir(name, head)
    reference = load_hf_torch(path)
    model = pm.load_pretrained(path)
    ids, mask = padded_batch(np.random.default_rng(1), reference.config.vocab_size, LENGTHS, WIDTH)
    ours = _forward(model, jnp.asarray(ids), jnp.asarray(mask))
    expected = torch_logits(reference, ids, mask)
    out_dim = reference.config.vocab_size if head == "lm" else 2
    assert ours.shape == (len(LENGTHS), WIDTH, out_dim) and ours.dtype == jnp.float32
    assert _valid_max_diff(ours, expected, mask) <= 1e-4


def test_right_padding_and_no_mask_match_transformers(ckpt_dir):
    path = ckpt_dir("qwen2_gqa")
    reference, model = load_hf_torch(path), pm.load_pretrained(path)
    ids, mask = padded_batch(np.random.default_rng(2), 211, LENGTHS, WIDTH, left=False)
    assert (
        _valid_max_diff(
            _forward(model, jnp.asarray(ids), jnp.asarray(mask)), torch_logits(reference, ids, mask), mask
        )
        <= 1e-4
    )
    full = np.ones_like(mask)
    no_mask = nnx.jit(lambda m, i: m(i))(model, jnp.asarray(ids))
    assert _valid_max_diff(no_mask, torch_logits(reference, ids, full), full) <= 1e-4


def test_padding_does_not_change_valid_logits(ckpt_dir):
    model = pm.load_pretrained(ckpt_dir("llama_mha"))
    ids, mask = padded_batch(np.random.default_rng(3), 256, [5], 5)
    alone = _forward(model, jnp.asarray(ids), jnp.asarray(mask))
    padded_ids = np.concatenate([np.full((1, 4), 7, np.int32), ids], axis=1)
    padded_mask = np.concatenate([np.zeros((1, 4), np.int32), mask], axis=1)
    padded = _forward(model, jnp.asarray(padded_ids), jnp.asarray(padded_mask))
    np.testing.assert_allclose(padded[:, 4:], alone, atol=1e-5)


def test_jit_matches_eager_and_gradients_are_finite(ckpt_dir):
    model = pm.load_pretrained(ckpt_dir("qwen2_mqa_tied"))
    ids, mask = padded_batch(np.random.default_rng(4), 150, LENGTHS, WIDTH)
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    eager = model(ids, mask)
    jitted = nnx.jit(lambda m, i, a: m(i, a))(model, ids, mask)
    np.testing.assert_allclose(jitted, eager, atol=1e-5)

    def loss(m):
        return -jnp.sum(pm.token_logprobs(m, ids, mask))

    grads = nnx.jit(nnx.grad(loss))(model)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads.embed_vd[...]).sum()) > 0


def test_token_logprobs_match_torch_log_softmax(ckpt_dir):
    path = ckpt_dir("llama_bias_tied")
    reference, model = load_hf_torch(path), pm.load_pretrained(path)
    ids, mask = padded_batch(np.random.default_rng(5), 300, LENGTHS, WIDTH)
    logits = torch.tensor(torch_logits(reference, ids, mask)) / 0.7
    logp = torch.log_softmax(logits, -1)[:, :-1].gather(-1, torch.tensor(ids[:, 1:, None]).long())
    expected = np.concatenate([np.zeros((len(LENGTHS), 1)), logp[..., 0].numpy()], 1) * mask
    expected[:, 0] = 0.0
    ours = _token_logprobs(model, jnp.asarray(ids), jnp.asarray(mask), temperature=0.7)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert np.all(np.asarray(ours)[mask == 0] == 0)


def test_bfloat16_params_and_compute(ckpt_dir, tmp_path):
    path = ckpt_dir("qwen2_gqa")
    ids, mask = padded_batch(np.random.default_rng(6), 211, LENGTHS, WIDTH)
    f32 = _forward(pm.load_pretrained(path), jnp.asarray(ids), jnp.asarray(mask))
    model = pm.load_pretrained(path, dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    bf16 = _forward(model, jnp.asarray(ids), jnp.asarray(mask))
    assert bf16.dtype == jnp.float32
    scale = float(np.abs(np.asarray(f32)).max())
    assert _valid_max_diff(bf16, f32, mask) <= 0.05 * scale
    # A checkpoint stored in bfloat16 (how Qwen2.5 ships) loads and round-trips in bfloat16.
    bf16_path = save_tiny_hf(tmp_path / "bf16", "qwen2_gqa", dtype="bfloat16")
    loaded = pm.load_pretrained(bf16_path, dtype=jnp.bfloat16)
    pm.save_pretrained(loaded, str(tmp_path / "bf16_again"))
    a = load_file(os.path.join(bf16_path, "model.safetensors"))
    b = load_file(str(tmp_path / "bf16_again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "name,head", [("qwen2_mqa_tied", "lm"), ("llama_bias_tied", "classifier"), ("llama_mha", "lm")]
)
def test_save_load_round_trip_is_exact_and_transformers_loads_it(ckpt_dir, tmp_path, name, head):
    src = ckpt_dir(name, head)
    model = pm.load_pretrained(src)
    out = str(tmp_path / "saved")
    pm.save_pretrained(model, out)
    original, saved = (
        load_file(os.path.join(src, "model.safetensors")),
        load_file(os.path.join(out, "model.safetensors")),
    )
    assert original.keys() == saved.keys()
    assert all(np.array_equal(original[k], saved[k]) for k in original)
    again = pm.load_pretrained(out)
    assert again.config == model.config
    for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(again))):
        assert np.array_equal(a, b)
    reference = load_hf_torch(out)
    ids, mask = padded_batch(np.random.default_rng(7), model.config.vocab_size, LENGTHS, WIDTH)
    assert (
        _valid_max_diff(
            _forward(model, jnp.asarray(ids), jnp.asarray(mask)), torch_logits(reference, ids, mask), mask
        )
        <= 1e-4
    )


@pytest.mark.parametrize(
    "config",
    [
        pm.DecoderConfig(
            vocab_size=120,
            hidden_size=32,
            intermediate_size=48,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            qkv_bias=True,
            model_type="qwen2",
            rope_theta=3000.0,
        ),
        pm.DecoderConfig(
            vocab_size=97,
            hidden_size=48,
            intermediate_size=64,
            num_layers=2,
            num_heads=6,
            num_kv_heads=1,
            tie_word_embeddings=True,
            model_type="llama",
            head="classifier",
            num_labels=3,
            mlp_bias=True,
        ),
    ],
    ids=["qwen2_lm", "llama_classifier3"],
)
def test_init_model_from_scratch_exports_to_transformers(tmp_path, config):
    model = pm.init_model(config, seed=3)
    path = str(tmp_path / "scratch")
    pm.save_pretrained(model, path)
    assert pm.load_config(path) == config
    reference = load_hf_torch(path)
    ids, mask = padded_batch(np.random.default_rng(8), config.vocab_size, LENGTHS, WIDTH)
    assert (
        _valid_max_diff(
            _forward(model, jnp.asarray(ids), jnp.asarray(mask)), torch_logits(reference, ids, mask), mask
        )
        <= 1e-4
    )


def test_config_from_hf_dict():
    config = pm.DecoderConfig.from_hf(hf_config("llama_bias_tied").to_dict())
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (8, 2, 8)
    assert config.qkv_bias and config.o_bias and config.mlp_bias and config.tie_word_embeddings
    assert config.rope_theta == 20000.0 and config.rope_scaling == ("llama3", 8.0, 1.0, 4.0, 16)
    qwen = pm.DecoderConfig.from_hf(hf_config("qwen2_gqa", head="classifier").to_dict())
    assert qwen.qkv_bias and not qwen.o_bias and qwen.head == "classifier" and qwen.num_labels == 2
    # transformers 4.x spelling: top-level rope_theta.
    legacy = dict(hf_config("qwen2_gqa").to_dict(), rope_theta=123.0)
    legacy.pop("rope_parameters")
    assert pm.DecoderConfig.from_hf(legacy).rope_theta == 123.0


def test_parameters_carry_logical_axis_names():
    model = pm.init_model(
        pm.DecoderConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_layers=1,
            num_heads=2,
            num_kv_heads=1,
            qkv_bias=True,
        )
    )
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    assert tuple(specs["embed_vd"].get_value()) == ("vocab", "embed")
    attn, mlp = specs["layers"][0]["attn"], specs["layers"][0]["mlp"]
    assert tuple(attn["q_dnh"].get_value()) == ("embed", "q_heads", "head_dim")
    assert tuple(attn["k_dkh"].get_value()) == ("embed", "kv_heads", "head_dim")
    assert tuple(mlp["gate_df"].get_value()) == ("embed", "mlp")
    assert tuple(mlp["down_fd"].get_value()) == ("mlp", "embed")


def test_sharded_checkpoint_loads(tmp_path):
    reference_model = None
    from tests._tiny_hf import make_hf_torch

    reference_model = make_hf_torch("llama_mha")
    path = str(tmp_path / "sharded")
    reference_model.save_pretrained(path, max_shard_size="50KB")
    assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    model = pm.load_pretrained(path)
    ids, mask = padded_batch(np.random.default_rng(9), 256, LENGTHS, WIDTH)
    assert (
        _valid_max_diff(
            _forward(model, jnp.asarray(ids), jnp.asarray(mask)),
            torch_logits(reference_model, ids, mask),
            mask,
        )
        <= 1e-4
    )


def test_tokenizer_loads_from_checkpoint_directory(ckpt_dir, tmp_path):
    import shutil
    import transformers

    path = str(tmp_path / "with_tokenizer")
    shutil.copytree(ckpt_dir("llama_bias_tied"), path)
    build_tiny_tokenizer(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["So the answer is 5.\n\n", "x"], padding=True, return_tensors="np")
    assert batch["attention_mask"][1, 0] == 0  # left padding
    logits = _forward(
        pm.load_pretrained(path), jnp.asarray(batch["input_ids"]), jnp.asarray(batch["attention_mask"])
    )
    assert logits.shape[:2] == batch["input_ids"].shape and bool(jnp.all(jnp.isfinite(logits)))


# ------------------------------------------------------------------------- bad checkpoints


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_unknown_architecture_is_named(ckpt_dir, tmp_path):
    path = _copy(ckpt_dir("qwen2_gqa"), tmp_path / "gpt2")
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["architectures"] = ["GPT2LMHeadModel"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel.*Qwen2ForCausalLM"):
        pm.load_pretrained(path)


def test_missing_tensor_is_named_with_expected_shape(ckpt_dir, tmp_path):
    path = _copy(ckpt_dir("qwen2_gqa"), tmp_path / "missing")
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias.*\(16,\)"):
        pm.load_pretrained(path)


def test_wrong_shape_is_named_with_expected_shape(ckpt_dir, tmp_path):
    path = _copy(ckpt_dir("llama_mha"), tmp_path / "wrong_shape")
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    tensors["model.layers.0.mlp.up_proj.weight"] = np.zeros((100, 64), np.float32)
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.up_proj\.weight.*\(100, 64\).*\(128, 64\)"):
        pm.load_pretrained(path)


def test_unexpected_tensor_and_missing_files_are_reported(ckpt_dir, tmp_path):
    path = _copy(ckpt_dir("llama_mha"), tmp_path / "extra")
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros((64,), np.float32)
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"q_proj\.bias.*attention_bias"):
        pm.load_pretrained(path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        pm.load_pretrained(str(tmp_path / "nowhere"))


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="num_kv_heads"):
        pm.DecoderConfig(
            vocab_size=10, hidden_size=16, intermediate_size=8, num_layers=1, num_heads=4, num_kv_heads=3
        )
    with pytest.raises(ValueError, match="hidden_act"):
        pm.DecoderConfig.from_hf(dict(hf_config("qwen2_gqa").to_dict(), hidden_act="gelu"))
    with pytest.raises(ValueError, match="qkv_bias"):
        pm.DecoderConfig(
            vocab_size=10,
            hidden_size=16,
            intermediate_size=8,
            num_layers=1,
            num_heads=4,
            num_kv_heads=2,
            model_type="qwen2",
        ).to_hf()


def test_attention_in_query_blocks_matches_transformers_and_full_attention(ckpt_dir, monkeypatch):
    """Full forwards longer than 2 x QUERY_BLOCK attend block by block (memory); with the block
    shrunk to 3 positions the logits still match transformers, and the gradients match the
    single-block computation."""
    from purejax.models import decoder

    path = ckpt_dir(sorted(TINY_CONFIGS)[0])
    reference = load_hf_torch(path)
    model = pm.load_pretrained(path)
    ids, mask = padded_batch(np.random.default_rng(1), reference.config.vocab_size, LENGTHS, WIDTH)
    assert WIDTH > 2 * 3 and WIDTH % 3 == 0
    graphdef, params = nnx.split(model)

    def loss_and_logits(params):
        logits = nnx.merge(graphdef, params)(jnp.asarray(ids), jnp.asarray(mask))
        return jnp.sum(jnp.where(jnp.asarray(mask)[..., None], logits, 0.0) ** 2), logits

    def run():  # traced afresh: QUERY_BLOCK is read while tracing
        return jax.value_and_grad(loss_and_logits, has_aux=True)(params)

    (_, whole), whole_grads = run()
    monkeypatch.setattr(decoder, "QUERY_BLOCK", 3)
    (_, blocked), blocked_grads = run()
    assert _valid_max_diff(blocked, torch_logits(reference, ids, mask), mask) <= 1e-4
    assert _valid_max_diff(blocked, whole, mask) <= 1e-5
    for a, b in zip(jax.tree.leaves(blocked_grads), jax.tree.leaves(whole_grads)):
        # The loss sums squared logits of size ~10: gradients of order 1-100, float32 rounding.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))
