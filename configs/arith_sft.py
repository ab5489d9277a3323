"""Warm start for the arithmetic miniature (SFT of a tiny Qwen2-style decoder on traces).

    python -m experiments.sft --config=configs/arith_sft.py [--set train.steps=300 ...]

The config lives in the package (purejax/tasks/arith_sft_config.py, with its measurements),
so the built-in task works from any install; this file is its command-line name.
"""

from purejax.tasks.arith_sft_config import get_config  # noqa: F401
