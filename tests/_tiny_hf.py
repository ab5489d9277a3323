"""Tiny random HF checkpoints (transformers + torch CPU) written to a temp dir, for tests.

Nothing downloads: models are built from configs with random weights, tokenizers are trained
locally with the `tokenizers` library. Reused by later issues' tests.

    from tests._tiny_hf import save_tiny_hf, load_hf_torch
    path = save_tiny_hf(tmp_path / "m", "qwen2_gqa")            # a named tiny config
    path = save_tiny_hf(tmp_path / "p", "qwen2_gqa", head="classifier")   # a PRM
    torch_model = load_hf_torch(path)                           # the transformers reference
"""

from __future__ import annotations

import os

import numpy as np

# Named tiny configs: hidden 32-64, 2 layers, vocab 100-300, covering GQA ratios (including one
# KV head), tied/untied embeddings, biases, rope_theta. Values are HF config kwargs.
TINY_CONFIGS = {
    # Qwen2: q/k/v biases always on; 4 query heads share 2 KV heads.
    "qwen2_gqa": dict(
        family="qwen2",
        vocab_size=211,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    ),
    # Qwen2, multi-query (1 KV head), tied embeddings, a different rope_theta.
    "qwen2_mqa_tied": dict(
        family="qwen2",
        vocab_size=150,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    ),
    # Llama without biases, full multi-head attention (ratio 1).
    "llama_mha": dict(
        family="llama",
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        attention_bias=False,
    ),
    # Llama with attention_bias (q/k/v/o), mlp_bias, 8 query heads on 2 KV heads, explicit
    # head_dim != hidden/heads, tied, llama3 rope scaling.
    "llama_bias_tied": dict(
        family="llama",
        vocab_size=300,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        rope_theta=20000.0,
        tie_word_embeddings=True,
        attention_bias=True,
        mlp_bias=True,
        rope_scaling=dict(
            rope_type="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
    ),
}


def hf_config(name: str, head: str = "lm", num_labels: int = 2, **overrides):
    """The transformers config object of a named tiny config."""
    import transformers

    kwargs = dict(TINY_CONFIGS[name])
    kwargs.update(overrides)
    family = kwargs.pop("family")
    rope_theta = kwargs.pop("rope_theta")
    rope = dict(kwargs.pop("rope_scaling", None) or {"rope_type": "default"})
    rope["rope_theta"] = rope_theta
    cls = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig}[family]
    config = cls(rope_parameters=rope, bos_token_id=1, eos_token_id=2, pad_token_id=0, **kwargs)
    arch = {"qwen2": "Qwen2", "llama": "Llama"}[family]
    arch += "ForCausalLM" if head == "lm" else "ForTokenClassification"
    config.architectures = [arch]
    if head != "lm":
        config.num_labels = num_labels
    return config


def make_hf_torch(name: str, head: str = "lm", seed: int = 0, std: float = 0.15, **overrides):
    """A transformers torch model with random weights large enough that logits are peaked
    (greedy decoding then has clear winners, so parity tests do not hinge on near-ties)."""
    import torch
    import transformers

    config = hf_config(name, head=head, **overrides)
    cls = getattr(transformers, config.architectures[0])
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    return model


def save_tiny_hf(
    path, name: str, head: str = "lm", seed: int = 0, dtype: str = "float32", **overrides
) -> str:
    """Builds `make_hf_torch(name, head, seed)` and saves it (safetensors) to `path`."""
    import torch

    model = make_hf_torch(name, head=head, seed=seed, **overrides)
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    path = str(path)
    model.save_pretrained(path)
    return path


def load_hf_torch(path: str, dtype: str = "float32"):
    """The transformers reference model of a checkpoint directory, float32 eager attention."""
    import torch
    import transformers
    import json

    with open(os.path.join(path, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    cls = getattr(transformers, arch)
    model = cls.from_pretrained(path, dtype=getattr(torch, dtype), attn_implementation="eager")
    return model.eval()


def padded_batch(
    rng: np.random.Generator, vocab_size: int, lengths, width: int, left: bool = True, low: int = 3
):
    """Random token ids [B, width] with row b holding lengths[b] real tokens, padded on the left
    (default) or right with id 0; returns (ids int32, mask int32). Ids start at `low` so they
    never collide with the pad (0), bos (1) or eos (2) ids of the tiny configs."""
    batch = len(lengths)
    ids = np.zeros((batch, width), np.int32)
    mask = np.zeros((batch, width), np.int32)
    for b, n in enumerate(lengths):
        span = slice(width - n, width) if left else slice(0, n)
        ids[b, span] = rng.integers(low, vocab_size, n)
        mask[b, span] = 1
    return ids, mask


def torch_logits(model, ids, mask) -> np.ndarray:
    """Reference logits with purejax's position convention (cumsum(mask) - 1, clipped at 0)."""
    import torch

    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    mask_t = torch.tensor(np.asarray(mask), dtype=torch.long)
    pos_t = (mask_t.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids_t, attention_mask=mask_t, position_ids=pos_t)
    return out.logits.float().numpy()


def build_tiny_tokenizer(path, texts=None, vocab_size: int = 300) -> str:
    """Trains a byte-level BPE tokenizer on `texts` and saves it to `path` as a
    transformers PreTrainedTokenizerFast (AutoTokenizer loads it). Special tokens take ids
    0 <pad>, 1 <s>, 2 </s>, matching the tiny configs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    import transformers

    if texts is None:
        texts = [
            "Let x = 2. Then x + 3 = 5.\n\nSo the answer is \\boxed{5}.",
            "We compute 7 * 6 = 42.\n\nThus the result is \\boxed{42}.",
            "Step 1: factor the polynomial.\n\nStep 2: solve each factor.\n\n",
        ] * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side="left"
    )
    path = str(path)
    fast.save_pretrained(path)
    return path
