"""Training a PRM: a token-classification Decoder on step-labelled data (PURE_SPEC §2, §7).

    python -m experiments.train_prm --config configs/arith_prm.py --workdir runs/arith_prm

The PRM is a `purejax.models.Decoder` with a 2-class head (HF
`...ForTokenClassification`). Each step's label sits on its step token
(`purejax.prm_data`); the loss is the cross-entropy over those positions only:

    loss = sum_{b,s} nll_bs [label_bs != IGNORE] / sum_{b,s} [label_bs != IGNORE],
    nll_bs = logsumexp(logits_bs) - logits_bs[label_bs],

and the step reward read at RL time is r = p(+) - p(-) = 2 p(+) - 1 at the same
position (`purejax.rewards.prm`).

Training runs in stages, each with its own lr, epochs and `trainable` set:
the paper's PRM trains the head only (lr 1e-4, 3 epochs), then all parameters
(lr 1e-6, 1 epoch). A stage splits the model with an nnx filter into trainable
and frozen parameters and differentiates the trainable ones only, so a
head-only stage runs no backward pass through the body and keeps no optimizer
moments for it; frozen parameters are passed through bit for bit.

Starting points (`model.path`): a local HF directory holding a causal LM (its
body is kept, a fresh head added, as transformers does for
AutoModelForTokenClassification) or a token classifier (trained further). A task
(purejax.tasks.arith_prm) may resolve other names to a directory and pass it as
`train(..., model_path=)`. `model.init = 'random'` re-initialises every weight
(training from scratch with the same architecture and tokenizer).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from purejax import reductions
from purejax.prm_data import IGNORE, PRMBatch
from purejax.prm_metrics import format_metrics, positive_probs, step_metrics  # noqa: F401 - re-exported

TRAINABLE = ("head", "all")
HEAD_PARAMS = ("score_dc", "score_bias_c")  # the classifier head of purejax.models.Decoder
MARKER = "prm_training.json"
DATA_FORMATS = ("trl", "prm800k")  # files this module reads; tasks may supply records of their own


# ---------------------------------------------------------------- loss


def step_label_nll(logits_bsc: jnp.ndarray, labels_bs: jnp.ndarray) -> jnp.ndarray:
    """nll[b, s] = -log softmax(logits[b, s])[labels[b, s]] on labelled positions, 0 elsewhere.

    Per element, unreduced (the caller reduces with the labelled mask).
    """
    logits = logits_bsc.astype(jnp.float32)
    labelled = labels_bs != IGNORE
    target = jnp.take_along_axis(logits, jnp.where(labelled, labels_bs, 0)[..., None], axis=-1)[..., 0]
    return jnp.where(labelled, jax.nn.logsumexp(logits, axis=-1) - target, 0.0)


def prm_loss(model, batch: PRMBatch) -> tuple[jnp.ndarray, dict]:
    """Mean step-label cross-entropy of one batch and its (loss, step accuracy) metrics."""
    logits = model(batch.input_ids, batch.attention_mask)
    labelled = batch.labels != IGNORE
    loss = reductions.masked_mean(step_label_nll(logits, batch.labels), labelled)
    correct = (jnp.argmax(logits, axis=-1) == batch.labels).astype(jnp.float32)
    return loss, dict(loss=loss, step_accuracy=reductions.masked_mean(correct, labelled))


# ---------------------------------------------------------------- stages


def trainable_filter(trainable: str):
    """The nnx filter of a stage's trainable parameters: 'head' (the classifier) or 'all'."""
    if trainable == "all":
        return nnx.Param
    if trainable == "head":
        return nnx.All(nnx.Param, nnx.Any(*(nnx.PathContains(name) for name in HEAD_PARAMS)))
    raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}.")


class PRMTrainState(NamedTuple):
    trainable: Any  # nnx.State of the stage's trainable parameters
    opt_state: Any
    step: jnp.ndarray  # int32 scalar


def init_stage(model, trainable: str, optimizer: optax.GradientTransformation):
    """(graphdef, PRMTrainState, frozen state) of `model` for one stage.

    Merge back with `nnx.merge(graphdef, state.trainable, frozen)`.
    """
    graphdef, train_params, frozen = nnx.split(model, trainable_filter(trainable), ...)
    return (
        graphdef,
        PRMTrainState(train_params, optimizer.init(train_params), jnp.zeros((), jnp.int32)),
        frozen,
    )


def make_prm_step(graphdef, optimizer: optax.GradientTransformation):
    """The jitted `step(state, frozen, batch) -> (state, metrics)`; `state` is donated."""

    def loss_fn(train_params, frozen, batch):
        return prm_loss(nnx.merge(graphdef, train_params, frozen), batch)

    def step(state: PRMTrainState, frozen, batch: PRMBatch):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.trainable, frozen, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        params = optax.apply_updates(state.trainable, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        return PRMTrainState(params, opt_state, state.step + 1), metrics

    return jax.jit(step, donate_argnums=0)


# ---------------------------------------------------------------- models


def load_start_model(config, path: str | None = None) -> tuple[Any, Any]:
    """(classifier Decoder, tokenizer) to start training from: `path`, else config.model.path."""
    from transformers import AutoTokenizer

    from purejax.models import init_model, load_config, load_pretrained

    path = path or config.model.path
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"config.model.path={path!r} is not a local directory. Download the base model (config.json, "
            f"*.safetensors, tokenizer files) on a machine with internet access, e.g. "
            f"`hf download Qwen/Qwen2.5-Math-7B --local-dir /data/Qwen2.5-Math-7B`, and pass "
            f"--config.model.path=/data/Qwen2.5-Math-7B. Nothing is downloaded at run time."
        )
    dtype = jnp.dtype(config.model.dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    base_config = load_config(path)
    head_config = dataclasses.replace(base_config, head="classifier", num_labels=2)
    seed = int(config.seed)
    if config.model.init == "random":
        return init_model(head_config, seed=seed, dtype=dtype), tokenizer
    base = load_pretrained(path, dtype=dtype)
    if base_config.head == "classifier":
        return base, tokenizer
    return classifier_from_lm(base, seed), tokenizer


def classifier_from_lm(lm, seed: int = 0):
    """A token classifier with `lm`'s body and a fresh head (N(0, 0.02^2) weights, zero bias)."""
    from purejax.models import Decoder

    config = dataclasses.replace(lm.config, head="classifier", num_labels=2)
    abstract = nnx.eval_shape(lambda: Decoder(config, dtype=lm.dtype, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = dict(nnx.to_flat_state(state))
    body = dict(nnx.to_flat_state(nnx.state(lm, nnx.Param)))
    for path, var in flat.items():
        if path in body:
            var.set_value(body[path].get_value())
    d = config.hidden_size
    flat[("score_dc",)].set_value((0.02 * jax.random.normal(jax.random.key(seed), (d, 2))).astype(lm.dtype))
    flat[("score_bias_c",)].set_value(jnp.zeros((2,), lm.dtype))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


# ---------------------------------------------------------------- config


def check_config(config, formats: Sequence[str] = DATA_FORMATS) -> None:
    """Raises ValueError naming the first invalid field of a PRM training config."""

    def need(ok, field, message):
        if not ok:
            raise ValueError(f"config.{field}: {message}.")

    for section in ("model", "data", "stages", "eval"):
        need(section in config, section, "missing section (start from configs/arith_prm.py)")
    need(
        config.model.init in ("pretrained", "random"),
        "model.init",
        f"must be 'pretrained' or 'random', got {config.model.init!r}",
    )
    need(
        config.model.dtype in ("float32", "bfloat16", "float16"),
        "model.dtype",
        f"must be float32, bfloat16 or float16, got {config.model.dtype!r}",
    )
    need(
        config.data.layout in ("policy", "trl"),
        "data.layout",
        f"must be 'policy' or 'trl', got {config.data.layout!r}",
    )
    need(
        config.data.format in formats,
        "data.format",
        f"must be one of {tuple(formats)}, got {config.data.format!r}",
    )
    need(len(config.stages) >= 1, "stages", "needs at least one stage, e.g. {'head': ...}")
    for name, stage in config.stages.items():
        need(
            stage.trainable in TRAINABLE,
            f"stages.{name}.trainable",
            f"must be one of {TRAINABLE}, got {stage.trainable!r}",
        )
        need(stage.lr > 0, f"stages.{name}.lr", f"must be > 0, got {stage.lr}")
        need(stage.epochs > 0, f"stages.{name}.epochs", f"must be > 0, got {stage.epochs}")
        need(stage.batch_size >= 1, f"stages.{name}.batch_size", f"must be >= 1, got {stage.batch_size}")
        need(
            0 <= stage.warmup_ratio < 1,
            f"stages.{name}.warmup_ratio",
            f"must be in [0, 1), got {stage.warmup_ratio}",
        )


def load_config(
    source: str, overrides: Sequence[str] = (), formats: Sequence[str] = DATA_FORMATS
) -> ml_collections.ConfigDict:
    """get_config() of a PRM config file with 'a.b=value' overrides applied, checked and locked."""
    from purejax import config as config_lib

    return config_lib.load(source, overrides, check=lambda c: check_config(c, formats))


# ---------------------------------------------------------------- data


def load_data(config, tokenizer) -> tuple[list[dict], list[dict]]:
    """(train records, held-out records) named by config.data."""
    from purejax import prm_data

    d = config.data
    for field in ("train_path", "eval_path"):
        path = d[field]
        if not os.path.isfile(path):
            what = (
                "OpenAI's PRM800K (github.com/openai/prm800k, prm800k/data/phase2_train.jsonl and "
                "phase2_test.jsonl, via git-lfs)"
                if d.format == "prm800k"
                else "a JSONL file of TRL stepwise-supervision records"
            )
            raise FileNotFoundError(
                f"config.data.{field}={path!r} not found. Download {what} on a machine with internet "
                f"access, copy it here and pass --config.data.{field}=/data/prm800k/....jsonl."
            )
    if d.format == "prm800k":
        return (
            prm_data.load_prm800k(d.train_path, d.neutral_is_positive),
            prm_data.load_prm800k(d.eval_path, d.neutral_is_positive),
        )
    return prm_data.load_records(d.train_path), prm_data.load_records(d.eval_path)


def _encode(records, tokenizer, d):
    from purejax import prm_data

    return prm_data.encode_records(
        records,
        tokenizer,
        layout=d.layout,
        step_token=d.step_token,
        separator=d.separator,
        max_prompt_len=d.max_prompt_len,
        max_response_len=d.max_response_len,
        drop_invalid=d.drop_invalid,
    )


def _kinds(records, kept) -> list[str] | None:
    if not all("step_kinds" in records[i] for i in kept):
        return None
    return [k for i in kept for k in records[i]["step_kinds"]]


# ---------------------------------------------------------------- training


def train(config, out_dir: str, *, progress: bool = True, data=None, model_path: str | None = None) -> dict:
    """Trains the PRM of `config` through its stages; writes model + tokenizer + MARKER to out_dir.

    The directory is written atomically: into a temporary sibling renamed into
    place when complete. `data` = (train records, held-out records), or a function of
    the tokenizer returning them, skips loading config.data's files; `model_path`
    replaces config.model.path. Returns the metrics written to MARKER.
    """
    from tqdm.auto import tqdm

    from purejax import sft

    start = time.perf_counter()
    model, tokenizer = load_start_model(config, model_path)
    if callable(data):
        data = data(tokenizer)
    train_records, eval_records = data if data is not None else load_data(config, tokenizer)
    train_batch, train_kept = _encode(train_records, tokenizer, config.data)
    eval_batch, eval_kept = _encode(eval_records, tokenizer, config.data)
    eval_kinds = _kinds(eval_records, eval_kept)
    data_seconds = time.perf_counter() - start
    before = step_metrics(
        positive_probs(model, eval_batch, config.eval.batch_size), eval_batch.labels, eval_kinds
    )
    rng = np.random.default_rng([int(config.seed), 5])
    n = train_batch.input_ids.shape[0]
    history, stages = [], {}
    for name, stage in config.stages.items():
        steps = max(1, int(round(stage.epochs * n / stage.batch_size)))
        optimizer = sft.make_optimizer(
            stage.lr, steps, int(stage.warmup_ratio * steps), stage.weight_decay, stage.grad_clip
        )
        graphdef, state, frozen = init_stage(model, stage.trainable, optimizer)
        step_fn = make_prm_step(graphdef, optimizer)
        order = np.concatenate([rng.permutation(n) for _ in range(int(np.ceil(stage.epochs)) + 1)])
        bar = tqdm(
            range(steps), desc=f"prm {name} ({stage.trainable})", disable=not progress, mininterval=0.5
        )
        for i in bar:
            rows = order[i * stage.batch_size : (i + 1) * stage.batch_size]
            state, metrics = step_fn(state, frozen, PRMBatch(*(jnp.asarray(x[rows]) for x in train_batch)))
            if i % 10 == 0 or i == steps - 1:
                history.append(
                    dict(stage=name, step=i, loss=float(metrics["loss"]), acc=float(metrics["step_accuracy"]))
                )
                bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", acc=f"{history[-1]['acc']:.3f}")
        bar.close()
        model = nnx.merge(graphdef, state.trainable, frozen)
        stages[name] = step_metrics(
            positive_probs(model, eval_batch, config.eval.batch_size), eval_batch.labels, eval_kinds
        )
        stages[name]["steps_trained"] = steps
    train_seconds = time.perf_counter() - start
    final = stages[list(stages)[-1]]
    metrics = dict(
        heldout=final,
        heldout_before=before,
        heldout_by_stage=stages,
        train_records=len(train_kept),
        eval_records=len(eval_kept),
        dropped_records=int(len(train_records) - len(train_kept) + len(eval_records) - len(eval_kept)),
        train_steps_labelled=int((train_batch.labels != IGNORE).sum()),
        train_good_share=float((train_batch.labels == 1).sum() / (train_batch.labels != IGNORE).sum()),
        sequence_width=int(train_batch.input_ids.shape[1]),
        data_seconds=data_seconds,
        train_seconds=train_seconds,
    )
    from purejax.models import export_pretrained

    export_pretrained(
        model, tokenizer, out_dir, {MARKER: dict(config=config.to_dict(), metrics=metrics, history=history)}
    )
    return metrics
