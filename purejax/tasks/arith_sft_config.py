"""Warm start for the arithmetic miniature: SFT of a tiny Qwen2-style decoder on traces.

    python -m experiments.sft --config=configs/arith_sft.py [--set train.steps=300 ...]

(configs/arith_sft.py names this module.)

Builds the task tokenizer, trains on a mix of correct, one-error and filler
traces (purejax/tasks/warmstart.py), reports greedy held-out accuracy with the
verifier, and caches model + tokenizer under
$PUREJAX_CACHE/arith_warmstart/<config hash> (a second run reuses it).

Expected (2 CPU cores shared with other jobs, load ~2): ~60 s wall (tokenizer and
data ~5 s, 1000 SFT steps of 16 sequences ~45 s, held-out evaluation ~5 s); a
cached rerun takes ~5 s. Held-out greedy accuracy for seed 0: 0.449 over 1024
problems (0.496 over the first 256) with jax 0.10.2 on the current machines; an
earlier machine and build gave 0.438 over 256 (0.54 / 0.39 / 0.39 for 2 / 3 / 4
operations; seed 1: 0.617), so the float rounding of the build moves it by a few
points. Sampled at temperature 1: accuracy ~0.19, filler steps in ~21% of
responses. Final SFT loss ~0.12 from 5.22.

Why this task size: with values <= 30 and operands <= 6, 1000 steps put the
policy past learning to copy the operands in order (a skill that appears
abruptly: on a smaller task 700 steps gave accuracy 0.145 and 800 gave 0.67;
here 900 steps give 0.34) and midway through learning the arithmetic, so its
mistakes are mostly wrong arithmetic steps, which a PRM can see and RL can fix.
The accuracy is sensitive to steps and seed; re-measure after changing either.

Why this mix: 60% correct traces teach the format and the arithmetic; 25% with
one injected error (carried on consistently) raise the rate of wrong steps
when sampling (greedy decoding mostly ignores them), the room RL has to improve
and what the PRM's wrong-step scores can teach; 15% with 1-2 filler "thinking" steps put filler in the policy's
support, so a PRM that over-rates filler can be hacked by sum-form credit
(PURE_SPEC §8.1) within a short RL run.
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
            mix=ml_collections.ConfigDict(dict(correct=0.6, error=0.25, filler=0.15)),
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
        dict(steps=1000, batch_size=16, lr=3e-3, warmup_steps=30, weight_decay=0.01, grad_clip=1.0)
    )
    c.eval = ml_collections.ConfigDict(dict(problems=256, max_new_tokens=64, batch_size=128))
    c.cache_dir = ""  # "" -> $PUREJAX_CACHE or ~/.cache/purejax
    c.lock()
    return c
