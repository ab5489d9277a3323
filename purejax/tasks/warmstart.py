"""The warm-start policy of the arithmetic miniature: SFT on a mix of traces, cached on disk.

    ws = warm_start(config)          # config: configs/arith_sft.py get_config()
    model = purejax.models.load_pretrained(ws.path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(ws.path)

RL needs a policy that already writes the task's format, solves some problems
and not others, and sometimes writes filler steps: room to improve and room to
hack. `warm_start` trains a small decoder on `config.data.mix` of correct,
one-error and filler traces (`purejax.tasks.arith.trace_mix`), measures its
held-out greedy accuracy, and saves model + tokenizer + `warmstart.json`
(config, metrics) under

    <cache root>/arith_warmstart/<config hash>

with cache root = config.cache_dir, else $PUREJAX_CACHE, else ~/.cache/purejax.
The hash covers every config field but cache_dir, plus `WARMSTART_VERSION`
(bump it when code changes what a config produces). A finished directory is
reused as is. Training writes into a temporary sibling directory that is renamed
into place only when complete, so a crash or a concurrent run never leaves a
partial checkpoint at the final path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from purejax.cache import building, cache_root
from purejax.tasks import arith, arith_sft_config
from purejax.tasks.tokenizer import build_tokenizer

WARMSTART_VERSION = 2  # 2: stops at train.stop_accuracy on the dev problems
SFT_CONFIG = arith_sft_config.__file__  # the miniature's SFT config: a package file, so any install has it
MARKER = "warmstart.json"


class WarmStart(NamedTuple):
    path: str  # directory with config.json, model.safetensors, tokenizer files, warmstart.json
    metrics: dict  # training and held-out evaluation metrics
    trained: bool  # False when the cached directory was reused


# ---------------------------------------------------------------- config


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first invalid field of an arith SFT config."""

    def need(ok, field, message):
        if not ok:
            raise ValueError(f"config.{field}: {message}.")

    for section in ("task", "tokenizer", "data", "model", "train", "eval"):
        need(section in config, section, "missing section (start from configs/arith_sft.py)")
    try:
        spec_from_config(config)
    except ValueError as e:
        raise ValueError(f"config.task: {e}") from None
    mix = dict(config.data.mix)
    need(
        set(mix) <= set(arith.TRACE_KINDS),
        "data.mix",
        f"keys must be among {arith.TRACE_KINDS}, got {sorted(mix)}",
    )
    need(
        all(v >= 0 for v in mix.values()) and sum(mix.values()) > 0,
        "data.mix",
        f"weights must be >= 0 with a positive sum, got {mix}",
    )
    need(config.data.problems >= 1, "data.problems", f"must be >= 1, got {config.data.problems}")
    need(config.data.max_len >= 8, "data.max_len", f"must be >= 8, got {config.data.max_len}")
    m = config.model
    need(
        m.num_heads % m.num_kv_heads == 0,
        "model.num_kv_heads",
        f"must divide num_heads ({m.num_heads}), got {m.num_kv_heads}",
    )
    need(
        m.hidden_size % m.num_heads == 0,
        "model.hidden_size",
        f"must be divisible by num_heads ({m.num_heads}), got {m.hidden_size}",
    )
    t = config.train
    need(t.steps >= 1, "train.steps", f"must be >= 1, got {t.steps}")
    need(
        0.0 <= t.stop_accuracy <= 1.0,
        "train.stop_accuracy",
        f"must be in [0, 1] (0: train all train.steps), got {t.stop_accuracy}",
    )
    need(t.check_every >= 1, "train.check_every", f"must be >= 1, got {t.check_every}")
    need(
        0 <= t.check_from < t.steps,
        "train.check_from",
        f"must be in [0, train.steps={t.steps}), got {t.check_from}",
    )
    need(config.eval.dev_problems >= 1, "eval.dev_problems", f"must be >= 1, got {config.eval.dev_problems}")
    need(t.batch_size >= 1, "train.batch_size", f"must be >= 1, got {t.batch_size}")
    need(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    need(
        0 <= t.warmup_steps < t.steps,
        "train.warmup_steps",
        f"must be in [0, train.steps={t.steps}), got {t.warmup_steps}",
    )
    need(config.eval.problems >= 1, "eval.problems", f"must be >= 1, got {config.eval.problems}")
    need(
        config.eval.max_new_tokens >= 1,
        "eval.max_new_tokens",
        f"must be >= 1, got {config.eval.max_new_tokens}",
    )


def spec_from_config(config) -> arith.ArithSpec:
    return arith.ArithSpec(**dict(config.task))


def config_hash(config) -> str:
    """12 hex digits identifying what `config` trains (every field but cache_dir)."""
    values = config.to_dict()
    values.pop("cache_dir", None)
    blob = json.dumps({"version": WARMSTART_VERSION, "config": values}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_path(config) -> str:
    return os.path.join(cache_root(config.cache_dir), "arith_warmstart", config_hash(config))


def model_config(config, tokenizer):
    """The DecoderConfig of the policy: a Qwen2-style decoder over the task vocabulary."""
    from purejax.models import DecoderConfig

    m = config.model
    return DecoderConfig(
        vocab_size=len(tokenizer),
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        num_kv_heads=m.num_kv_heads,
        rope_theta=m.rope_theta,
        tie_word_embeddings=True,
        qkv_bias=True,
        model_type="qwen2",
        max_position_embeddings=m.max_position_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# ---------------------------------------------------------------- cache


def warm_start(config, *, progress: bool = True, force: bool = False) -> WarmStart:
    """The cached warm-start policy for `config`, trained first if absent (or `force`).

    Processes asking for the same one at once take turns (`purejax.cache.building`)."""
    check_config(config)
    final = cache_path(config)
    with building(final):
        return _cached_or_trained(config, final, progress, force)


def _cached_or_trained(config, final: str, progress: bool, force: bool) -> WarmStart:
    if not force and os.path.isfile(os.path.join(final, MARKER)):
        with open(os.path.join(final, MARKER), encoding="utf-8") as f:
            return WarmStart(final, json.load(f)["metrics"], trained=False)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.tmp-", dir=os.path.dirname(final))
    try:
        metrics = train_and_save(config, tmp, progress=progress)
        if force and os.path.isdir(final):
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same config first; its result is identical.
            if not os.path.isfile(os.path.join(final, MARKER)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return WarmStart(final, metrics, trained=True)


# ---------------------------------------------------------------- training


def dev_problems(config) -> list[arith.Problem]:
    """`eval.dev_problems` train-split problems the SFT never trains on (the next ones after its
    `data.problems`), for deciding when to stop: the held-out problems stay unseen by that choice."""
    n = config.data.problems
    all_problems = arith.make_problems(
        "train", n + config.eval.dev_problems, seed=config.seed, spec=spec_from_config(config)
    )
    return all_problems[n:]


def training_data(config, tokenizer):
    """(SFTBatch of all training examples as numpy arrays, trace kinds)."""
    from purejax import sft

    problems = arith.make_problems(
        "train", config.data.problems, seed=config.seed, spec=spec_from_config(config)
    )
    responses, kinds = arith.trace_mix(problems, dict(config.data.mix), seed=config.seed)
    data = sft.encode_examples(tokenizer, [p.prompt for p in problems], responses, config.data.max_len)
    # Trim the padding no example uses: fewer positions per step, same fixed shape per run.
    width = int(data.attention_mask.sum(axis=1).max())
    width = min(config.data.max_len, -(-width // 8) * 8)
    return sft.SFTBatch(*(x[:, :width] for x in data)), kinds


def train_and_save(config, out_dir: str, *, progress: bool = True) -> dict:
    """Builds the tokenizer, trains the policy, evaluates it, writes everything to out_dir."""
    from flax import nnx
    from tqdm.auto import tqdm

    from purejax import sft
    from purejax.models import init_model, save_pretrained

    start = time.perf_counter()
    tokenizer = build_tokenizer(
        config.tokenizer.vocab_size,
        config.tokenizer.problems,
        seed=config.seed,
        spec=spec_from_config(config),
    )
    data, kinds = training_data(config, tokenizer)
    model = init_model(model_config(config, tokenizer), seed=config.seed)
    t = config.train
    optimizer = sft.make_optimizer(t.lr, t.steps, t.warmup_steps, t.weight_decay, t.grad_clip)
    graphdef, state = sft.init_sft_state(model, optimizer)
    step = sft.make_sft_step(graphdef, optimizer)
    rng = np.random.default_rng([config.seed, 3])
    n = data.input_ids.shape[0]
    dev = dev_problems(config)
    losses, checks = [], []
    bar = tqdm(range(t.steps), desc="sft", disable=not progress, mininterval=0.5)
    for i in bar:
        rows = rng.integers(0, n, t.batch_size)
        state, metrics = step(state, sft.SFTBatch(*(jnp.asarray(x[rows]) for x in data)))
        if i % 10 == 0 or i == t.steps - 1:
            losses.append((i, float(metrics["loss"])))
            bar.set_postfix(loss=f"{losses[-1][1]:.3f}", acc=f"{float(metrics['token_accuracy']):.3f}")
        done = i + 1
        if t.stop_accuracy and done > t.check_from and done % t.check_every == 0:
            model = nnx.merge(graphdef, state.params)
            checks.append(
                (done, accuracy(model, tokenizer, dev, config.eval.max_new_tokens, config.eval.batch_size))
            )
            bar.set_postfix(loss=f"{losses[-1][1]:.3f}", dev_acc=f"{checks[-1][1]:.3f}")
            if checks[-1][1] >= t.stop_accuracy:
                break
    bar.close()
    train_seconds = time.perf_counter() - start  # tokenizer, data and SFT
    model = nnx.merge(graphdef, state.params)
    heldout = arith.make_problems(
        "heldout", config.eval.problems, seed=config.seed, spec=spec_from_config(config)
    )
    metrics = dict(evaluate(model, tokenizer, heldout, config.eval.max_new_tokens, config.eval.batch_size))
    metrics.update(
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - start - train_seconds,
        first_loss=losses[0][1],
        final_loss=losses[-1][1],
        sequence_width=int(data.input_ids.shape[1]),
        train_mix={k: kinds.count(k) / len(kinds) for k in arith.TRACE_KINDS},
        steps=done,
        dev_accuracy=checks[-1][1] if checks else None,
        dev_checks=checks,
    )
    save_pretrained(model, out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, MARKER), "w", encoding="utf-8") as f:
        json.dump(
            dict(version=WARMSTART_VERSION, config=config.to_dict(), metrics=metrics, losses=losses),
            f,
            indent=2,
            sort_keys=True,
            default=str,
        )
    return metrics


# ---------------------------------------------------------------- evaluation


def encode_prompts(tokenizer, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (ids int32[B, P], mask bool[B, P]) as the sampler takes them."""
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    width = max(len(e) for e in encoded)
    ids = np.full((len(encoded), width), tokenizer.pad_token_id, np.int32)
    mask = np.zeros((len(encoded), width), bool)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = e
        mask[i, width - len(e) :] = True
    return ids, mask


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """Decoded responses (special tokens dropped), greedy by default."""
    from purejax.sampling import sample

    texts = []
    for lo in range(0, len(prompts), batch_size):
        chunk = list(prompts[lo : lo + batch_size])
        # Pad the last chunk to the batch size so every call has the same shapes.
        chunk += [chunk[-1]] * (min(batch_size, len(prompts)) - len(chunk))
        ids, mask = encode_prompts(tokenizer, chunk)
        out = sample(
            model,
            ids,
            mask,
            max_new_tokens,
            jax.random.key(seed + lo),
            temperature=temperature,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        tokens, valid = np.asarray(out.tokens), np.asarray(out.mask)
        texts += tokenizer.batch_decode(
            [t[v].tolist() for t, v in zip(tokens, valid)],
            skip_special_tokens=True,
            clean_up_tokenization_spaces=False,
        )
    return texts[: len(prompts)]


def accuracy(
    model, tokenizer, problems: Sequence[arith.Problem], max_new_tokens: int, batch_size: int
) -> float:
    """Greedy verifier accuracy on `problems` (the SFT's stopping test)."""
    from purejax.rewards import verify_batch

    texts = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens, batch_size)
    return float(np.mean(verify_batch(texts, [p.truth for p in problems], workers=0)))


def evaluate(
    model, tokenizer, problems: Sequence[arith.Problem], max_new_tokens: int, batch_size: int = 128
) -> dict[str, Any]:
    """Greedy held-out metrics: verifier accuracy (purejax.rewards.verify_batch), the oracle's
    answer accuracy (must agree), and step statistics of the responses."""
    from purejax.rewards import verify_batch

    texts = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens, batch_size)
    # In-process verification is safe here: answers come from a 200-token vocabulary
    # without "^", so no comparison can blow up.
    verified = verify_batch(texts, [p.truth for p in problems], workers=0)
    grades = [arith.grade(t, p) for t, p in zip(texts, problems)]
    labels = [label for g in grades for label in g.labels]
    return dict(
        accuracy=float(np.mean(verified)),
        oracle_accuracy=float(np.mean([g.answer_correct for g in grades])),
        accuracy_by_ops={
            str(k): float(np.mean([v for v, p in zip(verified, problems) if len(p.ops) == k]))
            for k in sorted({len(p.ops) for p in problems})
        },
        steps_per_response=len(labels) / len(texts),
        step_label_share={k: labels.count(k) / len(labels) for k in arith.STEP_LABELS},
        responses_with_filler=float(np.mean([("filler" in g.labels) for g in grades])),
        boxed_rate=float(np.mean([g.answer is not None for g in grades])),
        eval_problems=len(problems),
        examples=texts[:3],
    )


def load_sft_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """get_config() of a config file with "a.b=value" overrides applied, checked and locked."""
    from purejax import config as config_lib

    return config_lib.load(path, overrides, check=check_config)
