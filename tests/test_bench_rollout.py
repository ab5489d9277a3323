"""bench/rollout.py's code at a tiny size: its JSON has the documented keys and they agree
with each other (no timing is asserted; speed is the benchmark's to show)."""

import json

import numpy as np
import pytest

import purejax.models as pm
from bench import rollout as bench
from tests._tiny_hf import load_hf_torch, save_tiny_hf

KEYS = {
    "tokens_per_s",
    "current_sampler_tokens_per_s",
    "transformers_tokens_per_s",
    "speedup_vs_current",
    "useful_slot_fraction",
}


def test_eos_ids_give_the_median_length():
    eos = bench.eos_ids_for_median(32000, 32)
    assert len(eos) == len(set(eos)) == round(32000 * (1 - 0.5 ** (1 / 32)))
    assert 0 not in eos  # never the pad


def test_generated_lengths_count_up_to_the_first_eos():
    tokens = np.array([[4, 9, 3, 9], [4, 4, 4, 4], [3, 3, 3, 3]])
    np.testing.assert_array_equal(bench.generated_lengths(tokens, [3, 7]), [3, 4, 1])


def test_bench_at_a_tiny_size(tmp_path, capsys):
    path = save_tiny_hf(tmp_path / "m", "qwen2_gqa")
    model, hf_model = pm.load_pretrained(path), load_hf_torch(path)
    rng = np.random.default_rng(0)
    rows, width = 10, 6
    ids = rng.integers(3, 211, (rows, width)).astype(np.int32)
    eos = bench.eos_ids_for_median(211, 3)
    result = bench.measure(
        model, hf_model, ids, np.ones_like(ids), eos, 24,
        slots=3, page_size=4, num_pages=None, hf_rows=4, repeats=1,
    )  # fmt: skip
    assert KEYS <= set(result)
    assert json.loads(json.dumps(result)) == result
    assert result["tokens_per_s"] > 0 and result["current_sampler_tokens_per_s"] > 0
    assert result["transformers_tokens_per_s"] > 0
    ratio = result["tokens_per_s"] / result["current_sampler_tokens_per_s"]
    assert result["speedup_vs_current"] == pytest.approx(ratio, rel=1e-2)
    assert 0 < result["useful_slot_fraction"] <= 1 and 0 < result["current_useful_fraction"] <= 1
    assert result["transformers_rows"] == 4 and result["slots"] == 3
    assert "engine vs current" in capsys.readouterr().out
