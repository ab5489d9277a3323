"""Rollout throughput at long-tailed response lengths: the continuous-batching engine
(`purejax.engine`) vs today's sampler (`sampling.sample`) vs transformers `generate`, in one run.

    python bench/rollout.py            # ~3 minutes alone on 2 CPU cores, ~9 shared with two other jobs

The bench model of bench/sampler.py (Qwen2, 4 layers, d_model 256, vocab 32000, float32,
random weights), saved in HF format and loaded by both sides. 512 rows of 128-token prompts,
sampled at temperature 1 as RL rolls out. Lengths: a random set of EOS ids holding a fraction
q of the vocabulary; the random model spreads its probability almost evenly, so each token
ends its row with probability ~q and lengths are geometric. q is set for a median length of
32 and max_new_tokens is 8 x the median (256; ~0.4% of rows reach it). The printed length
quantiles are the measured ones.

Useful work: only tokens up to each row's EOS count, for all three. The static sampler
decodes all 512 rows until the longest ends; the engine keeps `--slots` rows decoding and
refills a slot from the queue when its row ends. transformers runs on the first `--hf_rows`
rows only (its static batch took ~100 s for 128 rows here); its tokens/s is of those rows.
The engine and the sampler run alternately (best of `--repeats`), with the same key, so their
tokens should agree; the fraction of identical rows is printed. The last line is one JSON object.

Result alone on a 2-core AMD EPYC (2026-12-02, 2048^2 matmul 116 GFLOP/s, `--hf_rows 8
--num_pages 0 --repeats 3`): engine 923 tokens/s, today's sampler 353 -> 2.62x; 93.6% of the
engine's decode slots useful (the tail runs at 24 and 12 slots) against 18.7% of the
sampler's row-steps; 511 of 512 rows identical (one near-tie flipped); transformers 119
tokens/s on 8 rows. The same command before the tail narrowing, same machine: 741 against
330 -> 2.24x, 76.8% useful. Before it, on a faster idle machine (sampler 1,160-1,239
tokens/s): 1.85x and 2.00x; under load (load average 5.6-6.6): 2.26-2.35x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import purejax.models as pm  # noqa: E402
from bench._timing import interleaved_best  # noqa: E402
from bench.sampler import VOCAB, make_checkpoint  # noqa: E402
from purejax import engine, sampling  # noqa: E402


def eos_ids_for_median(vocab: int, median: float, seed: int = 0) -> list[int]:
    """Random EOS ids (never 0, the pad) holding the fraction q = 1 - 2^(-1/median) of the
    vocabulary: at near-uniform next-token probabilities a row ends after `median` tokens
    with probability one half."""
    count = max(1, round(vocab * (1 - 0.5 ** (1 / median))))
    return sorted(np.random.default_rng(seed).choice(np.arange(1, vocab), count, replace=False).tolist())


def generated_lengths(tokens, eos) -> np.ndarray:
    """Tokens up to and including each row's first EOS (all of them if none): [B]."""
    hit = np.isin(np.asarray(tokens), eos)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, hit.shape[1])


def measure(
    model,
    hf_model,
    prompt_ids,
    prompt_mask,
    eos,
    max_new_tokens: int,
    *,
    slots: int,
    page_size: int,
    num_pages: int | None,
    hf_rows: int,
    repeats: int,
) -> dict:
    """Times the three rollouts (printing as it goes); returns the result dict."""
    import torch

    rows, prompt_len = prompt_ids.shape
    n, key = max_new_tokens, jax.random.key(0)

    def run_engine():
        out = engine.run(
            model, prompt_ids, prompt_mask, n, key, temperature=1.0, eos_token_id=eos,
            slots=slots, page_size=page_size, num_pages=num_pages,
        )  # fmt: skip
        return jax.block_until_ready(out)

    def run_current():
        return jax.block_until_ready(
            sampling.sample(model, prompt_ids, prompt_mask, n, key, temperature=1.0, eos_token_id=eos)
        )

    t0 = time.perf_counter()
    run_engine()
    engine_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_current()
    current_first = time.perf_counter() - t0
    (engine_s, current_s), (ours, current) = interleaved_best(run_engine, run_current, repeats)
    lengths = np.asarray(ours.samples.mask).sum(axis=1)
    current_lengths = np.asarray(current.mask).sum(axis=1)
    stats = jax.tree.map(int, ours.stats._asdict())
    width = min(slots, rows)
    useful = stats["useful_slot_steps"] / max(stats["slot_steps"], 1)
    # The static sampler's decode loop runs (longest row - 1) steps over all rows.
    current_useful = (current_lengths - 1).sum() / max((current_lengths.max() - 1) * rows, 1)
    same_rows = (np.asarray(ours.samples.tokens) == np.asarray(current.tokens)).all(axis=1).mean()
    tokens_per_s = lengths.sum() / engine_s
    current_tps = current_lengths.sum() / current_s
    quantiles = np.percentile(lengths, [50, 90, 99, 100]).astype(int).tolist()
    print(
        f"lengths (engine): median {quantiles[0]}, p90 {quantiles[1]}, p99 {quantiles[2]}, "
        f"max {quantiles[3]}, mean {lengths.mean():.1f}; {(lengths == n).mean():.1%} of rows at "
        f"max_new_tokens {n}; {lengths.sum():,} useful tokens"
    )
    print(
        f"engine: {engine_s:.2f} s (best of {repeats}) -> {tokens_per_s:,.0f} tokens/s; compile "
        f"{max(engine_first - engine_s, 0):.1f} s; {width} slots, pages of {page_size}, "
        f"{stats['decode_steps']} decode steps, {useful:.1%} of decode slots useful, "
        f"{stats['prefills']} prefills, {stats['evictions']} evictions, peak "
        f"{stats['peak_pages']} of {num_pages or width * engine.pages_per_row(prompt_len, n, page_size)} pages"
    )
    print(
        f"current sampler: {current_s:.2f} s (best of {repeats}) -> {current_tps:,.0f} tokens/s; "
        f"compile {max(current_first - current_s, 0):.1f} s; {current_useful:.1%} of decode "
        f"row-steps useful ({current_lengths.max() - 1} steps x {rows} rows)"
    )
    print(
        f"engine vs current: {tokens_per_s / current_tps:.2f}x; same tokens on {same_rows:.1%} of "
        "rows (same key; float rounding can flip a near-tie)"
    )

    ids_t = torch.tensor(prompt_ids[:hf_rows], dtype=torch.long)
    mask_t = torch.tensor(prompt_mask[:hf_rows], dtype=torch.long)

    def run_hf():
        with torch.inference_mode():
            return hf_model.generate(
                input_ids=ids_t, attention_mask=mask_t, max_new_tokens=n, do_sample=True,
                temperature=1.0, top_k=0, top_p=1.0, eos_token_id=list(eos), pad_token_id=0,
            )  # fmt: skip

    with torch.inference_mode():  # warm-up on a tiny input
        hf_model.generate(
            input_ids=ids_t[:2, :8], attention_mask=mask_t[:2, :8], do_sample=False,
            max_new_tokens=2, pad_token_id=0,
        )  # fmt: skip
    t0 = time.perf_counter()
    generated = run_hf()
    hf_s = time.perf_counter() - t0
    hf_lengths = generated_lengths(generated[:, prompt_len:].numpy(), eos)
    hf_tps = hf_lengths.sum() / hf_s
    print(
        f"transformers generate (first {hf_rows} of {rows} rows, one run): {hf_s:.2f} s -> "
        f"{hf_tps:,.0f} tokens/s ({hf_lengths.sum():,} tokens, median length "
        f"{int(np.median(hf_lengths))}, max {hf_lengths.max()})"
    )
    return {
        "tokens_per_s": round(float(tokens_per_s), 1),
        "current_sampler_tokens_per_s": round(float(current_tps), 1),
        "transformers_tokens_per_s": round(float(hf_tps), 1),
        "speedup_vs_current": round(float(tokens_per_s / current_tps), 3),
        "useful_slot_fraction": round(float(useful), 4),
        "current_useful_fraction": round(float(current_useful), 4),
        "speedup_vs_transformers": round(float(tokens_per_s / hf_tps), 3),
        "same_rows_as_current": round(float(same_rows), 4),
        "transformers_rows": int(min(hf_rows, rows)),
        "rows": int(rows),
        "slots": int(width),
        "evictions": stats["evictions"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--median", type=int, default=32, help="median response length")
    parser.add_argument("--slots", type=int, default=48, help="engine decode width")
    parser.add_argument("--page_size", type=int, default=64)
    parser.add_argument(
        "--num_pages", type=int, default=192, help="engine KV pool pages per layer (0: slots whole rows)"
    )
    parser.add_argument("--hf_rows", type=int, default=128, help="rows transformers generates")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (best kept)")
    args = parser.parse_args(argv)

    import torch
    import transformers

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    n = 8 * args.median
    eos = eos_ids_for_median(VOCAB, args.median)
    print(
        f"machine: {os.cpu_count()} cores visible, {cores} in the affinity set (JAX and torch use "
        f"them all); load average {os.getloadavg()[0]:.2f}; JAX {jax.__version__}, torch {torch.__version__}"
    )
    print(
        f"rollout: {args.rows} rows, prompt {args.prompt_len}, max_new_tokens {n} (8 x median "
        f"{args.median}), temperature 1, {len(eos)} EOS ids of {VOCAB}"
    )
    with tempfile.TemporaryDirectory() as ckpt:
        make_checkpoint(ckpt)
        model = pm.load_pretrained(ckpt, dtype=jnp.float32)
        hf_model = transformers.Qwen2ForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    prompt_ids = rng.integers(3, VOCAB, (args.rows, args.prompt_len)).astype(np.int32)
    prompt_mask = np.ones_like(prompt_ids)
    result = measure(
        model, hf_model, prompt_ids, prompt_mask, eos, n, slots=args.slots, page_size=args.page_size,
        num_pages=args.num_pages or None, hf_rows=args.hf_rows, repeats=args.repeats,
    )  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
