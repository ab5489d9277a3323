"""The credit-assignment comparison on the arithmetic miniature (experiments/compare_credit.py).

    python -m experiments.compare_credit --workdir runs/compare_credit

The base is the main job (configs/arith_pure.py): same policy, PRM, task and
optimiser, except three settings the main job changes: a constant learning rate
(the paper's; the main job decays it to 0 over its 100 steps, which would also
damp the late reward hacking this sweep looks for), 8 samples per prompt (the
paper's; the main job's 16 would double the sweep's time) and sampling
temperature 0.7 (configs/arith_common.py; the README's sweep results were
measured at 0.7, and the main job's 0.3 has not been swept). Each arm of `purejax.compare.ARMS`
edits only the credit mode, the soft-min temperature, the baseline and the
reward sources, so the arms differ in credit assignment alone; the paper's own
recipe is the arm PURE-PRM+VR (soft-min T = 0.1, VR on 10% of prompts with its
own RLOO baseline), not the main job's hard min.

`--config.policy.path=builtin:arith_guess` starts every arm from a warm start that sometimes
answers without work, the answer the scripted PRM over-rates (README, "With the PRM's hack
in the policy's support"). `--config.policy.path=builtin:arith_merged` with
`--config.rewards.prm.multiline_steps=by_line` starts from one that sometimes writes its
solution as one giant step, judged line by line (README, "Finding 3 with a giant step in the
policy's support").
"""

from configs import arith_pure, common


def get_config():
    c = arith_pure.get_config().copy_and_resolve_references()  # an unlocked copy
    c.optim.schedule = "constant"
    c.rollout.samples_per_prompt = 8
    c.rollout.temperature = 0.7
    return common.finish(c)
