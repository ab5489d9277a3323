"""Evaluation as the paper does it, on a tiny random Qwen2 policy and PRM (transformers + torch, temp dir).

References: transformers' greedy `generate` and the torch PRM for the texts and step rewards,
naive Python loops for Best-of-N selection, hand-computed values for the aggregations.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejax import data, evaluation
from purejax.models import load_pretrained
from purejax.rewards import verifier
from tests._tiny_hf import build_tiny_tokenizer, load_hf_torch, save_tiny_hf

N, LIMIT, NEW_TOKENS, BATCH = 3, 2, 16, 16  # one prompt width (512) for every call: few compiles
T = evaluation.SOFT_MIN_TEMPERATURE


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    # A byte-level BPE trained on benchmark questions and "\n\n"-separated steps, so the
    # vocabulary has a step separator; 352 embeddings cover its 321 ids.
    corpus = [p.question for name in data.BENCHMARKS for p in data.load_benchmark(name)[:20]]
    corpus += ["So x = 2.\n\nThen \\boxed{5}.\n\n", "Step 1.\n\n", "\n\n"] * 30
    policy = save_tiny_hf(root / "policy", "qwen2_gqa", vocab_size=352)
    build_tiny_tokenizer(policy, texts=corpus, vocab_size=320)
    prm = save_tiny_hf(root / "prm", "qwen2_gqa", head="classifier", vocab_size=352, seed=1)
    return dict(policy=policy, prm=prm, root=root)


@pytest.fixture(scope="module")
def run(ckpt):
    from experiments import evaluate as cli

    out = os.path.join(ckpt["root"], "results", "report.json")
    argv = ["--checkpoint", ckpt["policy"], "--prm", ckpt["prm"], "--n", str(N), "--limit", str(LIMIT)]
    argv += ["--max_new_tokens", str(NEW_TOKENS), "--batch_size", str(BATCH), "--dtype", "float32"]
    argv += ["--prm_batch_size", str(BATCH // 2)]
    report = cli.main(argv + ["--out", out, "--quiet"])
    return report, out


@pytest.fixture(scope="module")
def tokenizer(ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ckpt["policy"])


def _prompts():
    return {name: data.load_benchmark(name)[:LIMIT] for name in data.BENCHMARKS}


# ------------------------------------------------------------------ the aggregations


def test_aggregations_hand_computed():
    fn = jax.jit(evaluation.aggregate_step_rewards)

    def agg(r, ends=None):  # padded to width 6 (never a step end), so one compile serves every case
        ends = [True] * len(r) if ends is None else ends
        r_t = jnp.asarray(list(r) + [9.0] * (6 - len(r)), jnp.float32)
        end_t = jnp.asarray(list(ends) + [False] * (6 - len(r)))
        return dict(zip(evaluation.AGGREGATIONS, np.asarray(fn(r_t, end_t, 0.1))))

    a = agg([0.9, -0.6, 0.7])  # PURE_SPEC §3's first example
    assert a["min"] == pytest.approx(-0.6) and a["last"] == pytest.approx(0.7)
    assert a["sum"] == pytest.approx(1.0) and a["soft_min"] == pytest.approx(-0.6, abs=1e-3)
    a = agg([0.5, 0.45, 0.5])  # spec: r* ~ [0.137, 0.203, 0.137], summing to 0.477
    assert a["soft_min"] == pytest.approx(0.477, abs=1e-3) and a["min"] == pytest.approx(0.45)
    assert agg([0.9] * 5)["soft_min"] == pytest.approx(0.9)  # equal steps: the soft-min is that value
    # Off-step positions are ignored, whatever they hold.
    a = agg([0.3, 5.0, -0.2, -7.0], ends=[True, False, True, False])
    assert (a["min"], a["last"], a["sum"]) == pytest.approx((-0.2, -0.2, 0.1))
    assert all(v == -np.inf for v in agg([0.3, 0.4], ends=[False, False]).values())


def test_aggregations_match_a_naive_loop_on_random_rows():
    rng = np.random.default_rng(0)
    r_bt = rng.uniform(-1, 1, (32, 12)).astype(np.float32)
    end_bt = rng.random((32, 12)) < 0.4
    end_bt[:, -1] |= rng.random(32) < 0.5
    got = np.asarray(jax.jit(jax.vmap(evaluation.aggregate_step_rewards, (0, 0, None)))(r_bt, end_bt, T))
    for b in range(32):
        steps = [float(r_bt[b, t]) for t in range(12) if end_bt[b, t]]
        if not steps:
            assert np.all(got[b] == -np.inf)
            continue
        weights = [math.exp(-s / T) for s in steps]
        soft = sum(w * s for w, s in zip(weights, steps)) / sum(weights)
        np.testing.assert_allclose(got[b], [min(steps), soft, steps[-1], sum(steps)], rtol=1e-5, atol=1e-6)


def test_best_of_n_accuracy_and_majority_hand_computed():
    # 2 problems x 3 responses; aggregations [min, soft_min, last, sum].
    scores = np.array(
        [
            [[0.1, 0.1, 0.9, 0.5], [0.5, 0.5, 0.2, 0.6], [0.5, 0.4, 0.1, 0.9]],  # min tie: first (1) wins
            [[-0.2, 0.0, 0.3, 0.3], [-0.3, -0.1, 0.2, 0.2], [-0.1, 0.1, 0.1, 0.1]],
        ]
    )
    correct = np.array([[0, 1, 0], [1, 0, 0]])
    acc = evaluation.best_of_n_accuracy(scores, correct)
    # picks: min (1, 2) -> 1, 0; soft_min (1, 2) -> 1, 0; last (0, 0) -> 0, 1; sum (2, 0) -> 0, 1
    assert acc == {"min": 0.5, "soft_min": 0.5, "last": 0.5, "sum": 0.5}
    correct = np.array([[0, 1, 1], [0, 0, 1]])
    assert evaluation.best_of_n_accuracy(scores, correct) == {
        "min": 1.0,
        "soft_min": 1.0,
        "last": 0.0,
        "sum": 0.5,
    }
    texts = ["so \\boxed{3}", "\\boxed{ 4 }", "hence \\boxed{4}", "no answer"]
    assert evaluation.majority_vote_correct(texts, [0, 1, 1, 0]) == 1.0  # "4" twice (spaces ignored)
    assert evaluation.majority_vote_correct(["\\boxed{1}", "\\boxed{2}"], [0, 1]) == 0.0  # tie: first
    assert evaluation.majority_vote_correct(["none", "at all"], [1, 1]) == 0.0


# ------------------------------------------------------------------ end to end (the CLI)


def test_report_json_and_table(run):
    report, out = run
    with open(out, encoding="utf-8") as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(report))
    assert [f for f in os.listdir(os.path.dirname(out))] == ["report.json"]  # atomic: no temp left
    names = list(data.BENCHMARKS)
    assert list(report["greedy"]) == names + ["average"]
    bon_keys = list(evaluation.AGGREGATIONS) + [f"pass@{N}", "majority", "sample_mean"]
    for name in names:
        assert report["greedy"][name]["count"] == LIMIT
        assert list(report["best_of_n"][name]["accuracy"]) == bon_keys
        assert report["best_of_n"][name]["n"] == N
    assert report["settings"]["max_new_tokens"] == NEW_TOKENS and report["settings"]["n"] == N
    assert len(report["problems"]) == LIMIT * len(names)
    for record in report["problems"]:
        assert len(record["samples"]) == N and set(record["picked"]) == set(evaluation.AGGREGATIONS)
        for s in record["samples"]:
            assert set(s) == {"text", "correct", "step_rewards", "scores"} and len(s["step_rewards"]) >= 1
    table = evaluation.format_table(report).splitlines()
    assert table[0].split() == ["benchmark", "count", "greedy"] + [
        f"bo{N}:{a}" for a in evaluation.AGGREGATIONS
    ] + [
        f"pass@{N}",
        "majority",
        "sample_mean",
    ]
    assert [line.split()[0] for line in table[2:]] == names + ["average"]


def test_greedy_texts_and_scores_match_transformers_generate(run, tokenizer, ckpt):
    import torch

    report, _ = run
    model = load_hf_torch(ckpt["policy"])
    stops = evaluation.stop_token_ids(tokenizer)
    prompts = [p for ps in _prompts().values() for p in ps]
    # transformers' own left-padded batch (its positions come from the attention mask, like ours).
    texts = [data.format_prompt(data.DEFAULT_PROMPT_TEMPLATE, p.question) for p in prompts]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **batch, do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=stops, pad_token_id=0
        )
    new = out[:, batch["input_ids"].shape[1] :]
    reference = tokenizer.batch_decode(new, skip_special_tokens=True)
    assert [r["greedy"]["text"] for r in report["problems"]] == reference
    truths = [p.answer for p in prompts]
    expected = verifier.verify_batch(reference, truths)
    assert [r["greedy"]["correct"] for r in report["problems"]] == [bool(x) for x in expected]
    for k, name in enumerate(data.BENCHMARKS):
        assert report["greedy"][name]["accuracy"] == pytest.approx(
            expected[k * LIMIT : (k + 1) * LIMIT].mean()
        )


def test_best_of_n_selection_matches_a_naive_loop(run):
    report, _ = run
    for name in data.BENCHMARKS:
        records = [r for r in report["problems"] if r["benchmark"] == name]
        hits = {a: [] for a in evaluation.AGGREGATIONS}
        for record in records:
            samples = record["samples"]
            for a in evaluation.AGGREGATIONS:
                naive = []
                for s in samples:
                    r = s["step_rewards"]
                    if a == "min":
                        naive.append(min(r))
                    elif a == "last":
                        naive.append(r[-1])
                    elif a == "sum":
                        naive.append(sum(r))
                    else:
                        w = [math.exp(-(x - min(r)) / T) for x in r]
                        naive.append(sum(wi * x for wi, x in zip(w, r)) / sum(w))
                    assert s["scores"][a] == pytest.approx(naive[-1], abs=1e-5)
                pick = record["picked"][a]
                best = max(naive)
                assert naive[pick] >= best - 1e-5  # the evaluation's pick is a naive argmax ...
                assert all(v < best - 1e-5 for v in naive[:pick])  # ... and the first one
                hits[a].append(samples[pick]["correct"])
        acc = report["best_of_n"][name]["accuracy"]
        for a in evaluation.AGGREGATIONS:
            assert acc[a] == pytest.approx(np.mean(hits[a]))
        assert acc[f"pass@{N}"] == pytest.approx(
            np.mean([any(s["correct"] for s in r["samples"]) for r in records])
        )
        assert acc["sample_mean"] == pytest.approx(
            np.mean([s["correct"] for r in records for s in r["samples"]])
        )


def test_step_rewards_are_the_torch_prms(ckpt, tokenizer):
    import torch

    policy = load_pretrained(ckpt["policy"])
    prompts = data.load_benchmark("math500")[:2]
    gens = evaluation.generate(
        policy,
        tokenizer,
        prompts,
        n=2,
        temperature=1.0,
        max_new_tokens=NEW_TOKENS,
        batch_size=BATCH,
        prm=load_pretrained(ckpt["prm"]),
        prm_batch_size=BATCH // 2,  # the CLI run's shapes: compiled once
        show_progress=False,
    )
    torch_prm = load_hf_torch(ckpt["prm"])
    separators = set(evaluation.steps_lib.separator_ids(tokenizer).tolist())
    step_token = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    for i, p in enumerate(prompts):
        prompt_ids = tokenizer(
            data.format_prompt(data.DEFAULT_PROMPT_TEMPLATE, p.question), add_special_tokens=False
        )
        prompt_ids = prompt_ids["input_ids"]
        for j in range(2):
            response = gens.tokens[i][j]
            assert gens.texts[i][j] == tokenizer.decode(response, skip_special_tokens=True)
            ends = [t for t, tok in enumerate(response) if tok in separators or t == len(response) - 1]
            prm_response = [step_token if t in ends else tok for t, tok in enumerate(response)]
            with torch.no_grad():
                logits = torch_prm(input_ids=torch.tensor([prompt_ids + prm_response])).logits[0]
            prob = torch.softmax(logits.float(), -1).numpy()
            expected = [prob[len(prompt_ids) + t, 1] - prob[len(prompt_ids) + t, 0] for t in ends]
            np.testing.assert_allclose(gens.step_rewards[i][j], expected, atol=2e-5)


def test_a_failing_verifier_scores_zero_instead_of_crashing(ckpt, tokenizer):
    policy = load_pretrained(ckpt["policy"])
    prompts = data.load_benchmark("amc23")[:3]
    calls = []

    def flaky(texts, truths):
        calls.append(len(texts))
        if len(texts) > 1 or texts[0] == first[0]:
            raise RuntimeError("verifier crashed")
        return np.ones(len(texts), np.float32)

    first = [None]
    greedy = evaluation.generate(
        policy, tokenizer, prompts, max_new_tokens=NEW_TOKENS, batch_size=BATCH, show_progress=False
    )
    first[0] = greedy.texts[0][0]
    gens = evaluation.generate(
        policy,
        tokenizer,
        prompts,
        max_new_tokens=NEW_TOKENS,
        batch_size=BATCH,
        verify=flaky,
        show_progress=False,
    )
    assert gens.texts == greedy.texts
    bad = [i for i in range(3) if gens.texts[i][0] == first[0]]
    assert gens.verify_errors == len(bad) >= 1
    assert [gens.correct[i, 0] for i in range(3)] == [0.0 if i in bad else 1.0 for i in range(3)]
    assert calls[0] == 3 and calls[1:] == [1, 1, 1]
    # A comparison that hangs in C code is killed at its deadline by the real pool and scores 0.
    scores, errors = evaluation._safe_verify(
        verifier.verify_batch, ["\\boxed{\\int_0^1 x^{100000} dx}", "so \\boxed{2}"], ["1/100001", "2"]
    )
    assert scores.tolist() == [0.0, 1.0] and errors == 0


def test_cli_refuses_missing_checkpoint_and_unknown_benchmark(tmp_path, capsys):
    from experiments import evaluate as cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--checkpoint", str(tmp_path / "nothing")])
    message = str(exit_info.value)
    assert "--checkpoint=" in message and "Download the policy checkpoint" in message
    with pytest.raises(SystemExit):
        cli.main(["--checkpoint", str(tmp_path), "--benchmarks", "math50"])
    assert "math50" in capsys.readouterr().err


def test_cli_evaluates_any_dataset_with_the_tokenizers_chat_template(ckpt, tmp_path):
    """--data NAME=FILE with its own columns, alone (no built-in benchmark), formatted with the
    tokenizer's own chat template; the texts are those of evaluation.generate on the same prompts."""
    from transformers import AutoTokenizer

    from experiments import evaluate as cli

    path = tmp_path / "mine.jsonl"
    rows = [{"uid": f"q{i}", "text": p.question, "gold": p.answer} for i, p in enumerate(data.load_benchmark("amc23")[:2])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = AutoTokenizer.from_pretrained(ckpt["policy"])
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n\n{% endfor %}[assistant] "
    policy = os.path.join(tmp_path, "policy")
    import shutil

    shutil.copytree(ckpt["policy"], policy)
    tokenizer.save_pretrained(policy)
    argv = ["--checkpoint", policy, "--data", f"mine={path}", "--question_key", "text", "--answer_key", "gold"]
    argv += ["--max_new_tokens", str(NEW_TOKENS), "--batch_size", str(BATCH), "--dtype", "float32", "--quiet"]
    report = cli.main(argv + ["--chat_template"])
    assert list(report["greedy"]) == ["mine", "average"] and report["greedy"]["mine"]["count"] == 2
    template = report["settings"]["prompt_template"]
    assert template == data.chat_template_prompt(tokenizer) and template.startswith("[system] Please reason")
    prompts = data.load_eval_set("mine", str(path), "text", "gold")
    assert [p.id for p in prompts] == ["mine/0", "mine/1"]
    want = evaluation.generate(
        load_pretrained(policy), tokenizer, prompts, max_new_tokens=NEW_TOKENS, batch_size=BATCH,
        template=template, show_progress=False,
    )
    assert [r["id"] for r in report["problems"]] == ["mine/0", "mine/1"]
    assert [r["greedy"]["text"] for r in report["problems"]] == [t[0] for t in want.texts]


def test_sharded_evaluation_on_a_mesh_equals_one_device(run, ckpt):
    """experiments.evaluate --mesh data=2,fsdp=2,tensor=2 on 8 simulated CPU devices (a
    subprocess: jax fixes its device count at start-up): the same greedy and Best-of-N texts,
    correctness and picks as the one-device run, PRM step rewards within 1e-4."""
    from tests._simulated import run_module

    out = os.path.join(ckpt["root"], "results", "sharded.json")
    argv = ["--checkpoint", ckpt["policy"], "--prm", ckpt["prm"], "--n", str(N), "--limit", str(LIMIT)]
    argv += ["--max_new_tokens", str(NEW_TOKENS), "--batch_size", str(BATCH), "--dtype", "float32"]
    argv += ["--prm_batch_size", str(BATCH // 2), "--mesh", "data=2,fsdp=2,tensor=2", "--quiet", "--out", out]
    proc = run_module("experiments.evaluate", *argv, devices=8, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out, encoding="utf-8") as f:
        sharded = json.load(f)
    single, _ = run
    assert sharded["greedy"] == single["greedy"]
    for got, want in zip(sharded["problems"], single["problems"]):
        assert got["greedy"] == want["greedy"]
        assert got["picked"] == want["picked"]
        for g, w in zip(got["samples"], want["samples"]):
            assert (g["text"], g["correct"]) == (w["text"], w["correct"])
            np.testing.assert_allclose(g["step_rewards"], w["step_rewards"], atol=1e-4)
