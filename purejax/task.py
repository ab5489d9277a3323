"""What a run trains on, besides its config: models, tokenizer, prompts and reward scorers.

A `Task` is built by `purejax.tasks.build_task(config)` (local HF checkpoints, or the
built-in arithmetic miniature) and consumed by the trainer, which never looks at where it
came from. Prompt encoding and the PRM's step token live here because the trainer, the
evaluator and the PRM data pipeline all need them the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from purejax.data import Prompt, format_prompt


@dataclasses.dataclass
class Task:
    """Everything a run needs besides the config.

    scorers: the models (or host-side stand-ins) that reward sources are handed, by the
    name a source declares (`register_source(..., scorer="prm")`), e.g. {"prm": PRMScorer}.
    """

    policy: Any  # purejax.models.Decoder (causal LM)
    tokenizer: Any  # HF tokenizer shared by the policy and the scorers
    train_prompts: list[Prompt]
    eval_prompts: list[Prompt]
    scorers: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def encode_prompts(
    tokenizer, prompts: Sequence[Prompt], template: str, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompt ids and mask [N, width]; prompts longer than `width` raise."""
    texts = [format_prompt(template, p.question) for p in prompts]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = np.full((len(texts), width), tokenizer.pad_token_id or 0, np.int32)
    mask = np.zeros((len(texts), width), bool)
    for i, row in enumerate(encoded):  # host-side, once per run
        if len(row) > width:
            raise ValueError(
                f"prompt {prompts[i].id} has {len(row)} tokens > rollout.max_prompt_len="
                f"{width}; raise rollout.max_prompt_len or filter the dataset."
            )
        if row:
            ids[i, width - len(row) :] = row
            mask[i, width - len(row) :] = True
    return ids, mask


def step_token_id(tokenizer, step_token: str) -> int:
    """The id of the PRM's step token (PURE_SPEC §2), which must be exactly one token: every
    step end is replaced by it and the PRM is read at that one position."""
    ids = tokenizer(step_token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(
            f"prm.step_token={step_token!r} is {len(ids)} tokens of this tokenizer; it must be exactly "
            f"one token of the policy's tokenizer (PURE uses '\\n')."
        )
    return int(ids[0])
