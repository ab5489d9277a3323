"""Warm start for the arithmetic miniature: SFT of a tiny Qwen2-style decoder on traces.

    python -m experiments.sft --config=configs/arith_sft.py [--set train.steps=300 ...]

(configs/arith_sft.py names this module.)

Builds the task tokenizer, trains on a mix of correct, one-error and filler
traces (purejax/tasks/warmstart.py), reports greedy held-out accuracy with the
verifier, and caches model + tokenizer under
$PUREJAX_CACHE/arith_warmstart/<config hash> (a second run reuses it).

Where it stops. The skill appears abruptly: greedy accuracy stays near 0.1 until step
~600, then climbs to ~0.98 by step 2000, and where it climbs depends on the seed and on
the build's float rounding (at a fixed 1000 steps, seeds 0 / 1 / 2 gave 0.50 / 0.71 /
0.32, and another machine's build 0.38 for seed 0). So the run does not stop at a fixed
step: from step 500 it checks the greedy accuracy on `eval.dev_problems` train-split
problems it never trains on, every `train.check_every` steps, and stops at the first
check at or above `train.stop_accuracy` (0.4). The policy it saves is midway through
learning the arithmetic whatever the seed or machine, so its mistakes are mostly wrong
arithmetic steps, which a PRM can see and RL can fix; the held-out problems play no part
in the choice. Measured (jax 0.10.2, 2 cores): seeds 0 / 1 / 2 stop at steps 1000 / 800 /
1125 with dev accuracy 0.54 / 0.40 / 0.45 and held-out accuracy (first 256) 0.58 / 0.41 /
0.46, in 40-50 s each (a cached rerun takes ~5 s). The spread left is the last check's
jump: the accuracy can rise 0.15 in 25 steps.

Why this mix: 60% correct traces teach the format and the arithmetic; 25% with
one injected error (carried on consistently) raise the rate of wrong steps
when sampling (greedy decoding mostly ignores them), the room RL has to improve
and what the PRM's wrong-step scores can teach; 15% with 1-2 filler "thinking" steps put filler in the policy's
support, so a PRM that over-rates filler can be hacked by sum-form credit
(PURE_SPEC §8.1) within a short RL run. No "guess" traces (an answer without work) and no
"merged" ones (a solution written as one giant step) by default; the policy paths
`builtin:arith_guess` and `builtin:arith_merged` add them (purejax/tasks/builtin.py).
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = ml_collections.ConfigDict(
        dict(min_ops=2, max_ops=4, max_start=12, max_operand=6, max_value=30, heldout_fraction=0.1)
    )
    c.tokenizer = ml_collections.ConfigDict(dict(vocab_size=192, problems=1000))
    c.data = ml_collections.ConfigDict(
        dict(
            problems=8000,
            mix=ml_collections.ConfigDict(dict(correct=0.6, error=0.25, filler=0.15, guess=0.0, merged=0.0)),
            max_len=128,
        )
    )
    c.model = ml_collections.ConfigDict(
        dict(
            hidden_size=64,
            intermediate_size=192,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            rope_theta=10000.0,
            max_position_embeddings=256,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=2000,  # at most; the run stops when the dev accuracy reaches stop_accuracy
            batch_size=16,
            lr=3e-3,
            warmup_steps=30,
            weight_decay=0.01,
            grad_clip=1.0,
            stop_accuracy=0.4,  # 0: train all `steps`
            check_every=25,
            check_from=500,  # no check before: accuracy is ~0.1 until ~step 600 for every seed
        )
    )
    c.eval = ml_collections.ConfigDict(
        dict(problems=256, dev_problems=256, max_new_tokens=64, batch_size=128)
    )
    c.cache_dir = ""  # "" -> $PUREJAX_CACHE or ~/.cache/purejax
    c.lock()
    return c
