"""Evaluation as the paper does it: greedy pass@1 on five benchmarks, and Best-of-N with a PRM.

    report = evaluate(policy, tokenizer, benchmarks, prm=prm_decoder, n=8)
    print(format_table(report))

Greedy pass@1 (PURE_SPEC §7): the Qwen2.5-Math chat template, greedy decoding
up to 3000 new tokens, no code execution, the final `\\boxed{}` answer checked
by math-verify (`verify_batch`); a benchmark's score is the mean over its
problems and "average" is the unweighted mean over benchmarks (the paper's).

Best-of-N: N responses per problem sampled at temperature 1.0, each scored
step by step by the PRM (PURE_SPEC §2), the step rewards r_1..r_S aggregated
per response by one of AGGREGATIONS (min, soft_min, last, sum: `purejax.best_of_n`),
and the argmax response per problem kept.

Also reported: pass@N (an oracle picker), majority vote over the extracted
answers, and the mean accuracy of the sampled responses.

Work is done in fixed-shape batches: problems sorted by prompt length, chunks
of `batch_size` rows (the last one padded by repeating a row), prompt widths
rounded up to a power of two, so there is one compile per width. The next
chunk is dispatched before the host decodes and verifies the current one.
Everything takes a model, a tokenizer and prompts, so sharded parameters work
unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from purejax import atomic
from purejax import sharding
from purejax import steps as steps_lib
from purejax.data import DEFAULT_PROMPT_TEMPLATE, Prompt, format_prompt
from purejax.rewards import verifier
from purejax.best_of_n import (  # noqa: F401 - the Best-of-N maths, re-exported
    AGGREGATIONS,
    SOFT_MIN_TEMPERATURE,
    aggregate_step_rewards,
    best_of_n_accuracy,
    majority_vote_correct,
    prm_step_token_id,
    score_steps,
)
from purejax.rollout import decode
from purejax.sampling import sample, stop_token_ids
from purejax.task import encode_prompts

MAX_NEW_TOKENS = 3000  # the paper's evaluation limit
BON_TEMPERATURE = 1.0  # PURE_SPEC §7's sampling temperature
_MIN_WIDTH = 16

VerifyFn = Callable[[Sequence[str], Sequence[str | None]], np.ndarray]


# ------------------------------------------------------------------ generation


@dataclasses.dataclass
class Generations:
    """N responses for each of P problems, in problem order."""

    texts: list[list[str]]  # [P][N]
    tokens: list[list[list[int]]]  # [P][N][response length], up to and including the stop token
    correct: np.ndarray  # float32 [P, N], 1 = the verifier accepts the final answer
    step_rewards: list[list[list[float]]] | None  # [P][N][steps], PRM rewards on the step ends
    scores: np.ndarray | None  # float32 [P, N, len(AGGREGATIONS)]
    verify_errors: int  # responses whose verification raised (scored 0)


def _bucket(length: int) -> int:
    return max(_MIN_WIDTH, 1 << max(0, length - 1).bit_length())


def _safe_verify(verify: VerifyFn, texts, truths) -> tuple[np.ndarray, int]:
    """Scores; a batch whose verification raises is retried item by item, failing items score 0."""
    try:
        return np.asarray(verify(texts, truths), np.float32), 0
    except Exception:  # noqa: BLE001 - model output is hostile; one bad item must not end an evaluation
        scores, errors = np.zeros(len(texts), np.float32), 0
        for i, (text, truth) in enumerate(zip(texts, truths)):
            try:
                scores[i] = float(np.asarray(verify([text], [truth]))[0])
            except Exception:  # noqa: BLE001
                errors += 1
        return scores, errors


def generate(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    *,
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 64,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    seed: int = 0,
    prm=None,
    prm_step_token: str = "\n",
    prm_batch_size: int = 0,
    separator: str = "\n\n",
    soft_min_temperature: float = SOFT_MIN_TEMPERATURE,
    verify: VerifyFn = verifier.verify_batch,
    desc: str = "eval",
    show_progress: bool = True,
    partitioner=None,
) -> Generations:
    """Generates `n` responses per prompt, verifies them and (with `prm`) scores their steps.

    Rows (prompt, sample) are ordered by prompt length and cut into chunks of
    `batch_size`; chunk k samples with fold_in(PRNGKey(seed), k), so results are
    determined by (weights, prompts, n, temperature, batch_size, seed).
    temperature 0 is greedy. `prm` is a token-classification Decoder (num_labels
    2) sharing the policy's tokenizer, whose step token is `prm_step_token`; it
    scores `prm_batch_size` rows per forward pass (default: all `batch_size`),
    since a full forward over prompt + 3000 tokens holds [rows, heads, S, S]
    attention scores. With a `purejax.sharding.Partitioner` the policy and the PRM are
    sharded by their logical axes and every batch's rows over data x fsdp (which must divide
    batch_size and prm_batch_size); results are gathered whole on every process.
    """
    if n < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(
            f"generate: n, batch_size and max_new_tokens must be >= 1, got {n}, {batch_size}, {max_new_tokens}."
        )
    prm_batch_size = prm_batch_size or batch_size
    if batch_size % prm_batch_size:
        raise ValueError(
            f"generate: prm_batch_size={prm_batch_size} must divide batch_size={batch_size} (fixed shapes)."
        )
    if partitioner is not None:
        partitioner.check_rows(
            [("generate: batch_size", batch_size), ("generate: prm_batch_size", prm_batch_size)]
        )
        model = _placed(model, partitioner)
        prm = None if prm is None else _placed(prm, partitioner)
    pad_id = int(tokenizer.pad_token_id or 0)
    stops = stop_token_ids(tokenizer)
    lengths = _prompt_lengths(tokenizer, prompts, template)
    order = np.argsort(lengths, kind="stable")
    rows = [(int(i), j) for i in order for j in range(n)]
    chunks = [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    if prm is not None:
        step_token_id = prm_step_token_id(prm, tokenizer, prm_step_token)
        separators = jnp.asarray(steps_lib.separator_ids(tokenizer, separator))
        prm_graphdef, prm_state = nnx.split(prm)

    out_texts = [[""] * n for _ in prompts]
    out_tokens = [[[] for _ in range(n)] for _ in prompts]
    correct = np.zeros((len(prompts), n), np.float32)
    step_rewards = [[[] for _ in range(n)] for _ in prompts] if prm is not None else None
    scores = np.full((len(prompts), n, len(AGGREGATIONS)), -np.inf, np.float32) if prm is not None else None
    errors, done, hits = 0, 0, 0.0

    def dispatch(k, chunk):
        real = len(chunk)
        chunk = chunk + [chunk[-1]] * (batch_size - real)  # fixed shape: one compile per width
        chunk_prompts = [prompts[i] for i, _ in chunk]
        width = _bucket(max(lengths[i] for i, _ in chunk))
        ids, mask = encode_prompts(tokenizer, chunk_prompts, template, width)
        ids, mask = jnp.asarray(ids), jnp.asarray(mask)
        out = sample(
            model,
            ids,
            mask,
            int(max_new_tokens),
            jax.random.fold_in(jax.random.PRNGKey(seed), k),
            temperature=float(temperature),
            eos_token_id=stops,
            pad_token_id=pad_id,
            partitioner=partitioner,
        )
        extra = None
        if prm is not None:
            rows = (ids, mask)
            scalars = (separators, jnp.int32(step_token_id), jnp.float32(soft_min_temperature))
            if partitioner is not None:
                rows = partitioner.put(tuple(map(np.asarray, rows)), (partitioner.batch(),) * 2)
                scalars = partitioner.put(tuple(map(np.asarray, scalars)), (partitioner.replicated(),) * 3)
            extra = score_steps(
                prm_graphdef,
                prm_state,
                *rows,
                out.tokens,
                out.mask,
                *scalars,
                micro_batch=prm_batch_size,
                partitioner=partitioner,
            )
        return chunk[:real], out, extra

    def finish(job):
        nonlocal errors, done, hits
        chunk, out, extra = job
        tokens, mask = (x[: len(chunk)] for x in sharding.fetch((out.tokens, out.mask)))
        decoded = decode(tokenizer, tokens, mask)
        ok, failed = _safe_verify(verify, decoded, [prompts[i].answer for i, _ in chunk])
        errors += failed
        for b, (i, j) in enumerate(chunk):
            out_texts[i][j], correct[i, j] = decoded[b], ok[b]
            out_tokens[i][j] = tokens[b][mask[b]].tolist()
        if extra is not None:
            end, r, agg = (x[: len(chunk)] for x in sharding.fetch(extra))
            for b, (i, j) in enumerate(chunk):
                step_rewards[i][j] = r[b][end[b]].tolist()
                scores[i, j] = agg[b]
        done += len(chunk)
        hits += float(ok.sum())
        return len(chunk)

    bar = tqdm(total=len(rows), desc=desc, disable=not show_progress, dynamic_ncols=True, file=sys.stderr)
    try:
        pending = None
        for k, chunk in enumerate(chunks):
            job = dispatch(k, chunk)  # runs on the device while the host finishes the previous chunk
            if pending is not None:
                bar.update(finish(pending))
                bar.set_postfix(acc=f"{hits / done:.3f}")
            pending = job
        if pending is not None:
            bar.update(finish(pending))
            bar.set_postfix(acc=f"{hits / max(done, 1):.3f}")
    finally:
        bar.close()
    return Generations(out_texts, out_tokens, correct, step_rewards, scores, errors)


def _placed(model, partitioner):
    """The model with its weights sharded by their logical axes, once for every call."""
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, partitioner.place(state))


def _prompt_lengths(tokenizer, prompts, template) -> list[int]:
    encoded = tokenizer([format_prompt(template, p.question) for p in prompts], add_special_tokens=False)
    return [len(ids) for ids in encoded["input_ids"]]


# ------------------------------------------------------------------ the paper's table


def evaluate(
    model,
    tokenizer,
    benchmarks: dict[str, Sequence[Prompt]],
    *,
    prm=None,
    prm_batch_size: int = 0,
    n: int = 0,
    temperature: float = BON_TEMPERATURE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 64,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    seed: int = 0,
    soft_min_temperature: float = SOFT_MIN_TEMPERATURE,
    verify: VerifyFn = verifier.verify_batch,
    show_progress: bool = True,
    partitioner=None,
) -> dict:
    """Greedy pass@1 per benchmark, and with `n` > 0 Best-of-n (PRM aggregations if `prm` is given).

    Returns a JSON-ready report: {"settings", "greedy": {bench: {accuracy,
    correct, count}, "average": ...}, "best_of_n": {bench: {count, n, accuracy:
    {min, soft_min, last, sum, pass@n, majority, sample_mean}}, "average": ...}
    (only with n > 0), "verify_errors", "problems": [per-problem records]}.
    """
    names = list(benchmarks)
    prompts = [p for name in names for p in benchmarks[name]]
    spans, start = {}, 0
    for name in names:
        spans[name] = slice(start, start + len(benchmarks[name]))
        start += len(benchmarks[name])
    common = dict(
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        template=template,
        seed=seed,
        verify=verify,
        show_progress=show_progress,
        partitioner=partitioner,
    )
    greedy = generate(model, tokenizer, prompts, n=1, temperature=0.0, desc="greedy", **common)
    report = {
        "settings": dict(
            max_new_tokens=int(max_new_tokens),
            batch_size=int(batch_size),
            seed=int(seed),
            n=int(n),
            temperature=float(temperature),
            soft_min_temperature=float(soft_min_temperature),
            prompt_template=template,
        ),
        "greedy": {},
        "verify_errors": greedy.verify_errors,
    }
    for name in names:
        hit = greedy.correct[spans[name], 0]
        report["greedy"][name] = dict(
            accuracy=float(hit.mean()) if len(hit) else math.nan, correct=int(hit.sum()), count=len(hit)
        )
    report["greedy"]["average"] = _mean([report["greedy"][k]["accuracy"] for k in names])
    problems = [
        dict(
            id=p.id,
            benchmark=p.id.split("/")[0],
            answer=p.answer,
            greedy=dict(text=greedy.texts[i][0], correct=bool(greedy.correct[i, 0])),
        )
        for i, p in enumerate(prompts)
    ]
    if n > 0:
        bon = generate(
            model,
            tokenizer,
            prompts,
            n=n,
            temperature=temperature,
            prm=prm,
            prm_batch_size=prm_batch_size,
            soft_min_temperature=soft_min_temperature,
            desc=f"best-of-{n}",
            **common,
        )
        report["verify_errors"] += bon.verify_errors
        report["best_of_n"] = {}
        for name in names:
            span = spans[name]
            accuracy = {}
            if bon.scores is not None:
                accuracy.update(best_of_n_accuracy(bon.scores[span], bon.correct[span]))
            correct = bon.correct[span]
            accuracy[f"pass@{n}"] = float(correct.max(1).mean()) if len(correct) else math.nan
            votes = [majority_vote_correct(t, c) for t, c in zip(bon.texts[span], correct)]
            accuracy["majority"] = _mean(votes)
            accuracy["sample_mean"] = float(correct.mean()) if len(correct) else math.nan
            report["best_of_n"][name] = dict(count=len(correct), n=int(n), accuracy=accuracy)
        keys = next(iter(report["best_of_n"].values()))["accuracy"] if names else {}
        report["best_of_n"]["average"] = {
            k: _mean([report["best_of_n"][name]["accuracy"][k] for name in names]) for k in keys
        }
        for i, record in enumerate(problems):
            samples = [dict(text=bon.texts[i][j], correct=bool(bon.correct[i, j])) for j in range(n)]
            if bon.scores is not None:
                for j, sample_record in enumerate(samples):
                    sample_record["step_rewards"] = bon.step_rewards[i][j]
                    sample_record["scores"] = {
                        a: _finite(bon.scores[i, j, k]) for k, a in enumerate(AGGREGATIONS)
                    }
                record["picked"] = {
                    a: int(np.argmax(bon.scores[i, :, k])) for k, a in enumerate(AGGREGATIONS)
                }
            record["samples"] = samples
    report["problems"] = problems
    return report


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _finite(x) -> float | None:
    return float(x) if np.isfinite(x) else None


def format_table(report: dict) -> str:
    """The report as a plain-text table: one row per benchmark, accuracies in %."""
    names = [k for k in report["greedy"] if k != "average"]
    columns = ["greedy"]
    bon = report.get("best_of_n")
    if bon:
        first = bon[names[0]]["accuracy"] if names else {}
        columns += [f"bo{bon[names[0]]['n']}:{k}" if k in AGGREGATIONS else k for k in first]
    header = f"{'benchmark':<14}{'count':>6}" + "".join(f"{c:>13}" for c in columns)
    lines = [header, "-" * len(header)]
    for name in names + ["average"]:
        count = sum(report["greedy"][k]["count"] for k in names) if name == "average" else None
        g = report["greedy"][name]
        values = [g if name == "average" else g["accuracy"]]
        if bon:
            acc = bon[name] if name == "average" else bon[name]["accuracy"]
            values += list(acc.values())
        count = count if name == "average" else g["count"]
        lines.append(f"{name:<14}{count:>6}" + "".join(f"{100 * v:>13.1f}" for v in values))
    return "\n".join(lines)


def write_report(report: dict, path: str) -> None:
    """Writes the report as JSON atomically (a killed run never leaves half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic.write_text(path, json.dumps(report, indent=1, allow_nan=True) + "\n")
