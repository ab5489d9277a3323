"""PURE-PRM: PRM rewards only, min-form credit (soft-min, T = 0.1), token-mean baseline.

    python -m purejax.train --config=configs/pure_prm.py --workdir=/tmp/pure_prm

Intent: the paper's PRM-only run (Qwen2.5-Math-7B, 500 steps of 64 prompts x 8
samples, lr 5e-7). Expected (paper): VR-level accuracy in ~30% of the steps,
then reward hacking around step ~270 (zero- or one-step answers the causal PRM
rates highly), PURE_SPEC §8.2.
"""

from configs import common


def get_config():
    c = common.base(lr=5e-7, credit="soft_min")
    c.rewards.prm = common.prm_reward()
    return common.finish(c)
