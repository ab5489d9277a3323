"""Sum-form ablation on Qwen2.5-Math-7B: PRM rewards only with the usual sum-form credit (gamma = 1).

    python -m experiments.train --config configs/qwen25_math_7b_sum_prm.py --workdir /tmp/qwen25_math_7b_sum_prm

Intent: the collapse PURE is about (PURE_SPEC §8.1): the policy hacks the PRM
within tens of steps (from ~step 25; average accuracy ~30 by step 80, below the
base model's 39.5) with plan-like steps that never solve the problem or long
repetitive text. Identical to qwen25_math_7b_prm.py except `advantage.credit = 'sum'`.
"""

from configs import qwen_common


def get_config():
    return qwen_common.paper_run("qwen25_math_7b", "prm", credit="sum")
