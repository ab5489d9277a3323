"""Prompt datasets: the PURE training prompts and the five evaluation benchmarks.

Every file is normalised to one record type, `Prompt(id, question, answer)`,
answer None when the prompt has no ground truth. The training file also holds
`ref_answer`, a reference answer for *evaluation only*: it must never reach the
training reward, so `Prompt` has no field for it and it can only be read through
`load_reference_answers`, which returns a separate mapping.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

# The project's data sit in shared/ beside the repository; PUREJAX_DATA_DIR overrides.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("PUREJAX_DATA_DIR", os.path.join(os.path.dirname(_REPO), "shared", "data", "math"))
TRAIN_FILE = "pure_train_8k_879_answers.json"
BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")

# The Qwen2.5-Math chat template PURE trains and evaluates with.
DEFAULT_PROMPT_TEMPLATE = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)


class DataError(ValueError):
    """A dataset file is missing or a record lacks a field; names file, record and field."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt. `answer` is the ground truth the reward may use, or None."""

    id: str
    question: str
    answer: str | None


def format_prompt(template: str, question: str) -> str:
    """`template` with `{question}` filled in (literal braces written as `{{` `}}`)."""
    return template.format(question=question)


def _read(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found (set PUREJAX_DATA_DIR or pass the full path).")
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            rows = []
            for line_no, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}: record {len(rows)} (line {line_no + 1}) is not valid JSON: {e.msg}."
                    ) from None
        else:
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: not valid JSON: {e.msg} (line {e.lineno}).") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}: record {i} is a {type(row).__name__}, expected an object.")
    return rows


def _field(path: str, i: int, row: dict, name: str, types=(str,), allow_empty=False) -> Any:
    if name not in row:
        raise DataError(f"{path}: record {i} has no field {name!r} (fields: {sorted(row)}).")
    value = row[name]
    if not isinstance(value, types) or (isinstance(value, str) and not value.strip() and not allow_empty):
        raise DataError(
            f"{path}: record {i} field {name!r} must be a non-empty "
            f"{'/'.join(t.__name__ for t in types)}, got {value!r:.60}."
        )
    return value


def _answer_or_none(value: str) -> str | None:
    return None if value.strip() in ("null", "None", "") else value


def load_train_prompts(path: str | None = None) -> list[Prompt]:
    """The PURE training prompts; `answer` None where the file says "null".

    The default file has 8,523 prompts, 879 with an answer (PURE_SPEC §4).
    `ref_answer` is deliberately not read (see `load_reference_answers`).
    """
    path = path or os.path.join(DATA_DIR, TRAIN_FILE)
    prompts = []
    for i, row in enumerate(_read(path)):
        question = _field(path, i, row, "question")
        answer = _field(path, i, row, "answer")
        prompts.append(Prompt(f"train/{i}", question, _answer_or_none(answer)))
    return prompts


def load_reference_answers(path: str | None = None) -> dict[str, str | None]:
    """EVALUATION ONLY: prompt id -> `ref_answer` of the training file (None if "null").

    For measuring, e.g., accuracy on training prompts without an answer. Never
    pass these to a training reward: that would turn PRM-only runs into VR runs.
    """
    path = path or os.path.join(DATA_DIR, TRAIN_FILE)
    return {
        f"train/{i}": _answer_or_none(_field(path, i, row, "ref_answer", allow_empty=True))
        for i, row in enumerate(_read(path))
    }


def _minerva_answer(path, i, row) -> str:
    from purejax.rewards.answers import extract_answer

    solution = _field(path, i, row, "solution")
    answer = extract_answer(solution)
    if answer is None:
        raise DataError(f"{path}: record {i} field 'solution' has no \\boxed{{...}} answer.")
    return answer


def _number_answer(path, i, row) -> str:
    value = _field(path, i, row, "answer", (str, int, float))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC23 stores 27 as 27.0
    return str(value)


def _olympiad_answer(path, i, row) -> str:
    answers = _field(path, i, row, "final_answer", (list,))
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DataError(
            f"{path}: record {i} field 'final_answer' must be a non-empty list of "
            f"strings, got {answers!r:.60}."
        )
    return ", ".join(a.strip().strip("$").strip() for a in answers)


# name -> (question field, id field, answer getter)
_BENCHMARK_FORMATS: dict[str, tuple[str, str, Callable]] = {
    "math500": ("problem", "unique_id", lambda p, i, r: _field(p, i, r, "answer")),
    "minerva_math": ("problem", "idx", _minerva_answer),
    "olympiadbench": ("question", "id", _olympiad_answer),
    "aime24": ("problem", "id", _number_answer),
    "amc23": ("problem", "id", _number_answer),
}


def load_benchmark(name: str, path: str | None = None) -> list[Prompt]:
    """One of BENCHMARKS as Prompts (answers always present).

    Sizes of the shipped files: math500 500, minerva_math 272, olympiadbench
    675, aime24 30, amc23 40. Minerva's answer is the last boxed answer of its
    solution; OlympiadBench's is its `final_answer` list joined by ", ".
    """
    if name not in _BENCHMARK_FORMATS:
        import difflib

        close = difflib.get_close_matches(name, BENCHMARKS, n=1)
        raise DataError(
            f"load_benchmark: unknown benchmark {name!r}; allowed values are "
            f"{', '.join(BENCHMARKS)}." + (f" Did you mean {close[0]!r}?" if close else "")
        )
    path = path or os.path.join(DATA_DIR, f"{name}.jsonl")
    question_field, id_field, get_answer = _BENCHMARK_FORMATS[name]
    prompts = []
    for i, row in enumerate(_read(path)):
        question = _field(path, i, row, question_field)
        record_id = _field(path, i, row, id_field, (str, int))
        prompts.append(Prompt(f"{name}/{record_id}", question, get_answer(path, i, row)))
    return prompts
