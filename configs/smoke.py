"""A seconds-long run for tests: a random tiny policy on the arithmetic task.

    python -m experiments.train --config configs/smoke.py --workdir /tmp/smoke

Exercises every part of the loop (sampling, scripted PRM + verifier rewards,
the PPO update, evaluation, metrics, samples, checkpoints, resume) at toy size.
The policy is untrained, so the numbers mean nothing.
"""

from configs import arith_common, common


def get_config():
    c = arith_common.arith_base(credit="soft_min")
    c.policy.path = "builtin:arith_random"
    c.rollout.prompts_per_step = 2
    c.rollout.samples_per_prompt = 2
    c.rollout.max_new_tokens = 12
    c.eval.num_prompts = 4
    c.eval.batch_size = 4
    c.eval.max_new_tokens = 8
    c.total_steps = 4
    c.eval_every = 2
    c.checkpoint_every = 2
    c.logging.sample_every = 2
    c.logging.keep_checkpoints = 2
    c.rewards.prm = arith_common.scripted_prm_reward()
    c.rewards.vr = common.vr_reward(baseline="rloo", fraction=0.5)
    return common.finish(c)
