"""Rollouts: which prompts a step samples, sampling them in fixed-size row chunks, and the
greedy held-out evaluation, for S seeds at once (a leading seed axis, `sample_seeds`).

Everything random is a function of (seed, step): the prompt order is a stateless seeded
permutation per epoch, and chunk c of a step samples with fold_in(fold_in(seed, step), c's
first row), so a resumed run draws what an uninterrupted one draws.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax import config_checks, engine, sharding
from purejax import seed_map as seed_map_lib
from purejax.sampling import SampleOutput, sample_seeds
from purejax.rewards import verifier


def prompt_order(num_prompts: int, seed: int, step: int, per_step: int) -> np.ndarray:
    """Dataset indices of the prompts of `step`: epochs of seeded permutations, no state."""
    start = step * per_step
    epoch, offset = divmod(start, num_prompts)
    out = []
    while len(out) < per_step:
        order = np.random.default_rng([seed, epoch]).permutation(num_prompts)
        out.extend(order[offset : offset + per_step - len(out)].tolist())
        epoch, offset = epoch + 1, 0
    return np.asarray(out, np.int64)


def step_prompts(num_prompts: int, seeds: Sequence[int], step: int, per_step: int, k: int) -> np.ndarray:
    """int[S, per_step * k]: each seed's prompt indices of `step`, every prompt repeated k times."""
    return np.stack([np.repeat(prompt_order(num_prompts, seed, step, per_step), k) for seed in seeds])


def step_keys(seeds: Sequence[int], step: int) -> jnp.ndarray:
    """[S, 2]: the sampling key of each seed at `step`."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed), step) for seed in seeds])


def sample_rollout(
    graphdef,
    params,
    prompt_ids,
    prompt_mask,
    keys,
    rollout,
    *,
    eos_ids,
    pad_id,
    partitioner=None,
    seed_map="auto",
) -> SampleOutput:
    """Samples [S, B] rows in chunks of `rollout.sample_batch` rows (0: all at once), with
    the sampler `rollout.engine` names, mapped over the seeds as `seed_map` says.

    Fixed-size chunks bound the KV cache. Chunk i samples with its own key, so chunking
    changes the draws (not their law). Both engines draw the same tokens for the same key (up
    to float rounding). Returns numpy [S, B, N] fields.
    """
    rows = prompt_ids.shape[1]
    size = int(rollout.sample_batch) or rows  # the config checks that it divides `rows`
    options = dict(
        temperature=float(rollout.temperature),
        top_k=int(rollout.top_k),
        top_p=float(rollout.top_p),
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
    )
    n = int(rollout.max_new_tokens)
    chunks = []
    for start in range(0, rows, size):
        chunk = slice(start, start + size)
        chunk_keys = keys if size == rows else jax.vmap(jax.random.fold_in, (0, None))(keys, start)
        ids, mask = prompt_ids[:, chunk], prompt_mask[:, chunk]
        if rollout.engine == "continuous":  # one device (the trainer checks): seed by seed
            seeds = [
                engine.sample_continuous(
                    nnx.merge(graphdef, jax.tree.map(lambda x, s=s: x[s], params)),
                    ids[s],
                    mask[s],
                    n,
                    chunk_keys[s],
                    **options,
                    slots=int(rollout.slots),
                    page_size=int(rollout.page_size),
                    num_pages=int(rollout.num_pages) or None,
                    attention=rollout.paged_attention,
                )
                for s in range(len(chunk_keys))
            ]
            out = SampleOutput(*(np.stack(field) for field in zip(*jax.device_get(seeds))))
        else:
            out = sample_seeds(
                graphdef, params, ids, mask, n, chunk_keys,
                partitioner=partitioner, seed_map=seed_map, **options,
            )  # fmt: skip
        chunks.append(sharding.fetch(out))
    return type(chunks[0])(*(np.concatenate(parts, axis=1) for parts in zip(*chunks)))


def check_engine(rollout, partitioner) -> None:
    """Fails at start-up, naming the field, if `rollout.engine` cannot run on `partitioner`'s
    devices (the continuous engine runs on one device) or its pool cannot hold one row."""
    if rollout.engine != "continuous":
        return
    if partitioner is not None:
        config_checks.fail(
            "rollout.engine",
            f"'continuous' samples on one device, but config.mesh spans {partitioner.mesh.devices.size} "
            "devices; use 'static' on a mesh",
            allowed=["static"],
        )
    per_row = engine.pages_per_row(rollout.max_prompt_len, rollout.max_new_tokens, rollout.page_size)
    if rollout.num_pages and rollout.num_pages < per_row:
        config_checks.fail(
            "rollout.num_pages",
            f"the pool must hold one whole row, {per_row} pages of {rollout.page_size} positions "
            f"(max_prompt_len {rollout.max_prompt_len} + max_new_tokens {rollout.max_new_tokens} - 1); "
            f"got {rollout.num_pages}. Raise it, or 0 for `slots` whole rows",
        )


def params_layout(params, partitioner):
    """A jitted function that lays seed-stacked policy params [S, ...] (shaped like `params`) out
    by `partitioner` (the decode layout of `sharding.for_rollout`): one device-to-device reshard
    per RL step, in the params' own dtype (the compute dtype; no float32 copy).

    One program for the whole tree, not a device_put per leaf: on a pod every eager reshard is
    a program with collectives on every process, and dozens of them in flight at once is what
    a 2-process run hung on (tests/test_mesh_trainer.py, under load)."""
    one = seed_map_lib.one_seed_shapes(params)
    return jax.jit(lambda tree: tree, out_shardings=partitioner.seed_stacked(partitioner.tree(one)))


def padded_chunks(rows: int, size: int):
    """(indices int[size], real count) per chunk of `size` rows; the last chunk repeats its
    last row up to `size`, so every call has one shape and compiles once."""
    for start in range(0, rows, size):
        index = np.arange(start, min(start + size, rows))
        real = len(index)
        yield np.concatenate([index, np.repeat(index[-1:], size - real)]), real


def decode(tokenizer, tokens, mask) -> list[str]:
    """The valid tokens of each row as text (special tokens dropped)."""
    tokens = np.where(np.asarray(mask, bool), np.asarray(tokens), -1)
    return tokenizer.batch_decode([row[row >= 0] for row in tokens], skip_special_tokens=True)


def greedy_accuracy(
    graphdef,
    params,
    ids,
    mask,
    answers: Sequence[str | None],
    tokenizer,
    *,
    batch_size: int,
    max_new_tokens: int,
    eos_ids,
    pad_id: int,
    partitioner=None,
    seed_map: str = "auto",
) -> list[dict[str, float]]:
    """Greedy pass@1 of S seed-stacked policies on prompts [N, P] with the verifier, one dict per seed."""
    n_seeds = len(jax.tree.leaves(params)[0])
    texts = [[] for _ in range(n_seeds)]
    greedy_keys = jnp.stack([jax.random.PRNGKey(0)] * n_seeds)
    for index, real in padded_chunks(len(answers), batch_size):
        out = sample_seeds(
            graphdef,
            params,
            ids[index],
            mask[index],
            int(max_new_tokens),
            greedy_keys,
            temperature=0.0,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            partitioner=partitioner,
            seed_map=seed_map,
        )
        tokens, out_mask = sharding.fetch((out.tokens, out.mask))
        for s in range(n_seeds):
            texts[s].extend(decode(tokenizer, tokens[s], out_mask[s])[:real])
    flat = [t for seed_texts in texts for t in seed_texts]
    scores = np.asarray(verifier.verify_batch(flat, list(answers) * n_seeds), float)
    scores = scores.reshape(n_seeds, len(answers))
    return [
        {"eval/accuracy": float(row.mean()) if len(answers) else float("nan"), "eval/count": len(answers)}
        for row in scores
    ]
