"""PURE-VR on Qwen2.5-Math-7B as the official OpenRLHF branch trains it (`--reward_mode VR`).

    python -m experiments.train --config configs/qwen25_math_7b_vr_openrlhf.py --workdir /tmp/vr_openrlhf

Settings: configs/qwen_common.py, `openrlhf_run`. Paper (official README, OpenRLHF branch):
48.3 average over the 5 benchmarks.
"""

from configs import qwen_common


def get_config():
    return qwen_common.openrlhf_run("qwen25_math_7b", "vr")
