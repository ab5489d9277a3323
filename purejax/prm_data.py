"""Step-labelled PRM data: TRL's stepwise-supervision format, PRM800K conversion, tokenisation.

A record is TRL's stepwise-supervision row (`trl.PRMTrainer`'s input):

    {"prompt": "Question: ...", "completions": ["step 1", "step 2", ...], "labels": [true, false, ...]}

one boolean label per step (extra keys are kept and ignored, e.g. `step_kinds`).
Files are JSONL (one record a line) or JSON (a list of records).

`encode_records` turns records into a fixed-shape `PRMBatch`: [prompt left-padded ;
response right-padded], the layout `purejax.rewards.prm.prm_step_rewards` feeds
the PRM at RL time, with each step's label on its step token and every other
position ignored (-100, as TRL). Two layouts, both labelling the step token
(config prm.step_token, "\\n"):

    'policy'  the steps joined by the policy's separator ("\\n\\n") and tokenised as
              one response + EOS; step ends found by `purejax.steps.step_end_mask`
              and replaced by the step token with `purejax.rewards.prm.prm_inputs`.
              Exactly the ids and positions PRMScorer reads at RL time (the
              arithmetic miniature trains this way).
    'trl'     TRL's `PRMTrainer.tokenize_row`: each step tokenised on its own,
              followed by the step token, labelled there; BOS before the prompt
              when the tokenizer has one. The paper's PRM800K training (PURE_SPEC
              §2); at RL time a merged separator such as ".\\n\\n" is replaced
              whole, so the PRM reads "... step\\n" without its "." (the known
              wrinkle of §2).

`prm800k_to_trl` converts OpenAI's PRM800K rows (label.steps[].completions[].rating
in {-1, 0, 1}, chosen_completion, human_completion) the way TRL's
examples/datasets/prm800k.py does: every completion not chosen ends a record
(its prefix + it), the chosen path continues, and the full path is a record.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from purejax import atomic
from purejax.task import step_token_id

IGNORE = -100  # label of positions without a step label (TRL / torch CrossEntropyLoss convention)
LAYOUTS = ("policy", "trl")
RECORD_KEYS = ("prompt", "completions", "labels")


class PRMBatch(NamedTuple):
    """Encoded records, numpy. S = P + T: P prompt columns (left-padded), T response columns."""

    input_ids: Any  # int32[N, S]
    attention_mask: Any  # bool[N, S]
    labels: Any  # int32[N, S]: 1 (good step) / 0 (bad step) on step tokens, IGNORE elsewhere


class PRMDataError(ValueError):
    """A bad record or file; the message names the record (file:line) and the field."""


# ---------------------------------------------------------------- records


def check_record(record: Any, where: str) -> dict:
    """The record if it is a valid TRL stepwise-supervision row, else one PRMDataError naming it."""
    fix = 'expected {"prompt": str, "completions": [str, ...], "labels": [bool, ...]}'
    if not isinstance(record, dict):
        raise PRMDataError(f"{where}: a record must be a JSON object, got {type(record).__name__}; {fix}.")
    for key in RECORD_KEYS:
        if key not in record:
            raise PRMDataError(f"{where}: missing key {key!r}; {fix}.")
    if not isinstance(record["prompt"], str):
        raise PRMDataError(f"{where}: 'prompt' must be a string, got {type(record['prompt']).__name__}.")
    steps, labels = record["completions"], record["labels"]
    if not isinstance(steps, list) or not steps:
        raise PRMDataError(f"{where}: 'completions' must be a non-empty list of step strings, got {steps!r}.")
    bad = [i for i, s in enumerate(steps) if not isinstance(s, str)]
    if bad:
        raise PRMDataError(f"{where}: 'completions'[{bad[0]}] must be a string, got {steps[bad[0]]!r}.")
    if not isinstance(labels, list) or len(labels) != len(steps):
        n = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise PRMDataError(
            f"{where}: 'labels' must be a list with one label per step: {len(steps)} completions "
            f"but labels is {n}."
        )
    bad = [i for i, v in enumerate(labels) if not (isinstance(v, bool) or v in (0, 1))]
    if bad:
        raise PRMDataError(
            f"{where}: 'labels'[{bad[0]}] must be true/false (or 1/0), got {labels[bad[0]]!r}."
        )
    return record


def load_records(path: str) -> list[dict]:
    """Validated records of a .jsonl (one per line) or .json (a list) file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PRM data file {path!r} not found.")
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            rows = json.load(f)
            if not isinstance(rows, list):
                raise PRMDataError(f"{path}: a .json PRM data file must hold a list of records.")
            return [check_record(r, f"{path} record {i}") for i, r in enumerate(rows)]
        out = []
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PRMDataError(f"{path}:{i}: not valid JSON ({e}).") from None
                out.append(check_record(row, f"{path}:{i}"))
        return out


def write_records(records: Iterable[dict], path: str) -> None:
    """Writes records as JSONL atomically (a temp file renamed into place)."""
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in records))


# ---------------------------------------------------------------- PRM800K


def prm800k_to_trl(
    example: dict, neutral_is_positive: bool = False, where: str = "PRM800K row"
) -> list[dict]:
    """TRL records of one PRM800K row (TRL's examples/datasets/prm800k.py rules).

    A step rating of 1 is a good step, -1 a bad one; 0 ("neutral") is bad by
    default, as TRL converts it (rating == 1), good with `neutral_is_positive`.
    A human-written completion counts as good.
    """
    try:
        prompt = example["question"]["problem"]
        steps = example["label"]["steps"]
    except (KeyError, TypeError):
        raise PRMDataError(
            f"{where}: not a PRM800K row; expected keys question.problem and label.steps "
            f"(OpenAI prm800k/data/phase*_*.jsonl)."
        ) from None

    def good(rating) -> bool:
        return rating == 1 or (neutral_is_positive and rating == 0)

    out, path, path_labels = [], [], []
    for k, step in enumerate(steps):
        completions = step.get("completions")
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        if completions is None and human is None and chosen is None:
            break
        for i, completion in enumerate(completions or []):
            if i != chosen:  # an alternative not taken: the record ends with it
                out.append(
                    dict(
                        prompt=prompt,
                        completions=path + [completion["text"]],
                        labels=path_labels + [good(completion["rating"])],
                    )
                )
        if chosen is not None:
            if not 0 <= chosen < len(completions or []):
                raise PRMDataError(
                    f"{where}: label.steps[{k}].chosen_completion={chosen} but the step has "
                    f"{len(completions or [])} completions."
                )
            taken, label = completions[chosen]["text"], good(completions[chosen]["rating"])
        elif human is not None:
            taken, label = human["text"], True
        else:
            break
        path, path_labels = path + [taken], path_labels + [label]
    if path:
        out.append(dict(prompt=prompt, completions=path, labels=path_labels))
    return [check_record(r, f"{where} (converted)") for r in out]


def load_prm800k(path: str, neutral_is_positive: bool = False) -> list[dict]:
    """TRL records of a PRM800K .jsonl file (e.g. prm800k/data/phase2_train.jsonl)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PRM800K file {path!r} not found.")
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                out += prm800k_to_trl(json.loads(line), neutral_is_positive, where=f"{path}:{i}")
    return out


# ---------------------------------------------------------------- tokenisation


def _tokenize(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def _policy_responses(records, tokenizer, step_token: str, separator: str, eos: int):
    """(prompt ids, response ids, step-end positions) per record, the PRMScorer way."""
    from purejax.rewards.prm import prm_inputs
    from purejax.steps import separator_ids, step_end_mask_bt

    prompts = _tokenize(tokenizer, [r["prompt"] for r in records])
    responses = [
        ids + [eos] for ids in _tokenize(tokenizer, [separator.join(r["completions"]) for r in records])
    ]
    width = max(len(r) for r in responses)
    ids = np.zeros((len(records), width), np.int32)
    mask = np.zeros((len(records), width), bool)
    for i, r in enumerate(responses):
        ids[i, : len(r)], mask[i, : len(r)] = r, True
    ends = np.asarray(step_end_mask_bt(ids, mask, separator_ids(tokenizer, separator)))
    # The PRM's view of each response; prompts are unchanged by prm_inputs.
    empty = np.zeros((len(records), 0), np.int32)
    prm_ids = np.asarray(
        prm_inputs(empty, empty.astype(bool), ids, mask, ends, step_token_id(tokenizer, step_token))[0]
    )
    return (
        prompts,
        [prm_ids[i, : len(r)].tolist() for i, r in enumerate(responses)],
        [np.flatnonzero(e) for e in ends],
    )


def _trl_responses(records, tokenizer, step_token: str):
    """(prompt ids, response ids, step-end positions) per record, as TRL's tokenize_row."""
    step_id = step_token_id(tokenizer, step_token)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompts = [bos + p for p in _tokenize(tokenizer, [r["prompt"] for r in records])]
    flat = _tokenize(tokenizer, [s for r in records for s in r["completions"]])
    responses, ends, i = [], [], 0
    for r in records:
        ids, pos = [], []
        for step in flat[i : i + len(r["completions"])]:
            ids += step + [step_id]
            pos.append(len(ids) - 1)
        i += len(r["completions"])
        responses.append(ids)
        ends.append(np.asarray(pos))
    return prompts, responses, ends


def encode_records(
    records: Sequence[dict],
    tokenizer,
    *,
    layout: str = "policy",
    step_token: str = "\n",
    separator: str = "\n\n",
    max_prompt_len: int = 1024,
    max_response_len: int = 2048,
    drop_invalid: bool = False,
    pad_to: int = 8,
) -> tuple[PRMBatch, np.ndarray]:
    """Tokenises records into one fixed-shape PRMBatch (see the module docstring).

    P and T are the longest prompt and response rounded up to `pad_to` (one shape
    per call). A record whose prompt or response is too long, or (layout 'policy')
    whose joined steps do not tokenise into exactly one step end per label (a
    step containing the separator, e.g.), raises PRMDataError naming it, or is
    dropped when `drop_invalid`.

    Returns:
      (batch, kept): kept = indices of the encoded records, in order.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"encode_records: layout must be one of {LAYOUTS}, got {layout!r}.")
    if not records:
        raise PRMDataError("encode_records: no records to encode.")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = eos if pad is None else pad
    if layout == "policy":
        if eos is None:
            raise ValueError(
                "encode_records: layout 'policy' appends EOS; the tokenizer has no eos_token_id."
            )
        prompts, responses, ends = _policy_responses(records, tokenizer, step_token, separator, eos)
    else:
        prompts, responses, ends = _trl_responses(records, tokenizer, step_token)
    kept = []
    for i, (p, r, e) in enumerate(zip(prompts, responses, ends)):
        n = len(records[i]["labels"])
        problem = None
        if len(p) > max_prompt_len:
            problem = f"its prompt is {len(p)} tokens > max_prompt_len={max_prompt_len}"
        elif len(r) > max_response_len:
            problem = f"its response is {len(r)} tokens > max_response_len={max_response_len}"
        elif len(e) != n:
            problem = (
                f"its {n} completions joined by {separator!r} tokenise into {len(e)} steps (a step contains "
                f"the separator, or BPE merged across a boundary); use layout 'trl' or fix the steps"
            )
        if problem is None:
            kept.append(i)
        elif not drop_invalid:
            raise PRMDataError(f"record {i}: {problem} (or set drop_invalid to skip such records).")
    if not kept:
        raise PRMDataError(f"encode_records: all {len(records)} records were invalid (see drop_invalid).")
    width_p = -(-max(len(prompts[i]) for i in kept) // pad_to) * pad_to
    width_t = -(-max(len(responses[i]) for i in kept) // pad_to) * pad_to
    n = len(kept)
    ids = np.full((n, width_p + width_t), pad, np.int32)
    mask = np.zeros((n, width_p + width_t), bool)
    labels = np.full((n, width_p + width_t), IGNORE, np.int32)
    for row, i in enumerate(kept):  # host-side, once per data set
        p, r = prompts[i], responses[i]
        ids[row, width_p - len(p) : width_p], mask[row, width_p - len(p) : width_p] = p, True
        ids[row, width_p : width_p + len(r)], mask[row, width_p : width_p + len(r)] = r, True
        labels[row, width_p + ends[i]] = np.asarray(records[i]["labels"], np.int32)
    return PRMBatch(ids, mask, labels), np.asarray(kept, np.int64)
