"""Prompt datasets: the PURE training prompts, the five evaluation benchmarks, and any other set.

Every source is normalised to one record type, `Prompt(id, question, answer)`, answer None
when the prompt has no ground truth. The training file also holds `ref_answer`, a reference
answer for *evaluation only*: it must never reach the training reward, so `Prompt` has no
field for it and it can only be read through `load_reference_answers`, which returns a
separate mapping.

A source (`config.data.train_path`, each of `config.data.eval_paths`) is

* a local `.jsonl` (one JSON object per line), `.json` (a list of objects) or `.parquet`
  file (needs pyarrow, in the `hf` extra);
* a Hugging Face dataset id `ORG/NAME`, `ORG/NAME:SPLIT` or `ORG/NAME:CONFIG:SPLIT`, read
  with `datasets` (`pip install 'purejax[hf]'`), from the local cache when offline.

The shipped files (package data, `purejax/data_files/math/`, provenance and sha256 in its
`provenance.json`) are the defaults. Records are checked at load time: a file that is not
UTF-8, not JSON or empty, an answer that is a boolean, NaN or not text, and a repeated id
each raise DataError naming the file and the line (jsonl) or record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from typing import Any, Callable, NamedTuple

from purejax import hub

# Package data, so an installed (non-editable) purejax has them too.
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data_files", "math")
TRAIN_FILE = "pure_train_8k_879_answers.json"
BENCHMARKS = ("math500", "minerva_math", "olympiadbench", "aime24", "amc23")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")

# The Qwen2.5-Math chat template PURE trains and evaluates with.
DEFAULT_PROMPT_TEMPLATE = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
# With data.chat_template the tokenizer's own template gets this system message (the paper's).
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

# Columns tried, in order, when data.question_key / data.answer_key are "" (auto).
QUESTION_KEYS = ("question", "problem", "prompt")
ANSWER_KEYS = ("answer", "final_answer")
# A record's own id column, when every record has one (else ids are positions).
ID_KEYS = ("id", "unique_id", "idx")
# Answer strings that mean "no ground truth" in the PURE training file.
_NO_ANSWER = ("null", "None", "")


class DataError(ValueError):
    """A dataset is unreadable or a record is invalid; names the file, line or record, and field."""


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt. `answer` is the ground truth the reward may use, or None."""

    id: str
    question: str
    answer: str | None


class _Record(NamedTuple):
    where: str  # "FILE: line 3" (jsonl), "FILE: record 2" (json), "FILE: row 2" (parquet, HF)
    row: dict


def format_prompt(template: str, question: str) -> str:
    """`template` with `{question}` filled in (literal braces written as `{{` `}}`)."""
    return template.format(question=question)


# ---------------------------------------------------------------- reading sources


def _read_jsonl(path: str, raw: bytes) -> list[_Record]:
    records = []
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: line {line_no}: not UTF-8 (byte {line[e.start]:#04x} at column {e.start + 1}); "
                f"re-encode the file as UTF-8."
            ) from None
        if not text.strip():
            continue
        try:
            row = json.loads(text)  # NaN / Infinity parse; _answer rejects them with their line
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {line_no}: not valid JSON: {e.msg} (column {e.colno}).") from None
        records.append(_Record(f"{path}: line {line_no}", row))
    return records


def _read_json(path: str, raw: bytes) -> list[_Record]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte {raw[e.start]:#04x}); re-encode it as UTF-8.") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: not valid JSON: {e.msg} (column {e.colno}).") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}.")
    return [_Record(f"{path}: record {i}", row) for i, row in enumerate(rows)]


def _read_parquet(path: str) -> list[_Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading parquet needs pyarrow, in purejax's optional `hf` extra: "
            f"pip install 'purejax[hf]'."
        ) from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own error types for a damaged file
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e}).") from None
    return [_Record(f"{path}: row {i}", row) for i, row in enumerate(rows)]


def parse_hf_id(source: str) -> tuple[str, str | None, str | None]:
    """`ORG/NAME[:SPLIT]` or `ORG/NAME:CONFIG:SPLIT` -> (repo, config, split)."""
    repo, *rest = source.split(":")
    if len(rest) > 2 or any(not part for part in rest):
        raise DataError(f"{source!r}: a Hugging Face dataset is ORG/NAME, ORG/NAME:SPLIT or ORG/NAME:CONFIG:SPLIT.")
    config, split = (None, rest[0]) if len(rest) == 1 else (tuple(rest) if rest else (None, None))
    return repo, config, split


def is_hf_dataset(source: str) -> bool:
    """True when `source` is a Hub dataset id rather than a local file."""
    return not source.lower().endswith(FILE_SUFFIXES) and hub.is_hub_id(source.split(":")[0])


def _import_datasets(source: str):
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{source}: reading a Hugging Face dataset needs the optional `datasets` package: "
            f"pip install 'purejax[hf]'."
        ) from None
    return datasets


def _read_hf(source: str) -> list[_Record]:
    datasets = _import_datasets(source)
    repo, config, split = parse_hf_id(source)
    loaded = None
    if not hub.offline():
        try:
            loaded = datasets.load_dataset(repo, config, split=split)
        except Exception:  # noqa: BLE001 - offline without HF_HUB_OFFLINE, or not on the Hub: try the hub cache
            loaded = None
    if loaded is None:
        # A dataset fetched by `hf download --repo-type dataset` sits in the hub cache as files;
        # datasets reads that directory without the network (splits from the file names).
        try:
            directory = hub.snapshot(repo, repo_type="dataset")
        except hub.NotCached as error:
            raise DataError(f"{source}: {error}") from None
        try:
            loaded = datasets.load_dataset(directory, config, split=split)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{source}: the cached copy {directory} did not load ({type(e).__name__}: {e}).") from None
    if isinstance(loaded, dict):  # no split named: take the only one
        if len(loaded) != 1:
            raise DataError(
                f"{source}: has splits {', '.join(sorted(loaded))}; name one, e.g. {repo}:{sorted(loaded)[0]}."
            )
        split, loaded = next(iter(loaded.items()))
    label = f"{repo}" + (f" ({config})" if config else "") + f" split {split}"
    return [_Record(f"{label}: row {i}", dict(row)) for i, row in enumerate(loaded)]


def read_records(source: str) -> list[_Record]:
    """The records of a local file or HF dataset, each with where it came from.

    Raises DataError for a missing, unreadable or empty source, or a record that is not an
    object.
    """
    if is_hf_dataset(source):
        records = _read_hf(source)
    else:
        if not os.path.isfile(source):
            raise DataError(f"{source}: file not found (pass a .jsonl, .json or .parquet file or an ORG/NAME dataset id).")
        suffix = os.path.splitext(source)[1].lower()
        if suffix not in FILE_SUFFIXES:
            raise DataError(f"{source}: unsupported file type {suffix or '(none)'!r}; use .jsonl, .json or .parquet.")
        if suffix == ".parquet":
            records = _read_parquet(source)
        else:
            with open(source, "rb") as f:
                raw = f.read()
            records = _read_jsonl(source, raw) if suffix == ".jsonl" else _read_json(source, raw)
    if not records:
        raise DataError(f"{source}: no records (the file or split is empty).")
    for record in records:
        if not isinstance(record.row, dict):
            raise DataError(f"{record.where}: is a {type(record.row).__name__}, expected an object.")
    return records


# ---------------------------------------------------------------- fields


def _field(record: _Record, name: str, types=(str,), allow_empty=False) -> Any:
    if name not in record.row:
        raise DataError(f"{record.where}: no field {name!r} (fields: {sorted(record.row)}).")
    value = record.row[name]
    if (
        not isinstance(value, types)
        or isinstance(value, bool)
        or (isinstance(value, str) and not value.strip() and not allow_empty)
    ):
        raise DataError(
            f"{record.where}: field {name!r} must be a non-empty "
            f"{'/'.join(t.__name__ for t in types)}, got {value!r:.60}."
        )
    return value


def _answer(record: _Record, name: str, optional: bool, empty_is_none: bool = False) -> str | None:
    """The ground truth as text: a string, or an int / finite float (AMC23 stores 27 as 27.0).

    None for "null" / JSON null when `optional` (training prompts without one); booleans, NaN,
    lists and objects are errors, as is a missing answer that is required.
    """
    value = record.row.get(name)
    if value is None or (isinstance(value, str) and value.strip() in _NO_ANSWER):
        if optional and (empty_is_none or not (isinstance(value, str) and not value.strip())):
            return None
        fix = 'write "null" for none' if optional else "an evaluation record needs one"
        raise DataError(f"{record.where}: field {name!r} has no answer ({value!r}); {fix}.")
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, numbers.Integral):
            return str(int(value))
        if math.isfinite(value):
            return str(int(value)) if float(value).is_integer() else repr(float(value))
    raise DataError(
        f"{record.where}: field {name!r} must be a string or a finite number, got "
        f"{type(value).__name__} {value!r:.60}; fix the record (answers are compared as text)."
    )


def _pick_key(records: list[_Record], key: str, candidates: tuple[str, ...]) -> str | None:
    """`key` when given, else the first candidate column the first record has."""
    if key:
        return key
    return next((k for k in candidates if k in records[0].row), None)


def _ids(records: list[_Record], name: str, id_key: str | None) -> list[str]:
    """`name/<id>` from the id column (checked unique) or `name/<position>`."""
    if id_key is None:
        id_key = next((k for k in ID_KEYS if all(k in r.row for r in records)), None)
    if id_key is None:
        return [f"{name}/{i}" for i in range(len(records))]
    seen: dict[str, str] = {}
    ids = []
    for record in records:
        value = str(_field(record, id_key, (str, int)))
        if value in seen:
            raise DataError(
                f"{record.where}: duplicate {id_key} {value!r} (first at {seen[value]}); ids must be unique."
            )
        seen[value] = record.where
        ids.append(f"{name}/{value}")
    return ids


def load_prompts(
    source: str, name: str, question_key: str = "", answer_key: str = "", require_answer: bool = True
) -> list[Prompt]:
    """Prompts from any source: the question and answer columns given, or found (QUESTION_KEYS, ANSWER_KEYS).

    Ids are `name/<id column>` (ID_KEYS; repeats are an error) or `name/<position>`. With
    `require_answer` False a record may have no answer ("null", JSON null or no answer column).
    """
    records = read_records(source)
    q_key = _pick_key(records, question_key, QUESTION_KEYS)
    if q_key is None:
        raise DataError(
            f"{records[0].where}: no question column (tried {', '.join(QUESTION_KEYS)}; fields: "
            f"{sorted(records[0].row)}); set config.data.question_key."
        )
    a_key = _pick_key(records, answer_key, ANSWER_KEYS)
    if a_key is None and require_answer:
        raise DataError(
            f"{records[0].where}: no answer column (tried {', '.join(ANSWER_KEYS)}; fields: "
            f"{sorted(records[0].row)}); set config.data.answer_key."
        )
    ids = _ids(records, name, None)
    prompts = []
    for record, prompt_id in zip(records, ids):
        question = _field(record, q_key)
        answer = None
        if a_key is not None:
            if a_key not in record.row:
                raise DataError(f"{record.where}: no field {a_key!r} (fields: {sorted(record.row)}).")
            answer = _answer(record, a_key, optional=not require_answer)
        prompts.append(Prompt(prompt_id, question, answer))
    return prompts


def load_train_prompts(path: str | None = None, question_key: str = "", answer_key: str = "") -> list[Prompt]:
    """The PURE training prompts; `answer` None where the file says "null".

    The default file has 8,523 prompts, 879 with an answer (docs/pure.md).
    `ref_answer` is deliberately not read (see `load_reference_answers`).
    """
    return load_prompts(path or os.path.join(DATA_DIR, TRAIN_FILE), "train", question_key, answer_key, False)


def load_reference_answers(path: str | None = None) -> dict[str, str | None]:
    """EVALUATION ONLY: prompt id -> `ref_answer` of the training file (None if "null").

    For measuring, e.g., accuracy on training prompts without an answer. Never
    pass these to a training reward: that would turn PRM-only runs into VR runs.
    """
    records = read_records(path or os.path.join(DATA_DIR, TRAIN_FILE))
    return {
        # Some reference answers are "" (none recorded); they mean no answer here, not an error.
        prompt_id: _answer(record, "ref_answer", optional=True, empty_is_none=True)
        for record, prompt_id in zip(records, _ids(records, "train", None))
    }


# ---------------------------------------------------------------- the five benchmarks


def _minerva_answer(record: _Record) -> str:
    from purejax.rewards.answers import extract_answer

    answer = extract_answer(_field(record, "solution"))
    if answer is None:
        raise DataError(f"{record.where}: field 'solution' has no \\boxed{{...}} answer.")
    return answer


def _olympiad_answer(record: _Record) -> str:
    answers = _field(record, "final_answer", (list,))
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DataError(
            f"{record.where}: field 'final_answer' must be a non-empty list of strings, got {answers!r:.60}."
        )
    return ", ".join(a.strip().strip("$").strip() for a in answers)


# name -> (question field, id field, answer getter)
_BENCHMARK_FORMATS: dict[str, tuple[str, str, Callable[[_Record], str]]] = {
    "math500": ("problem", "unique_id", lambda r: _answer(r, "answer", optional=False)),
    "minerva_math": ("problem", "idx", _minerva_answer),
    "olympiadbench": ("question", "id", _olympiad_answer),
    "aime24": ("problem", "id", lambda r: _answer(r, "answer", optional=False)),
    "amc23": ("problem", "id", lambda r: _answer(r, "answer", optional=False)),
}


def load_benchmark(name: str, path: str | None = None) -> list[Prompt]:
    """One of BENCHMARKS as Prompts (answers always present), from the shipped file or `path`.

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
    records = read_records(path or os.path.join(DATA_DIR, f"{name}.jsonl"))
    question_field, id_field, get_answer = _BENCHMARK_FORMATS[name]
    ids = _ids(records, name, id_field)
    return [Prompt(i, _field(r, question_field), get_answer(r)) for r, i in zip(records, ids)]


def load_eval_set(name: str, source: str, question_key: str = "", answer_key: str = "") -> list[Prompt]:
    """An evaluation set: a name of BENCHMARKS reads in that benchmark's format (from `source`,
    any copy of it); any other name reads `source` with the given (or found) columns."""
    if name in _BENCHMARK_FORMATS:
        return load_benchmark(name, source)
    return load_prompts(source, name, question_key, answer_key, require_answer=True)


# ---------------------------------------------------------------- from a config


def check_sources(data) -> None:
    """Fails before any model loads when a data source of `config.data` cannot be found.

    A missing local file raises FileNotFoundError and an HF id without the `datasets`
    package raises DataError, each naming the field and how to fix it. (Whether an HF id
    exists is only known when it loads.)
    """
    fields = [("data.train_path", data.train_path)]
    fields += [(f"data.eval_paths[{i}]", source) for i, source in enumerate(data.eval_paths)]
    for field, source in fields:
        if is_hf_dataset(source):
            try:
                _import_datasets(source)
            except DataError as error:
                raise DataError(f"config.{field}={source!r}: {error}") from None
        elif not os.path.isfile(source):
            raise FileNotFoundError(
                f"config.{field}={source!r} is not a file. Pass a .jsonl, .json or .parquet file or a "
                f"Hugging Face dataset id ORG/NAME[:SPLIT] with --config.{field}=FILE; the PURE training "
                f"prompts and the five benchmarks ship in {DATA_DIR}."
            )


def load_config_prompts(data) -> tuple[list[Prompt], list[Prompt]]:
    """(training prompts, evaluation prompts) of `config.data`, every eval set in order."""
    keys = dict(question_key=data.question_key, answer_key=data.answer_key)
    train = load_train_prompts(data.train_path, **keys)
    evals = []
    for name, source in zip(data.eval_names, data.eval_paths):
        evals.extend(load_eval_set(name, source, **keys))
    return train, evals


_MARK = "\x00QUESTION\x00"


def chat_template_prompt(tokenizer, system_prompt: str = SYSTEM_PROMPT) -> str:
    """A `{question}` template from the tokenizer's own chat template (system + user turn,
    generation prompt added), for `format_prompt`.

    Rendered once with a marker for the question; literal braces are escaped so the result
    formats back exactly to `apply_chat_template` of any question (checked on one here).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "config.data.chat_template=True but the tokenizer has no chat template; set "
            "data.chat_template=False and give data.prompt_template instead."
        )

    def render(question):
        messages = [{"role": "user", "content": question}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    rendered = render(_MARK)
    if rendered.count(_MARK) != 1:
        raise DataError("config.data.chat_template: the tokenizer's chat template does not place the question once.")
    before, after = rendered.split(_MARK)
    template = before.replace("{", "{{").replace("}", "}}") + "{question}" + after.replace("{", "{{").replace("}", "}}")
    probe = "What is {1} + 1?"
    if format_prompt(template, probe) != render(probe):
        raise DataError("config.data.chat_template: the tokenizer's chat template depends on the question's text.")
    return template


def prompt_template(data, tokenizer) -> str:
    """The `{question}` template of `config.data`: the tokenizer's chat template when
    data.chat_template is set, else data.prompt_template."""
    return chat_template_prompt(tokenizer) if data.chat_template else data.prompt_template
