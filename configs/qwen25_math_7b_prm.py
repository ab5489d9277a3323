"""PURE-PRM on Qwen2.5-Math-7B: PRM rewards only, soft-min credit (T = 0.1), lr 5e-7.

    python -m experiments.train --config configs/qwen25_math_7b_prm.py --workdir /tmp/qwen25_math_7b_prm
    python -m experiments.evaluate --checkpoint Qwen/Qwen2.5-Math-7B   # the base model

500 steps of 64 prompts x 8 samples. Needs the checkpoints Qwen/Qwen2.5-Math-7B and jinachris/PURE-PRM-7B
in the HF cache or $PUREJAX_MODELS (purejax/model_paths.py), or override --config.policy.path /
--config.prm.path.
Expected: VR-level accuracy in ~30% of the steps, then reward hacking (zero- or
one-step answers the causal PRM rates highly, ~step 270), PURE_SPEC §8.2.
Shared settings, and the choices made where paper and code differ: configs/qwen_common.py.
"""

from configs import qwen_common


def get_config():
    return qwen_common.paper_run("qwen25_math_7b", "prm")
