"""Prompt datasets: counts, normalised records, ref_answer isolation, clear errors."""

import dataclasses
import json

import pytest

from purejax import data


def test_train_prompts_counts_and_no_ref_answer():
    prompts = data.load_train_prompts()
    assert len(prompts) == 8523
    assert sum(p.answer is not None for p in prompts) == 879
    assert all(p.answer != "null" and p.question.strip() for p in prompts)
    # ref_answer cannot reach a training reward: the record type has no such field.
    assert [f.name for f in dataclasses.fields(data.Prompt)] == ["id", "question", "answer"]
    raw = json.load(open(f"{data.DATA_DIR}/{data.TRAIN_FILE}"))
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
    with pytest.raises(data.DataError, match=r"train.json: record 1 has no field 'answer'"):
        data.load_train_prompts(str(bad))
    bench = tmp_path / "b.jsonl"
    bench.write_text(
        '{"problem": "p", "answer": "1", "unique_id": "a"}\n'
        '{"problem": "", "answer": "2", "unique_id": "b"}\n'
    )
    with pytest.raises(data.DataError, match=r"b.jsonl: record 1 field 'problem' must be"):
        data.load_benchmark("math500", str(bench))
    with pytest.raises(data.DataError, match="Did you mean 'math500'"):
        data.load_benchmark("math50")


def test_format_prompt():
    text = data.format_prompt(data.DEFAULT_PROMPT_TEMPLATE, "What is 1+1?")
    assert "What is 1+1?" in text and "\\boxed{}" in text
