"""PURE-PRM+VR on Qwen2.5-Math-7B as the official OpenRLHF branch trains it: the code behind the
paper's headline numbers.

    python -m experiments.train --config configs/qwen25_math_7b_prm_vr_openrlhf.py --workdir /tmp/prm_vr

64 prompts x 4 samples, 1024 + 2048 tokens, token_rate baseline with masked step ends, k1 KL,
lr 5e-7 with AdamW betas (0.9, 0.95), two updates per rollout (configs/qwen_common.py,
`openrlhf_run`, lists every setting). configs/qwen25_math_7b_prm_vr.py is the same run with the
verl yaml's settings, which the paper states as its hyperparameters.
Paper (official README, OpenRLHF branch): 82.6 MATH500, 82.5 AMC23, 53.3 average over the 5
benchmarks (base: 39.5).
"""

from configs import qwen_common


def get_config():
    return qwen_common.openrlhf_run("qwen25_math_7b", "prm_vr")
