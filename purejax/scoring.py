"""Scoring one seed's rollout: the composed rewards, and the statistics the monitors watch.

    scored = score_rollout(config, task, step, seed, prompt_index, prompt_ids, prompt_mask,
                           tokens, mask, step_end)
    record = rollout_record(config, monitor, scored, tokens, mask, step_end, eos_ids)

What the policy is paid per response is G_0 under the run's credit mode, computed by
`purejax.credit.returns` itself, so a new credit mode is reported as it is trained.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejax import credit
from purejax import monitors
from purejax.rewards import compose as compose_lib
from purejax.rewards import verifier
from purejax.rewards.sources import SOURCE_TYPES, TokenBatch
from purejax.rollout import decode


class Scored(NamedTuple):
    texts: list[str]  # decoded responses
    truths: list[str | None]  # ground truths (None where the prompt has none)
    composed: compose_lib.ComposedRewards


def score_rollout(config, task, step, seed, prompt_index, prompt_ids, prompt_mask, tokens, mask, step_end) -> Scored:
    """One seed's responses [B, N] decoded and scored by every configured reward source."""
    texts = decode(task.tokenizer, tokens, mask)
    truths = [task.train_prompts[i].answer for i in prompt_index]
    composed = compose_lib.compose_rewards(
        config.rewards,
        texts=texts,
        truths=truths,
        response_mask=mask,
        prompt_index=prompt_index,
        step=step,
        seed=seed,
        tokens=TokenBatch(prompt_ids, prompt_mask, tokens, mask, step_end),
        scorers=task.scorers,
    )
    return Scored(texts, truths, composed)


@functools.partial(jax.jit, static_argnames=("mode",))
def response_values(r_bt, end_bt, mask_bt, *, mode, temperature, discount):
    """(paid [B], worst [B]): each response's G_0 under credit `mode` (what the policy is paid)
    and under min-form (its worst step reward, the PRM's verdict, comparable across modes)."""
    paid = jax.vmap(lambda r, e, m: credit.returns(r, e, m, mode, temperature, discount)[0])
    worst = jax.vmap(lambda r, e, m: credit.min_form_returns(r, e, m)[0])
    return paid(r_bt, end_bt, mask_bt), worst(r_bt, end_bt, mask_bt)


def process_reward(config, composed, step_end, mask) -> tuple[np.ndarray, np.ndarray]:
    """(paid, worst) per response of the summed unweighted step sources; worst is NaN when
    no step source is configured (e.g. VR only)."""
    step_r = np.zeros(step_end.shape, np.float32)
    for name, level in composed.levels.items():
        if level == "step":
            step_r += np.asarray(composed.raw[name], np.float32)
    a = config.advantage
    paid, worst = response_values(
        jnp.asarray(step_r),
        jnp.asarray(step_end, bool),
        jnp.asarray(mask, bool),
        mode=str(a.credit),
        temperature=float(a.temperature),
        discount=float(a.discount),
    )
    worst = np.asarray(worst, np.float64)
    if "step" not in composed.levels.values():
        worst = np.full_like(worst, np.nan)
    return np.asarray(paid), worst


def answer_correct(config, scored: Scored) -> np.ndarray:
    """1/0 where a ground truth exists (NaN elsewhere), reusing a configured answer verifier
    that covers every answered prompt, else verifying here."""
    composed, texts, truths = scored.composed, scored.texts, scored.truths
    vr = np.full(len(texts), np.nan)
    for name in composed.levels:
        spec = config.rewards[name]
        source = SOURCE_TYPES[spec.type]
        if source.answer_correct is not None and spec.applies_to == "with_answer" and spec.fraction == 1.0:
            rows = composed.applies[name]
            vr[rows] = source.answer_correct(composed.raw[name][rows], spec).astype(float)
            return vr
    rows = [i for i, t in enumerate(truths) if t is not None]
    if rows:
        vr[rows] = verifier.verify_batch([texts[i] for i in rows], [truths[i] for i in rows])
    return vr


def rollout_record(config, monitor, scored: Scored, tokens, mask, step_end, eos_ids) -> dict:
    """One seed's rollout statistics, hacking alarms and per-source reward metrics (`train/...`)."""
    lengths = mask.sum(1)
    truncated = lengths == mask.shape[1]
    last_tokens = tokens[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
    truncated &= ~np.isin(last_tokens, eos_ids)
    paid, worst = process_reward(config, scored.composed, step_end, mask)
    stats = monitors.rollout_stats(
        response_mask=mask,
        step_end=step_end,
        truncated=truncated,
        process_reward_sum=paid,
        prm_min=worst,
        vr_correct=answer_correct(config, scored),
        texts=scored.texts,
    )
    record = {f"train/{k}": v for k, v in stats.items()}
    record.update({f"train/{k}": v for k, v in monitor.update(stats).items()})
    metrics = compose_lib.reward_metrics(scored.composed, step_end_bt=step_end)
    record.update({f"train/{k}": v for k, v in metrics.items()})
    return record


def sample_rows(task, prompt_index, scored: Scored, every: int) -> list[dict]:
    """Rows for samples/step_N.jsonl: every `every`-th response (the first sample of each
    prompt) with its prompt and raw reward per source."""
    return [
        {
            "prompt": task.train_prompts[prompt_index[b]].question,
            "response": scored.texts[b],
            "rewards": {n: float(np.sum(v[b])) for n, v in scored.composed.raw.items()},
        }
        for b in range(0, len(scored.texts), every)
    ]
