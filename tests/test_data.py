"""Prompt datasets: the shipped files (provenance, counts, sha256), every source format, clear errors."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from purejax import data

# Independent reference: the sizes the paper and the upstream sets give (docs/pure.md).
SHIPPED_COUNTS = {
    "pure_train_8k_879_answers.json": 8523,
    "math500.jsonl": 500,
    "minerva_math.jsonl": 272,
    "olympiadbench.jsonl": 675,
    "aime24.jsonl": 30,
    "amc23.jsonl": 40,
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_files_match_their_provenance():
    provenance = json.loads(Path(data.DATA_DIR, "provenance.json").read_text())["files"]
    assert set(provenance) == set(SHIPPED_COUNTS)
    assert sorted(os.listdir(data.DATA_DIR)) == sorted([*SHIPPED_COUNTS, "provenance.json"])
    for name, expected in SHIPPED_COUNTS.items():
        raw = Path(data.DATA_DIR, name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == provenance[name]["sha256"], name
        assert len(raw) == provenance[name]["bytes"], name
        if name.endswith(".jsonl"):
            count = sum(1 for line in raw.decode("utf-8").splitlines() if line.strip())
        else:
            count = len(json.loads(raw))
        assert count == expected == provenance[name]["records"], name


def test_data_defaults_live_inside_the_package():
    from purejax import config as config_lib

    package = os.path.join(ROOT, "purejax")
    c = config_lib.defaults()
    for path in (c.data.train_path, *c.data.eval_paths):
        assert os.path.commonpath([package, path]) == package and os.path.isfile(path)


def test_a_package_build_carries_the_data(tmp_path):
    """What a wheel / non-editable install gets: setup.py's build_py output has every data file."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True,
    )
    built = os.path.join(tmp_path, "purejax", "data_files", "math")
    assert sorted(os.listdir(built)) == sorted([*SHIPPED_COUNTS, "provenance.json"])


def test_train_prompts_counts_and_no_ref_answer():
    prompts = data.load_train_prompts()
    assert len(prompts) == 8523
    assert sum(p.answer is not None for p in prompts) == 879
    assert all(p.answer != "null" and p.question.strip() for p in prompts)
    # ref_answer cannot reach a training reward: the record type has no such field.
    assert [f.name for f in dataclasses.fields(data.Prompt)] == ["id", "question", "answer"]
    raw = json.loads(Path(data.DATA_DIR, data.TRAIN_FILE).read_text())
    for prompt, row in zip(prompts[:200], raw[:200]):
        assert prompt.answer == (None if row["answer"] == "null" else row["answer"])


def test_reference_answers_are_a_separate_eval_only_mapping():
    refs = data.load_reference_answers()
    prompts = data.load_train_prompts()
    assert len(refs) == 8523 and set(refs) == {p.id for p in prompts}
    assert refs["train/0"] == "118" and prompts[0].answer is None


@pytest.mark.parametrize(
    "name, size",
    [("math500", 500), ("minerva_math", 272), ("olympiadbench", 675), ("aime24", 30), ("amc23", 40)],
)
def test_benchmark_sizes_and_normalised_answers(name, size):
    prompts = data.load_benchmark(name)
    assert len(prompts) == size
    assert len({p.id for p in prompts}) == size
    assert all(isinstance(p.answer, str) and p.answer.strip() and p.question.strip() for p in prompts)


def test_benchmark_answer_normalisation():
    assert data.load_benchmark("amc23")[0].answer == "27"  # stored as 27.0
    assert data.load_benchmark("math500")[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert data.load_benchmark("olympiadbench")[1].answer == "\\frac{1}{2 n+2}"  # $...$ stripped
    assert data.load_benchmark("minerva_math")[0].answer == "1.6"  # last \boxed of the solution


def test_missing_file_and_bad_records_name_file_record_and_field(tmp_path):
    with pytest.raises(data.DataError, match="nope.json: file not found"):
        data.load_train_prompts(str(tmp_path / "nope.json"))
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps([{"question": "q", "answer": "1"}, {"question": "q2"}]))
    with pytest.raises(data.DataError, match=r"train.json: record 1: no field 'answer'"):
        data.load_train_prompts(str(bad))
    bench = tmp_path / "b.jsonl"
    bench.write_text(
        '{"problem": "p", "answer": "1", "unique_id": "a"}\n'
        '{"problem": "", "answer": "2", "unique_id": "b"}\n'
    )
    with pytest.raises(data.DataError, match=r"b.jsonl: line 2: field 'problem' must be"):
        data.load_benchmark("math500", str(bench))
    with pytest.raises(data.DataError, match="Did you mean 'math500'"):
        data.load_benchmark("math50")


def test_format_prompt():
    text = data.format_prompt(data.DEFAULT_PROMPT_TEMPLATE, "What is 1+1?")
    assert "What is 1+1?" in text and "\\boxed{}" in text


# ---------------------------------------------------------------- validation (issue 17 item 10)


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return str(path)


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    jsonl = _write(tmp_path / "a.jsonl", b'{"question": "q", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(data.DataError, match=r"a.jsonl: line 2: not UTF-8"):
        data.load_train_prompts(jsonl)
    whole = _write(tmp_path / "a.json", b'[{"question": "q",\n "answer": "\xff"}]')
    with pytest.raises(data.DataError, match=r"a.json: line 2: not UTF-8"):
        data.load_train_prompts(whole)


def test_malformed_json_names_the_file_and_line(tmp_path):
    jsonl = _write(tmp_path / "b.jsonl", b'{"problem": "p", "answer": "1", "unique_id": "a"}\n\n{"problem": "p2", \n')
    with pytest.raises(data.DataError, match=r"b.jsonl: line 3: not valid JSON"):
        data.load_benchmark("math500", jsonl)
    whole = _write(tmp_path / "b.json", b'[{"question": "q", "answer": "1"},\n {"question": }]')
    with pytest.raises(data.DataError, match=r"b.json: line 2: not valid JSON"):
        data.load_train_prompts(whole)


@pytest.mark.parametrize("name, payload", [("e.jsonl", b""), ("e.jsonl", b"\n  \n"), ("e.json", b"[]")])
def test_an_empty_file_is_an_error_naming_it(tmp_path, name, payload):
    path = _write(tmp_path / name, payload)
    with pytest.raises(data.DataError, match=rf"{name}: no records"):
        data.load_eval_set("mine", path)


@pytest.mark.parametrize(
    "answer, shown",
    [("true", "bool True"), ("NaN", "float nan"), ("Infinity", "float inf"), ('["1"]', "list"), ('{"a": 1}', "dict")],
)
def test_answers_that_are_not_text_or_a_finite_number_are_rejected(tmp_path, answer, shown):
    rows = b'{"id": 1, "problem": "p", "answer": 3}\n' + f'{{"id": 2, "problem": "q", "answer": {answer}}}\n'.encode()
    for reader in (lambda p: data.load_benchmark("amc23", p), lambda p: data.load_eval_set("mine", p)):
        with pytest.raises(data.DataError, match=rf"x.jsonl: line 2: .*{shown}"):
            reader(_write(tmp_path / "x.jsonl", rows))
    train = _write(tmp_path / "t.json", f'[{{"question": "q", "answer": {answer}}}]'.encode())
    with pytest.raises(data.DataError, match=rf"t.json: record 0: .*{shown}"):
        data.load_train_prompts(train)


def test_duplicate_ids_are_rejected(tmp_path):
    rows = b'{"id": 7, "problem": "p", "answer": "1"}\n{"id": 8, "problem": "q", "answer": "2"}\n{"id": 7, "problem": "r", "answer": "3"}\n'
    path = _write(tmp_path / "d.jsonl", rows)
    for reader in (lambda: data.load_benchmark("aime24", path), lambda: data.load_eval_set("mine", path)):
        with pytest.raises(data.DataError, match=r"d.jsonl: line 3: duplicate id '7' \(first at .*d.jsonl: line 1\)"):
            reader()


# ---------------------------------------------------------------- formats and columns


ROWS = [
    {"id": "a", "problem": "What is 1+1?", "answer": "2"},
    {"id": "b", "problem": "What is 2*3?", "answer": 6},
    {"id": "c", "problem": "Half of 3?", "answer": 1.5},
]
EXPECTED = [data.Prompt("mine/a", "What is 1+1?", "2"), data.Prompt("mine/b", "What is 2*3?", "6"), data.Prompt("mine/c", "Half of 3?", "1.5")]


def _all_formats(tmp_path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole = tmp_path / "s.json"
    whole.write_text(json.dumps(rows))
    parquet = tmp_path / "s.parquet"
    # Columns of one type, as a real parquet file has: answers as text.
    pq.write_table(pa.Table.from_pylist([{**r, "answer": str(r["answer"])} for r in rows]), parquet)
    return str(jsonl), str(whole), str(parquet)


def test_jsonl_json_and_parquet_give_the_same_prompts(tmp_path):
    pytest.importorskip("pyarrow")
    for path in _all_formats(tmp_path, ROWS):
        assert data.load_eval_set("mine", path) == EXPECTED, path


def test_question_and_answer_columns_are_configurable(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"q_text": r["problem"], "gold": r["answer"]}) + "\n" for r in ROWS))
    with pytest.raises(data.DataError, match=r"c.jsonl: line 1: no question column .*config.data.question_key"):
        data.load_eval_set("mine", str(path))
    prompts = data.load_eval_set("mine", str(path), question_key="q_text", answer_key="gold")
    assert [(p.id, p.question, p.answer) for p in prompts] == [(f"mine/{i}", e.question, e.answer) for i, e in enumerate(EXPECTED)]
    with pytest.raises(data.DataError, match=r"c.jsonl: line 1: no field 'nope'"):
        data.load_eval_set("mine", str(path), question_key="nope", answer_key="gold")


def test_training_prompts_from_another_file_keep_answerless_prompts(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "p1", "answer": null}\n{"prompt": "p2", "answer": "null"}\n{"prompt": "p3", "answer": 4}\n')
    assert data.load_train_prompts(str(path)) == [
        data.Prompt("train/0", "p1", None), data.Prompt("train/1", "p2", None), data.Prompt("train/2", "p3", "4")
    ]


def test_a_hub_dataset_loads_offline_from_the_local_cache(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    from tests._hub_cache import add_to_cache, offline_cache

    _, _, parquet = _all_formats(tmp_path, ROWS)
    cache = offline_cache(monkeypatch, tmp_path / "hub")
    add_to_cache(cache, "someorg/tiny-math", "dataset", {"data/test-00000-of-00001.parquet": parquet})
    assert data.is_hf_dataset("someorg/tiny-math:test") and not data.is_hf_dataset("x/y.jsonl")
    for source in ("someorg/tiny-math:test", "someorg/tiny-math"):  # one split: no need to name it
        assert data.load_eval_set("mine", source) == EXPECTED
    with pytest.raises(data.DataError, match=r"someorg/other.*not in the local Hugging Face cache.*hf download someorg/other --repo-type dataset"):
        data.load_eval_set("mine", "someorg/other:test")


def test_a_hub_dataset_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(data.DataError, match=r"org/set:test: .*pip install 'purejax\[hf\]'"):
        data.load_eval_set("mine", "org/set:test")
    from purejax import config as config_lib

    c = config_lib.defaults()
    c.data.train_path = "org/set:train"
    with pytest.raises(data.DataError, match=r"config.data.train_path='org/set:train'.*purejax\[hf\]"):
        data.check_sources(c.data)
    c.data.train_path = "/nonexistent/train.jsonl"
    with pytest.raises(FileNotFoundError, match=r"config.data.train_path='/nonexistent/train.jsonl' is not a file"):
        data.check_sources(c.data)


def test_config_data_loads_every_eval_set_in_order(tmp_path):
    from purejax import config as config_lib

    jsonl, _, _ = _all_formats(tmp_path, ROWS)
    c = config_lib.defaults()
    c.data.eval_names = ("amc23", "mine")
    c.data.eval_paths = (os.path.join(data.DATA_DIR, "amc23.jsonl"), jsonl)
    train, evals = data.load_config_prompts(c.data)
    assert len(train) == 8523 and evals == data.load_benchmark("amc23") + EXPECTED


# ---------------------------------------------------------------- chat template


def test_chat_template_prompts_equal_the_tokenizers_own_rendering(tmp_path):
    from transformers import AutoTokenizer

    from tests._tiny_hf import build_tiny_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_tokenizer(tmp_path / "tok"))
    with pytest.raises(data.DataError, match="no chat template"):
        data.chat_template_prompt(tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] | trim }}{{ '{end}' }}\n{% endfor %}"
        "{% if add_generation_prompt %}<<assistant>>{% endif %}"
    )
    template = data.chat_template_prompt(tokenizer)
    for question in ("What is 1+1?", "Solve {x} + {{y}} = 3.", "  spaced  "):
        messages = [{"role": "system", "content": data.SYSTEM_PROMPT}, {"role": "user", "content": question}]
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if question == "  spaced  ":  # this template trims: not a substitution, refused below
            continue
        assert data.format_prompt(template, question) == expected
    from purejax import config as config_lib

    c = config_lib.defaults()
    assert data.prompt_template(c.data, tokenizer) == data.DEFAULT_PROMPT_TEMPLATE
    c.data.chat_template = True
    assert data.prompt_template(c.data, tokenizer) == template
