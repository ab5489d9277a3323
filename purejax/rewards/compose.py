"""Combining the configured reward sources into what the advantage code consumes.

For B responses of padded width T (PURE_SPEC §4, §5):

    step_r_bt  = sum_{step sources s} w_s r_s,bt
    dense_r_bt = sum_{sequence sources s, baseline 'shared'} w_s v_s,b [t = last valid token]
    seq_r_b    = sum_{sequence sources s, baseline 'rloo'} w_s v_s,b

Step sources (the PRM) go through the credit transform (soft-min) and share
the group baseline of the credit assignment (e.g. `token_mean`). 'shared'
sequence sources (the verl code's VR) share that baseline too, but verl adds
them to the token scores AFTER the transform, so they are dense rewards, never
re-weighted by the softmax. 'rloo' sequence sources (the paper's VR) get their
own plain RLOO. All three feed
`purejax.pure_advantages(step_r_bt, ..., seq_r_b=seq_r_b, dense_r_bt=dense_r_bt + KL)`.
A source contributes 0 on rows where it does not apply. Raw values are kept per source,
before weighting, with the mask of rows they apply to, for logging.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from purejax.rewards.sources import COMMON_DEFAULTS, SOURCE_TYPES, TokenBatch, applies_mask, host_rows


class ComposedRewards(NamedTuple):
    step_r_bt: np.ndarray  # float32[B, T], step sources: transformed by the credit assignment
    seq_r_b: np.ndarray  # float32[B], 'rloo' sequence sources
    dense_r_bt: np.ndarray  # float32[B, T], 'shared' sequence sources on the last valid token
    raw: dict[str, np.ndarray]  # name -> float32[B] (sequence) or [B, T] (step), unweighted
    applies: dict[str, np.ndarray]  # name -> bool[B]
    levels: dict[str, str]  # name -> "step" | "sequence"


def _source_settings(name: str, spec) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(type, common settings, type params) of one config entry, defaults filled in."""
    spec = dict(spec.items()) if hasattr(spec, "items") else dict(spec)
    kind = spec.get("type")
    if kind not in SOURCE_TYPES:
        raise ValueError(
            f"rewards.{name}.type: unknown reward source type {kind!r}; allowed "
            f"values are {sorted(SOURCE_TYPES)}."
        )
    source = SOURCE_TYPES[kind]
    common = {k: spec.get(k, d) for k, d in {**COMMON_DEFAULTS, "level": source.level}.items()}
    params = dict(source.params)
    for key in params:
        if key in spec:
            value = spec[key]
            params[key] = dict(value.items()) if hasattr(value, "items") else value
    return kind, common, params


def _scorer(name: str, source, scorers: Mapping[str, Any]):
    if source.scorer is None:
        return ()
    if scorers.get(source.scorer) is None:
        raise ValueError(
            f"compose_rewards: reward source {name!r} ({source.name}) needs the scorer "
            f"{source.scorer!r}; pass scorers={{{source.scorer!r}: ...}} (for a PRM: "
            "purejax.rewards.prm.scorer_for(model, step_token_id))."
        )
    return (scorers[source.scorer],)


def _is_dense(common: Mapping[str, Any]) -> bool:
    """A 'shared' sequence source: added after the credit transform (verl's VR)."""
    return common["level"] == "sequence" and common["baseline"] == "shared"


def dense_source_names(sources: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the sources `compose_rewards` puts in `dense_r_bt`."""
    return tuple(name for name, spec in sources.items() if _is_dense(_source_settings(name, spec)[1]))


def compose_rewards(
    sources: Mapping[str, Any],
    *,
    texts: Sequence[str],
    truths: Sequence[str | None],
    response_mask,
    prompt_index,
    step: int = 0,
    seed: int = 0,
    tokens: TokenBatch | None = None,
    scorers: Mapping[str, Any] | None = None,
) -> ComposedRewards:
    """Scores a batch with every configured source and combines them.

    Args:
      sources: `config.rewards`: name -> {type, weight, applies_to, fraction,
        level, baseline, type params}; validate it with `purejax.config.validate`.
      texts: B decoded responses.
      truths: B ground truths, None where the prompt has none (training data must
        come from `purejax.data.load_train_prompts`, which has no ref_answer).
      response_mask: bool[B, T] valid response tokens.
      prompt_index: int[B] dataset index of each row's prompt.
      step, seed: make subsampling and noise reproducible.
      tokens: a TokenBatch, needed by model sources (the PRM) and by host step sources.
      scorers: name -> scorer, for the sources that declare one (the 'prm' source
        needs {"prm": PRMScorer}).

    Returns:
      ComposedRewards(step_r_bt, seq_r_b, dense_r_bt, raw, applies, levels).
    """
    mask_bt = np.asarray(response_mask).astype(bool)
    if mask_bt.ndim != 2:
        raise ValueError(f"compose_rewards: `response_mask` must be [B, T], got shape {mask_bt.shape}.")
    batch, width = mask_bt.shape
    prompt_index = np.asarray(prompt_index)
    for arg, n in (("texts", len(texts)), ("truths", len(truths)), ("prompt_index", prompt_index.shape[0])):
        if n != batch:
            raise ValueError(
                f"compose_rewards: `{arg}` has {n} rows but response_mask has "
                f"{batch}; pass one entry per response."
            )
    lengths_b = mask_bt.sum(axis=1)
    # One-hot of the last valid token of each row; all-zero for an empty row.
    last_bt = np.zeros((batch, width), dtype=np.float32)
    has_token = lengths_b > 0
    last_t = width - 1 - np.argmax(mask_bt[:, ::-1], axis=1)
    last_bt[np.flatnonzero(has_token), last_t[has_token]] = 1.0
    has_answer_b = np.array([isinstance(t, str) and t.strip() != "" for t in truths], dtype=bool)

    step_r_bt = np.zeros((batch, width), dtype=np.float32)
    seq_r_b = np.zeros(batch, dtype=np.float32)
    dense_r_bt = np.zeros((batch, width), dtype=np.float32)
    raw, applies, levels = {}, {}, {}
    scorers = scorers or {}
    for name, spec in sources.items():
        kind, common, params = _source_settings(name, spec)
        source = SOURCE_TYPES[kind]
        scorer = _scorer(name, source, scorers)
        if tokens is None and (source.kind == "model" or source.level == "step"):
            raise ValueError(f"compose_rewards: reward source {name!r} ({kind}) needs `tokens` (a TokenBatch).")
        applies_b = applies_mask(
            name, common["applies_to"], common["fraction"], has_answer_b, prompt_index, seed
        )
        if source.kind == "model":
            values = np.asarray(source.fn(tokens, *scorer, **params), dtype=np.float32)
            values = values * applies_b[:, None] * mask_bt
        else:
            rows = np.flatnonzero(applies_b)
            shape = (batch, width) if source.level == "step" else (batch,)
            values = np.zeros(shape, dtype=np.float32)
            if rows.size:
                selected = host_rows(texts, truths, lengths_b, prompt_index, step, seed, rows, tokens)
                got = np.asarray(source.fn(selected, *scorer, **params), dtype=np.float32)
                if got.shape != (rows.size, *shape[1:]):
                    raise ValueError(
                        f"reward source {name!r} ({kind}) returned shape {got.shape} for {rows.size} "
                        f"rows; host sources return float[N] (sequence) or float[N, T] (step)."
                    )
                values[rows] = got
        weight = np.float32(common["weight"])
        if common["level"] == "step":
            step_r_bt += weight * values
        elif _is_dense(common):
            dense_r_bt += weight * values[:, None] * last_bt
        else:
            seq_r_b += weight * values
        raw[name], applies[name], levels[name] = values, applies_b, common["level"]
    return ComposedRewards(step_r_bt, seq_r_b, dense_r_bt, raw, applies, levels)


def reward_metrics(composed: ComposedRewards, step_end_bt=None) -> dict[str, float]:
    """`reward/<name>/mean` (raw, unweighted) over the rows where the source applies,
    and `reward/<name>/applies` (fraction of rows). Step sources average over
    the step ends of those rows (`step_end_bt` bool[B, T] required for them).
    Sources applying to no row report mean 0 (and applies 0)."""
    out = {}
    for name, values in composed.raw.items():
        applies_b = composed.applies[name]
        if composed.levels[name] == "step":
            if step_end_bt is None:
                raise ValueError(f"reward_metrics: step source {name!r} needs `step_end_bt`.")
            where = np.asarray(step_end_bt).astype(bool) & applies_b[:, None]
        else:
            where = applies_b
        count = int(where.sum())
        out[f"reward/{name}/mean"] = float(values[where].sum() / count) if count else 0.0
        out[f"reward/{name}/applies"] = float(applies_b.mean()) if applies_b.size else 0.0
    return out
