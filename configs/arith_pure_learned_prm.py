"""The main job with the learned PRM instead of the scripted one.

    python -m experiments.train --config configs/arith_pure_learned_prm.py --workdir runs/arith_pure_learned_prm

Same as configs/arith_pure.py (min-form PRM credit, verifiable reward on 10% of
prompts with its own RLOO baseline), but step rewards come from the PRM trained
by configs/arith_prm.py on oracle-labelled data (`builtin:arith_learned`: trained
on first use, ~1-2 min, then cached under ~/.cache/purejax/arith_prm/). To use a
PRM you trained yourself: --config.prm.path=runs/arith_prm/prm.
"""

from configs import arith_pure, common


def get_config():
    c = arith_pure.get_config()
    with c.unlocked():
        c.prm.path = "builtin:arith_learned"
        c.rewards.prm = common.prm_reward()  # the model-backed PRM source, in place of the scripted one
    return common.finish(c)
