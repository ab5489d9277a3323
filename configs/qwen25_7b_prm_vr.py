"""PURE-PRM+VR on Qwen2.5-7B: PRM on every prompt + VR on the ~10% with an answer, lr 1e-6.

    python -m experiments.train --config configs/qwen25_7b_prm_vr.py --workdir /tmp/qwen25_7b_prm_vr
    python -m experiments.evaluate --checkpoint Qwen/Qwen2.5-7B   # the base model

1000 steps of 64 prompts x 8 samples. Needs the checkpoints Qwen/Qwen2.5-7B and jinachris/PURE-PRM-7B
in the HF cache or $PUREJAX_MODELS (purejax/model_paths.py), or override --config.policy.path /
--config.prm.path.
Expected: the paper's best setting, anchored by the VR and stable, PURE_SPEC §8.3.
Shared settings, and the choices made where paper and code differ: configs/qwen_common.py.
"""

from configs import qwen_common


def get_config():
    return qwen_common.paper_run("qwen25_7b", "prm_vr")
