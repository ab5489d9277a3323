"""DecoderConfig: the hyper-parameters of a Qwen2/Llama decoder, and their HF config.json form.

One frozen dataclass covers both families; the differences are three bias flags and
the head. It is hashable, so it can be a static argument of `jax.jit`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# HF architecture name -> (model_type, head). The head is "lm" (causal LM, logits over
# the vocabulary) or "classifier" (per-token logits over `num_labels`, a PRM when 2).
ARCHITECTURES = {
    "Qwen2ForCausalLM": ("qwen2", "lm"),
    "LlamaForCausalLM": ("llama", "lm"),
    "Qwen2ForTokenClassification": ("qwen2", "classifier"),
    "LlamaForTokenClassification": ("llama", "classifier"),
}

_ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """A pre-norm decoder: GQA attention with RoPE, RMSNorm, SwiGLU MLP.

    Qwen2 = qkv_bias True, o_bias False, mlp_bias False. Llama = all three equal to
    its `attention_bias` (q/k/v/o) and `mlp_bias` options.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None  # None -> hidden_size // num_heads (set in __post_init__)
    rope_theta: float = 10000.0
    # ("linear", factor) or ("llama3", factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings); None is plain RoPE. A tuple keeps the config hashable.
    rope_scaling: tuple | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    model_type: str = "llama"  # "qwen2" | "llama": the HF family written by save_pretrained.
    head: str = "lm"  # "lm" | "classifier"
    num_labels: int = 2  # used by the classifier head only
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        positive = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"DecoderConfig.{name} must be a positive int, got {value!r}.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"DecoderConfig.num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads}) for grouped-query attention."
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"DecoderConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads "
                    f"({self.num_heads}), or set head_dim explicitly."
                )
            # Resolved once, so a config equals its save -> load round trip.
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.resolved_head_dim % 2:
            raise ValueError(f"DecoderConfig.head_dim must be even for RoPE, got {self.resolved_head_dim}.")
        if self.head not in ("lm", "classifier"):
            raise ValueError(f"DecoderConfig.head must be 'lm' or 'classifier', got {self.head!r}.")
        if self.model_type not in ("qwen2", "llama"):
            raise ValueError(f"DecoderConfig.model_type must be 'qwen2' or 'llama', got {self.model_type!r}.")
        if self.head == "classifier" and self.num_labels <= 0:
            raise ValueError(f"DecoderConfig.num_labels must be positive, got {self.num_labels}.")
        if self.rope_scaling is not None and self.rope_scaling[0] not in _ROPE_TYPES[1:]:
            raise ValueError(
                f"DecoderConfig.rope_scaling type must be one of {_ROPE_TYPES[1:]}, got {self.rope_scaling!r}."
            )

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim

    @property
    def architecture(self) -> str:
        family = {"qwen2": "Qwen2", "llama": "Llama"}[self.model_type]
        return family + ("ForCausalLM" if self.head == "lm" else "ForTokenClassification")

    # ---------------------------------------------------------------- HF config.json

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "DecoderConfig":
        """Builds the config from an HF config.json dict (transformers 4.x or 5.x keys)."""
        archs = hf.get("architectures") or []
        if len(archs) != 1 or archs[0] not in ARCHITECTURES:
            raise ValueError(
                f"config.json 'architectures' is {archs!r}; purejax supports exactly one of "
                f"{sorted(ARCHITECTURES)}."
            )
        model_type, head = ARCHITECTURES[archs[0]]
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"config.json 'hidden_act' is {hf['hidden_act']!r}; only 'silu' is supported.")
        if hf.get("use_sliding_window", False):
            raise ValueError(
                "config.json 'use_sliding_window' is true; sliding-window attention is "
                "not supported (set it to false)."
            )
        # transformers 5 nests rope settings in 'rope_parameters'; 4.x has top-level
        # 'rope_theta' and an optional 'rope_scaling' dict.
        rope = dict(hf.get("rope_parameters") or {})
        if hf.get("rope_scaling"):
            rope.update(hf["rope_scaling"])
        rope_theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type == "default":
            rope_scaling = None
        elif rope_type == "linear":
            rope_scaling = ("linear", float(rope["factor"]))
        elif rope_type == "llama3":
            rope_scaling = (
                "llama3",
                float(rope["factor"]),
                float(rope["low_freq_factor"]),
                float(rope["high_freq_factor"]),
                int(rope["original_max_position_embeddings"]),
            )
        else:
            raise ValueError(
                f"config.json rope type {rope_type!r} is not supported; supported: {_ROPE_TYPES}."
            )
        if model_type == "qwen2":
            biases = dict(qkv_bias=True, o_bias=False, mlp_bias=False)
        else:
            attention_bias = bool(hf.get("attention_bias", False))
            biases = dict(
                qkv_bias=attention_bias, o_bias=attention_bias, mlp_bias=bool(hf.get("mlp_bias", False))
            )
        eos = hf.get("eos_token_id")
        num_heads = hf["num_attention_heads"]
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=hf.get("head_dim"),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            model_type=model_type,
            head=head,
            num_labels=_num_labels(hf) if head == "classifier" else 2,
            max_position_embeddings=hf.get("max_position_embeddings", 32768),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
            pad_token_id=hf.get("pad_token_id"),
            **biases,
        )

    def to_hf(self, dtype: str = "float32") -> dict[str, Any]:
        """The config.json transformers reads back into the same model."""
        if self.model_type == "qwen2" and (not self.qkv_bias or self.o_bias or self.mlp_bias):
            raise ValueError(
                "A qwen2 DecoderConfig must have qkv_bias=True, o_bias=False, "
                "mlp_bias=False (HF Qwen2 has no other option); use model_type='llama'."
            )
        if self.model_type == "llama" and self.qkv_bias != self.o_bias:
            raise ValueError(
                "A llama DecoderConfig needs qkv_bias == o_bias (HF 'attention_bias' "
                "covers q, k, v and o); use model_type='qwen2' for q/k/v-only biases."
            )
        rope: dict[str, Any] = {"rope_theta": self.rope_theta, "rope_type": "default"}
        if self.rope_scaling is not None:
            kind, *values = self.rope_scaling
            names = {
                "linear": ("factor",),
                "llama3": (
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ),
            }[kind]
            rope.update(rope_type=kind, **dict(zip(names, values)))
        hf: dict[str, Any] = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.resolved_head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id)
            if isinstance(self.eos_token_id, tuple)
            else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            # Both spellings, so transformers 4.x and 5.x read the same RoPE.
            "rope_parameters": rope,
            "rope_theta": self.rope_theta,
            "rope_scaling": None if self.rope_scaling is None else rope,
            "torch_dtype": dtype,
            "dtype": dtype,
        }
        if self.model_type == "llama":
            hf.update(attention_bias=self.qkv_bias, mlp_bias=self.mlp_bias)
        else:
            hf.update(use_sliding_window=False, sliding_window=None)
        if self.head == "classifier":
            hf["num_labels"] = self.num_labels
            hf["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            hf["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        return hf


def _num_labels(hf: dict[str, Any]) -> int:
    if "num_labels" in hf:
        return int(hf["num_labels"])
    if hf.get("id2label"):
        return len(hf["id2label"])
    return 2
