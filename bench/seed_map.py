"""Several seeds in one jitted call: a loop over the seed axis (`seed_map='loop'`) against a vmap.

    python bench/seed_map.py [--seeds 3] [--repeats 5]

At the comparison's shapes (configs/compare_credit.py: 16 prompts x 8 samples per seed, 32 +
64 tokens, 4 PPO minibatches) and the built-in warm start's policy shape (d_model 64, 2 layers,
4 heads of 16, vocabulary 192; random weights), times the update and the sampler for S seeds with each
mapping, alternately, and prints the loop's time next to vmap's as a ratio. It also checks
that the loop's seed s equals an unbatched run of seed s bit for bit. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._timing import interleaved_best  # noqa: E402
from configs import compare_credit  # noqa: E402
from purejax import sampling  # noqa: E402
from purejax import train_step as ts  # noqa: E402
from purejax.models import init_model  # noqa: E402
from purejax.tasks import arith_sft_config, warmstart  # noqa: E402
from purejax.tasks.tokenizer import build_tokenizer  # noqa: E402


def miniature_policy_config():
    """The built-in warm start's DecoderConfig (purejax/tasks/arith_sft_config.py) and its tokenizer."""
    c = arith_sft_config.get_config()
    tokenizer = build_tokenizer(
        c.tokenizer.vocab_size, c.tokenizer.problems, seed=c.seed, spec=warmstart.spec_from_config(c)
    )
    return warmstart.model_config(c, tokenizer)


MINIATURE = miniature_policy_config()


def rollout_batch(rng, rows: int, prompt_len: int, new_tokens: int) -> ts.RolloutBatch:
    """Random responses with ragged lengths, ~10% step ends carrying rewards in [-1, 1]."""
    lengths = rng.integers(new_tokens // 3, new_tokens + 1, rows)
    mask = np.arange(new_tokens)[None] < lengths[:, None]
    ends = (rng.random((rows, new_tokens)) < 0.1) & mask
    return ts.RolloutBatch(
        jnp.asarray(rng.integers(1, MINIATURE.vocab_size, (rows, prompt_len)), jnp.int32),
        jnp.ones((rows, prompt_len), bool),
        jnp.asarray(rng.integers(1, MINIATURE.vocab_size, (rows, new_tokens)), jnp.int32),
        jnp.asarray(mask),
        jnp.asarray(ends),
        jnp.asarray(np.where(ends, rng.uniform(-1, 1, ends.shape), 0.0), jnp.float32),
        jnp.zeros(rows),
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = compare_credit.get_config()
    r = base.rollout
    rows, p, t, s = r.prompts_per_step * r.samples_per_prompt, r.max_prompt_len, r.max_new_tokens, args.seeds
    rng = np.random.default_rng(0)
    batches = [rollout_batch(rng, rows, p, t) for _ in range(s)]
    stacked_batch = jax.tree.map(lambda *x: jnp.stack(x), *batches)
    keys = jax.random.split(jax.random.PRNGKey(0), s)
    policy = init_model(MINIATURE, seed=0)

    updates, samplers, states = {}, {}, {}
    for mode in ("loop", "vmap"):
        config = base.copy_and_resolve_references()
        config.seed_map = mode
        optimizer = ts.make_optimizer(config)
        graphdef, states[mode], _ = ts.init_seed_states(policy, optimizer, s)
        step = ts.make_train_step(config, graphdef, optimizer, seed_axis=True)

        def update(step=step, mode=mode):
            states[mode], metrics = step(states[mode], stacked_batch, keys)
            return jax.block_until_ready(metrics)

        def sample(graphdef=graphdef, mode=mode):
            params = states[mode].params
            out = sampling.sample_seeds(
                graphdef, params, stacked_batch.prompt_ids, stacked_batch.prompt_mask, t, keys,
                temperature=r.temperature, eos_token_id=MINIATURE.eos_token_id,
                pad_token_id=MINIATURE.pad_token_id, seed_map=mode,
            )  # fmt: skip
            return jax.block_until_ready(out)

        updates[mode], samplers[mode] = update, sample

    # Bit-for-bit check before timing moves the states: the loop's seed 1 against seed 1 alone.
    config = base.copy_and_resolve_references()
    optimizer = ts.make_optimizer(config)
    graphdef, alone = ts.init_train_state(policy, optimizer)
    alone, _ = ts.make_train_step(config, graphdef, optimizer)(alone, batches[1], keys[1])
    config.seed_map = "loop"
    _, first, _ = ts.init_seed_states(policy, optimizer, s)
    first, _ = ts.make_train_step(config, graphdef, optimizer, seed_axis=True)(first, stacked_batch, keys)
    pairs = zip(jax.tree.leaves(first.params), jax.tree.leaves(alone.params))
    exact = all(bool(jnp.array_equal(a[1], b)) for a, b in pairs)

    for fn in (*updates.values(), *samplers.values()):
        fn()  # compile
    (update_loop, update_vmap), _ = interleaved_best(updates["loop"], updates["vmap"], args.repeats)
    (sample_loop, sample_vmap), _ = interleaved_best(samplers["loop"], samplers["vmap"], args.repeats)
    print(
        f"{s} seeds x {rows} rows x ({p} + {t}) tokens, d_model {MINIATURE.hidden_size}, "
        f"{jax.devices()[0].platform}, {os.cpu_count()} cores; best of {args.repeats}"
    )
    print(f"{'call':10s} {'loop s':>8s} {'vmap s':>8s} {'loop / vmap':>12s}")
    for name, a, b in (("update", update_loop, update_vmap), ("sampling", sample_loop, sample_vmap)):
        print(f"{name:10s} {a:8.3f} {b:8.3f} {a / b:12.2f}")
    print(f"loop's seed 1 == seed 1 alone, bit for bit: {exact}")
    print(
        json.dumps(
            {
                "seeds": s,
                "update_loop_s": update_loop,
                "update_vmap_s": update_vmap,
                "sampling_loop_s": sample_loop,
                "sampling_vmap_s": sample_vmap,
                "loop_equals_single_seed": exact,
            }
        )
    )


if __name__ == "__main__":
    main()
