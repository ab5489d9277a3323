"""The credit-assignment comparison on the arithmetic miniature (experiments/compare_credit.py).

    python -m experiments.compare_credit --workdir runs/compare_credit

The base is the main job (configs/arith_pure.py): same policy, PRM, task and
optimiser. Each arm of `purejax.compare.ARMS` edits only the credit mode, the
soft-min temperature, the baseline and the reward sources, so the arms differ
in credit assignment alone.
"""

from configs import arith_pure


def get_config():
    return arith_pure.get_config()
