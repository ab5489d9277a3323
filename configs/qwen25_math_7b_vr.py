"""PURE-VR on Qwen2.5-Math-7B: verifiable reward only, its own RLOO baseline, lr 1e-6.

    python -m experiments.train --config configs/qwen25_math_7b_vr.py --workdir /tmp/qwen25_math_7b_vr
    python -m experiments.evaluate --checkpoint Qwen/Qwen2.5-Math-7B   # the base model

500 steps of 64 prompts x 8 samples. Needs the checkpoint Qwen/Qwen2.5-Math-7B in the HF cache or $PUREJAX_MODELS
(purejax/model_paths.py; or override --config.policy.path).
Expected: the VR baseline the PRM runs are compared with (DeepSeek-R1-Zero style);
with the shipped file only the 879 prompts with an answer are rewarded.
Shared settings, and the choices made where paper and code differ: configs/qwen_common.py.
"""

from configs import qwen_common


def get_config():
    return qwen_common.paper_run("qwen25_math_7b", "vr")
