"""PURE-PRM on Qwen2.5-Math-7B as the official OpenRLHF branch trains it (`--reward_mode PRM`).

    python -m experiments.train --config configs/qwen25_math_7b_prm_openrlhf.py --workdir /tmp/prm_openrlhf

Settings: configs/qwen_common.py, `openrlhf_run`. Paper (official README, OpenRLHF branch):
49.3 average over the 5 benchmarks, from the step-100 checkpoint (--config.total_steps=100),
before the PRM-only run hacks the PRM.
"""

from configs import qwen_common


def get_config():
    return qwen_common.openrlhf_run("qwen25_math_7b", "prm")
