"""PURE-VR: verifiable reward only (DeepSeek-R1-Zero style), with its own RLOO baseline.

    python -m purejax.train --config=configs/pure_vr.py --workdir=/tmp/pure_vr

Intent: the paper's VR baseline (lr 1e-6, 64 x 8, 500 steps). With the shipped
training file only the 879 prompts that have an answer get a reward (the
others contribute zero advantage); for the paper's full-VR run point
`--config.data.train_path` at a file where every prompt has an answer.
"""

from configs import common


def get_config():
    c = common.base(lr=1e-6)
    c.rewards.vr = common.vr_reward(baseline="rloo")
    return common.finish(c)
