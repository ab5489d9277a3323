"""The credit-assignment comparison on the arithmetic miniature (experiments/compare_credit.py).

    python -m experiments.compare_credit --workdir runs/compare_credit

The base is the main job (configs/arith_pure.py): same policy, PRM, task and
optimiser, except the paper's constant learning rate (the main job decays it to
0 over its 100 steps, which would also damp the late reward hacking this sweep
looks for). Each arm of `purejax.compare.ARMS` edits only the credit mode, the
soft-min temperature, the baseline and the reward sources, so the arms differ
in credit assignment alone.
"""

from configs import arith_pure, common


def get_config():
    c = arith_pure.get_config().copy_and_resolve_references()  # an unlocked copy
    c.optim.schedule = "constant"
    return common.finish(c)
