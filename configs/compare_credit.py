"""The credit-assignment comparison on the arithmetic miniature (experiments/compare_credit.py).

    python -m experiments.compare_credit --workdir runs/compare_credit

The base is the main job (configs/arith_pure.py): same policy, PRM, task and
optimiser, except two of the paper's settings the main job changes: a constant
learning rate (the main job decays it to 0 over its 100 steps, which would also
damp the late reward hacking this sweep looks for) and 8 samples per prompt (the
main job's 16 would double the sweep's time). Each arm of `purejax.compare.ARMS`
edits only the credit mode, the soft-min temperature, the baseline and the
reward sources, so the arms differ in credit assignment alone.
"""

from configs import arith_pure, common


def get_config():
    c = arith_pure.get_config().copy_and_resolve_references()  # an unlocked copy
    c.optim.schedule = "constant"
    c.rollout.samples_per_prompt = 8
    return common.finish(c)
