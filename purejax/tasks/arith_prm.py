"""The arithmetic miniature's learned PRM: step-labelled data from the oracle, and a cached PRM.

    records = step_records(problems, texts)               # TRL format, labelled by the oracle
    path = learned_prm(config)                            # trained on first use, then cached

Data (TRL stepwise supervision, `purejax.prm_data`). Responses of two sources,
each step labelled by the oracle (`purejax.tasks.arith.label_step`):

    traces   `arith.trace_mix` of correct / one-error / filler traces
    policy   responses sampled from the warm-start policy at temperature 1: the
             distribution the PRM scores at RL time

    oracle label   step label   why
    correct        True
    wrong          False
    answer         True iff its boxed integer is the problem's answer
    filler         data.arith.filler_label (default True): a step that does no
                   work makes no error either; labelled like PRM800K's neutral
                   steps would be under neutral_is_positive. With False the PRM
                   is taught to penalise thinking steps.
    empty          False (no work, and never part of a correct trace)

Each record also carries `step_kinds` (the oracle label, with answer split into
answer_right / answer_wrong, prefixed "policy:" for sampled responses) for
per-kind metrics. Train records come from train problems only, held-out
records from held-out problems (`arith.split_of`), so the PRM is evaluated on
questions it never saw.

The learned PRM is cached like the warm start (`purejax.tasks.warmstart`):
    <cache root>/arith_prm/<hash of the PRM config, the warm start's hash, ARITH_PRM_VERSION>
written atomically (a temporary directory renamed into place when complete).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import numpy as np

from purejax import prm_training
from purejax.cache import building, cache_root
from purejax.tasks import arith, arith_prm_config, warmstart

ARITH_PRM_VERSION = 1
CONFIG = arith_prm_config.__file__  # a package file, so any install has it
FORMAT = "builtin:arith"  # config.data.format of the generated data
WARM_START = "builtin:arith"  # config.model.path of the warm-start policy


def load_config(source: str, overrides=()):
    """A PRM training config (`purejax.prm_training.load_config`) that may also use FORMAT."""
    return prm_training.load_config(source, overrides, formats=prm_training.DATA_FORMATS + (FORMAT,))


def resolve(config) -> tuple[str | None, object]:
    """(start model path or None, data or None) for `prm_training.train` when the config names
    the miniature: the cached warm start, and the generated records (a function of the tokenizer)."""
    path = None
    if config.model.path == WARM_START:
        path = warmstart.warm_start(warmstart.load_sft_config(warmstart.SFT_CONFIG), progress=True).path
    data = None
    if config.data.format == FORMAT:
        data = lambda tokenizer: train_and_heldout_records(config, tokenizer)  # noqa: E731
    return path, data


def step_labels(steps: Sequence[str], problem: arith.Problem, filler_label: bool = True):
    """(labels, kinds) of the steps of one response (the table in the module docstring)."""
    labels, kinds = [], []
    for step in steps:
        kind = arith.label_step(step)
        if kind == "answer":
            right = arith.boxed_integer(step) == problem.answer
            kind, label = ("answer_right", True) if right else ("answer_wrong", False)
        else:
            label = {"correct": True, "wrong": False, "filler": bool(filler_label), "empty": False}[kind]
        labels.append(label)
        kinds.append(kind)
    return labels, kinds


def step_records(
    problems: Sequence[arith.Problem], texts: Sequence[str], filler_label: bool = True, source: str = ""
) -> list[dict]:
    """One TRL record per (problem, response text), steps split at "\\n\\n" and labelled."""
    out = []
    for problem, text in zip(problems, texts):
        steps = arith.split_steps(text)
        labels, kinds = step_labels(steps, problem, filler_label)
        prefix = f"{source}:" if source else ""
        out.append(
            dict(
                prompt=problem.prompt,
                completions=steps,
                labels=labels,
                step_kinds=[prefix + k for k in kinds],
            )
        )
    return out


def _records(config, split: str, n_traces: int, n_policy: int, policy, tokenizer, spec) -> list[dict]:
    a = config.data.arith
    seed = int(config.seed)
    problems = arith.make_problems(split, max(n_traces, n_policy), seed=seed, spec=spec)
    texts, _ = arith.trace_mix(problems[:n_traces], dict(a.mix), seed=seed + (split == "heldout"))
    records = step_records(problems[:n_traces], texts, a.filler_label)
    if n_policy:
        sampled = warmstart.generate(
            policy,
            tokenizer,
            [p.prompt for p in problems[:n_policy]],
            a.max_new_tokens,
            batch_size=config.eval.batch_size,
            temperature=a.temperature,
            seed=seed + 1000 * (split == "heldout"),
        )
        records += step_records(problems[:n_policy], sampled, a.filler_label, source="policy")
    return records


def train_and_heldout_records(config, tokenizer) -> tuple[list[dict], list[dict]]:
    """(train, held-out) records of config.data.arith: traces and warm-start samples."""
    from purejax.models import load_pretrained

    a = config.data.arith
    sft_config = warmstart.load_sft_config(warmstart.SFT_CONFIG)
    spec = warmstart.spec_from_config(sft_config)
    policy = None
    if a.policy_train or a.policy_eval:
        policy = load_pretrained(warmstart.warm_start(sft_config, progress=False).path)
    train = _records(config, "train", a.train_traces, a.policy_train, policy, tokenizer, spec)
    heldout = _records(config, "heldout", a.eval_traces, a.policy_eval, policy, tokenizer, spec)
    return train, heldout


# ---------------------------------------------------------------- the cached learned PRM


def config_hash(config) -> str:
    """12 hex digits of what `config` trains: every field but cache_dir, the warm start, the version."""
    values = config.to_dict()
    values.pop("cache_dir", None)
    blob = json.dumps(
        dict(
            version=ARITH_PRM_VERSION,
            warmstart=warmstart.config_hash(warmstart.load_sft_config(warmstart.SFT_CONFIG)),
            config=values,
        ),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_path(config) -> str:
    return os.path.join(cache_root(config.cache_dir), "arith_prm", config_hash(config))


def learned_prm(config=None, *, progress: bool = True, force: bool = False) -> tuple[str, dict, bool]:
    """(directory, metrics, trained) of the miniature's learned PRM (configs/arith_prm.py by default).

    Reuses the cached directory when it is complete; otherwise trains into a
    temporary directory renamed into place (`purejax.prm_training.train`).
    """
    config = config if config is not None else load_config(CONFIG)
    final = cache_path(config)
    marker = os.path.join(final, prm_training.MARKER)
    with building(final):  # processes asking at once take turns: one trains, the others read
        if not force and os.path.isfile(marker):
            with open(marker, encoding="utf-8") as f:
                return final, json.load(f)["metrics"], False
        path, data = resolve(config)
        metrics = prm_training.train(config, final, progress=progress, model_path=path, data=data)
        return final, metrics, True


def probe_texts(
    problems: Sequence[arith.Problem], seed: int = 0
) -> dict[str, list[tuple[arith.Problem, str]]]:
    """Responses that probe the PRM weaknesses PURE documents (PURE_SPEC §8), per probe name.

    no_work_right / no_work_wrong: a lone boxed answer, right or off by one.
    filler_first / filler_middle: a correct trace with one filler step first / before the answer.
    correct: the plain correct trace (the reference).
    """
    rng = np.random.default_rng([seed, 17])
    out = {k: [] for k in ("correct", "filler_first", "filler_middle", "no_work_right", "no_work_wrong")}
    for p in problems:
        steps = arith.render_trace(p, "correct").split(arith.SEPARATOR)
        phrase = arith.FILLER_PHRASES[int(rng.integers(len(arith.FILLER_PHRASES)))]
        out["correct"].append((p, arith.SEPARATOR.join(steps)))
        out["filler_first"].append((p, arith.SEPARATOR.join([phrase] + steps)))
        out["filler_middle"].append((p, arith.SEPARATOR.join(steps[:-1] + [phrase, steps[-1]])))
        out["no_work_right"].append((p, arith.answer_step(p.answer)))
        out["no_work_wrong"].append((p, arith.answer_step(p.answer + 1)))
    return out


def probe_scores(prm_path: str, problems: Sequence[arith.Problem], seed: int = 0) -> dict[str, dict]:
    """Mean step scores of the learned PRM and the scripted PRM on `probe_texts`.

    Per probe: the mean score 2 p(+) - 1 of the probed step (the filler step, the
    lone answer; the answer step of `correct`) and of the response's worst step
    (its min-form value), learned (read exactly as PRMScorer reads it: the
    'policy' layout of purejax.prm_data) and scripted (shown the problem, noise 0).
    """
    import jax.numpy as jnp
    from transformers import AutoTokenizer

    from purejax import prm_data
    from purejax.models import load_pretrained
    from purejax.tasks.scripted_prm import ScriptedPRMScores, step_scores

    model = load_pretrained(prm_path, dtype=jnp.float32)
    tokenizer = AutoTokenizer.from_pretrained(prm_path)
    out = {}
    for name, items in probe_texts(problems, seed).items():
        steps = [text.split(arith.SEPARATOR) for _, text in items]
        records = [
            dict(prompt=p.prompt, completions=s, labels=[True] * len(s)) for (p, _), s in zip(items, steps)
        ]
        batch, kept = prm_data.encode_records(records, tokenizer, drop_invalid=True)
        p_pos = prm_training.positive_probs(model, batch)
        flat = 2 * p_pos[batch.labels != prm_data.IGNORE] - 1
        learned, i = [], 0
        for k in kept:
            learned.append(flat[i : i + len(steps[k])])
            i += len(steps[k])
        scripted = [step_scores(steps[k], ScriptedPRMScores(noise=0.0), problem=items[k][0]) for k in kept]
        probed = [s.index(next(x for x in s if not x[0].isdigit())) for s in (steps[k] for k in kept)]
        out[name] = dict(
            n=len(kept),
            learned_probed=float(np.mean([r[j] for r, j in zip(learned, probed)])),
            scripted_probed=float(np.mean([r[j] for r, j in zip(scripted, probed)])),
            learned_min=float(np.mean([r.min() for r in learned])),
            scripted_min=float(np.mean([r.min() for r in scripted])),
        )
    return out
