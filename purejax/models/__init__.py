"""Flax NNX Qwen2/Llama decoders with HF checkpoint interop."""

from purejax.models.config import ARCHITECTURES, DecoderConfig
from purejax.models.decoder import Decoder, init_model, positions_from_mask
from purejax.models.hf_io import export_pretrained, load_config, load_pretrained, save_pretrained
from purejax.models.logprobs import token_logprobs

__all__ = [
    "export_pretrained",
    "ARCHITECTURES",
    "Decoder",
    "DecoderConfig",
    "init_model",
    "load_config",
    "load_pretrained",
    "positions_from_mask",
    "save_pretrained",
    "token_logprobs",
]
