"""PURE-PRM+VR: PRM on every prompt plus the verifiable reward on the ~10% with an answer.

    python -m purejax.train --config=configs/pure_prm_vr.py --workdir=/tmp/pure_prm_vr

Intent: the paper's best model (Qwen2.5-Math-7B: 82.6 MATH500, 53.3 average of
5 benchmarks). Soft-min credit for the PRM (token-mean baseline); VR with its
own RLOO baseline as the paper describes. For the official code's variant
(VR added on the last token, sharing the token baseline) pass
`--config.rewards.vr.baseline=shared`.
"""

from configs import common


def get_config():
    c = common.base(lr=1e-6, credit="soft_min")
    c.rewards.prm = common.prm_reward()
    c.rewards.vr = common.vr_reward(baseline="rloo")
    return common.finish(c)
