"""Sum-form ablation: PRM rewards only with the usual sum-form credit (gamma = 1).

    python -m purejax.train --config=configs/sum_prm.py --workdir=/tmp/sum_prm

Intent: reproduce the collapse PURE is about (PURE_SPEC §8.1): the policy hacks
the PRM within tens of steps (from ~step 25; average accuracy ~30 by step 80,
below the base model) with plan-like steps that never solve the problem or long
repetitive text. Identical to pure_prm.py except `advantage.credit = 'sum'`.
"""

from configs import common


def get_config():
    c = common.base(lr=5e-7, credit="sum")
    c.rewards.prm = common.prm_reward()
    return common.finish(c)
