"""One RL iteration of a small model on CPU, split into sampling, scoring and update.

    python bench/rl_step.py [--d-model 512] [--layers 4] [--prompts 4] [--samples 4]

Random weights (Qwen2-style: GQA, q/k/v bias, vocab 32k). Reports tokens/s of
each phase and the update's achieved FLOP/s next to a large float32 matmul's
FLOP/s measured in the same run (the machine's practical peak). The update's
FLOPs are counted from the model's matmuls: per token 2 x (matmul parameters)
+ attention, for 2 forward passes (old and reference log-probs) plus
epochs x (forward + backward = 3 forward-equivalents). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from purejax import config as config_lib
from purejax import steps as steps_lib
from purejax import train_step as ts
from purejax.models import DecoderConfig, init_model
from purejax.rewards.prm import prm_step_rewards
from purejax.sampling import sample


def _timed(fn, repeats=3):
    out = jax.block_until_ready(fn())  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return out, float(np.median(times))


def matmul_peak(n=2048, repeats=5) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    _, seconds = _timed(lambda: f(a), repeats)
    return 2 * n**3 / seconds


def forward_flops_per_token(c: DecoderConfig, context: int) -> float:
    d, h = c.hidden_size, c.resolved_head_dim
    attn_params = d * h * (c.num_heads * 2 + c.num_kv_heads * 2)
    mlp_params = 3 * d * c.intermediate_size
    head = d * c.vocab_size
    attention = 2 * 2 * c.num_heads * h * context  # scores and weighted sum
    return 2 * (c.num_layers * (attn_params + mlp_params) + head) + c.num_layers * attention


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    d = args.d_model
    cfg = DecoderConfig(
        vocab_size=args.vocab,
        hidden_size=d,
        intermediate_size=4 * d,
        num_layers=args.layers,
        num_heads=d // 64,
        num_kv_heads=max(d // 128, 1),
        qkv_bias=True,
        model_type="qwen2",
    )
    policy = init_model(cfg, seed=0)
    prm = init_model(DecoderConfig(**{**cfg.__dict__, "head": "classifier"}), seed=1)
    b, p, t = args.prompts * args.samples, args.prompt_len, args.new_tokens
    rng = np.random.default_rng(0)
    prompt_ids = jnp.asarray(rng.integers(1, args.vocab, (b, p)), jnp.int32)
    prompt_mask = jnp.ones((b, p), bool)

    out, sample_s = _timed(
        lambda: sample(policy, prompt_ids, prompt_mask, t, jax.random.PRNGKey(0), temperature=1.0)
    )
    n_separators = min(400, max(1, args.vocab // 80))  # ~1% step ends
    separator = jnp.asarray(rng.choice(args.vocab, n_separators, replace=False), jnp.int32)
    prm_fn = jax.jit(lambda ids, mask: prm(ids, mask))

    @jax.jit
    def score(tokens, mask):
        ends = jax.vmap(steps_lib.step_end_mask, (0, 0, None))(tokens, mask, separator)
        return ends, prm_step_rewards(prm_fn, prompt_ids, prompt_mask, tokens, mask, ends, 13)

    (ends, rewards), score_s = _timed(lambda: score(out.tokens, out.mask))

    config = config_lib.defaults()  # the paper's PPO settings (PURE_SPEC §7)
    config.rollout.samples_per_prompt = args.samples
    config.advantage.credit = "min"
    optimizer = ts.make_optimizer(config)
    graphdef, state = ts.init_train_state(policy, optimizer)
    update = ts.make_train_step(config, graphdef, optimizer)
    batch = ts.RolloutBatch(prompt_ids, prompt_mask, out.tokens, out.mask, ends, rewards, jnp.zeros(b))
    state, _ = update(state, batch, jax.random.PRNGKey(0))  # compile
    times = []
    for i in range(3):
        start = time.perf_counter()
        state, metrics = update(state, batch, jax.random.PRNGKey(i))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    update_s = float(np.median(times))

    peak = matmul_peak()
    tokens = b * t
    # Forward over prompt + response; 2 scoring passes + (forward + backward) per epoch.
    update_flops = b * (p + t) * forward_flops_per_token(cfg, (p + t) // 2) * (2 + 3 * config.ppo.epochs)
    achieved = update_flops / update_s
    rows = [("sampling", sample_s), ("scoring (PRM forward + step ends)", score_s), ("update", update_s)]
    print(
        f"d_model={d} layers={args.layers} vocab={args.vocab} batch={b} prompt={p} new={t}; "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)"
    )
    print(f"{'phase':36s} {'s':>8s} {'tokens/s':>10s}")
    for name, seconds in rows:
        print(f"{name:36s} {seconds:8.3f} {tokens / seconds:10.0f}")
    print(
        f"update: {achieved / 1e9:.1f} GFLOP/s vs matmul peak {peak / 1e9:.1f} GFLOP/s "
        f"= {100 * achieved / peak:.0f}% of peak"
    )
    print(
        json.dumps(
            {
                "sampling_tokens_per_s": tokens / sample_s,
                "scoring_tokens_per_s": tokens / score_s,
                "update_tokens_per_s": tokens / update_s,
                "update_gflops": achieved / 1e9,
                "matmul_peak_gflops": peak / 1e9,
                "update_fraction_of_peak": achieved / peak,
            }
        )
    )


if __name__ == "__main__":
    main()
