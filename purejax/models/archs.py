"""Known architectures without weights: the public config.json values of the paper's models.

The planner (experiments/plan.py) lowers and compiles the real train step from shapes alone,
on a machine that has none of the checkpoints. `config.policy.arch` / `config.prm.arch` name an
entry here; when empty, a local config.json in the section's path wins, then the table entry of
the checkpoint the path is named after (purejax.model_paths).

Values from the HF config.json files (Qwen/Qwen2.5-Math-7B, Qwen/Qwen2.5-Math-1.5B,
Qwen/Qwen2.5-7B). The Math models declare 4096 positions and rope_theta 10000; Qwen2.5-7B
131072 positions and rope_theta 1e6. PURE-PRM-7B is Qwen2.5-Math-7B with a 2-label
token-classification head.
"""

from __future__ import annotations

import os

from purejax.models.config import DecoderConfig

_QWEN2 = {"hidden_act": "silu", "rms_norm_eps": 1e-6, "bos_token_id": 151643, "eos_token_id": 151643}

ARCH_TABLE = {
    "qwen2.5-math-7b": dict(
        _QWEN2,
        architectures=["Qwen2ForCausalLM"],
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ),
    "qwen2.5-math-1.5b": dict(
        _QWEN2,
        architectures=["Qwen2ForCausalLM"],
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        _QWEN2,
        architectures=["Qwen2ForCausalLM"],
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        rope_theta=1000000.0,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
    ),
    # A tiny stand-in for tests of the planner (8 heads / 8 KV heads split over any mesh axis).
    "tiny": dict(
        _QWEN2,
        architectures=["Qwen2ForCausalLM"],
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=8,
        num_key_value_heads=8,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    ),
}

# Checkpoint directory names (purejax.model_paths.HF_REPOS) -> (arch, head).
CHECKPOINT_ARCHS = {
    "Qwen2.5-Math-7B": ("qwen2.5-math-7b", "lm"),
    "Qwen2.5-Math-1.5B": ("qwen2.5-math-1.5b", "lm"),
    "Qwen2.5-7B": ("qwen2.5-7b", "lm"),
    "PURE-PRM-7B": ("qwen2.5-math-7b", "classifier"),
}


def arch_config(name: str, head: str = "lm") -> DecoderConfig:
    """The DecoderConfig of a known architecture, with an "lm" or 2-label "classifier" head."""
    if name not in ARCH_TABLE:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCH_TABLE))}.")
    hf = dict(ARCH_TABLE[name])
    if head == "classifier":
        hf["architectures"] = [hf["architectures"][0].replace("ForCausalLM", "ForTokenClassification")]
        hf["num_labels"] = 2
    return DecoderConfig.from_hf(hf)


def resolve(section, field: str, head: str = "lm") -> DecoderConfig:
    """The architecture of config section `field` ('policy' or 'prm'): its `arch`, else the
    config.json in its `path`, else the table entry of the checkpoint the path is named after."""
    from purejax.models.hf_io import load_config

    if section.arch:
        if section.arch not in ARCH_TABLE:
            raise ValueError(
                f"config.{field}.arch={section.arch!r} is not a known architecture; "
                f"known: {', '.join(sorted(ARCH_TABLE))}."
            )
        return arch_config(section.arch, head)
    if section.path and os.path.isfile(os.path.join(section.path, "config.json")):
        return load_config(section.path)
    known = CHECKPOINT_ARCHS.get(os.path.basename(os.path.normpath(section.path or "")))
    if known is not None:
        return arch_config(known[0], known[1])
    raise ValueError(
        f"config.{field}: no architecture: {field}.arch is empty and {field}.path={section.path!r} has no "
        f"config.json. Pass --config.{field}.arch=NAME (one of {', '.join(sorted(ARCH_TABLE))}) or point "
        f"{field}.path at a checkpoint directory."
    )
