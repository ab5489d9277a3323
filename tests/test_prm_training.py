"""PRM training: TRL-format data, label placement, loss, two-stage training, HF round trip, PRM800K."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from purejax import prm_data, prm_training, sft
from purejax.models import DecoderConfig, export_pretrained, init_model
from purejax.prm_data import IGNORE, PRMBatch, PRMDataError
from purejax.rewards.prm import prm_step_rewards
from purejax.tasks import arith
from purejax.tasks.arith_prm import step_records
from purejax.tasks.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(vocab_size=160, n_problems=300, seed=0)


@pytest.fixture(scope="module")
def records():
    problems = arith.make_problems("train", 8, seed=3)
    texts, _ = arith.trace_mix(problems, dict(correct=1, error=1, filler=1), seed=3)
    # A policy-like response with an empty last step ("...\n\n" then EOS).
    texts[0] = texts[0] + "\n\n"
    return step_records(problems, texts)


def _classifier(vocab, seed=0, layers=1):
    config = DecoderConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_layers=layers,
        num_heads=4,
        num_kv_heads=2,
        qkv_bias=True,
        model_type="qwen2",
        head="classifier",
    )
    return init_model(config, seed)


# ---------------------------------------------------------------- data


def test_policy_layout_labels_the_tokens_prmscorer_reads(tokenizer, records):
    """Naive re-tokenisation, then PRMScorer's own reading: same ids, labels on its step ends."""
    batch, kept = prm_data.encode_records(records, tokenizer, layout="policy")
    assert kept.tolist() == list(range(len(records)))
    n, s = batch.input_ids.shape
    prompts = [tokenizer(r["prompt"], add_special_tokens=False)["input_ids"] for r in records]
    # The encoder's prompt width: the longest prompt rounded up to 8.
    width_prompt = -(-max(len(p) for p in prompts) // 8) * 8
    width_resp = s - width_prompt
    prompt_ids = np.zeros((n, width_prompt), np.int32)
    prompt_mask = np.zeros((n, width_prompt), bool)
    resp_ids = np.zeros((n, width_resp), np.int32)
    resp_mask = np.zeros((n, width_resp), bool)
    for i, (r, p) in enumerate(zip(records, prompts)):
        resp = tokenizer("\n\n".join(r["completions"]), add_special_tokens=False)["input_ids"]
        resp = resp + [tokenizer.eos_token_id]
        prompt_ids[i, width_prompt - len(p) :], prompt_mask[i, width_prompt - len(p) :] = p, True
        resp_ids[i, : len(resp)], resp_mask[i, : len(resp)] = resp, True
    from purejax.steps import step_end_mask_bt
    from purejax.steps import separator_ids

    ends = np.asarray(step_end_mask_bt(resp_ids, resp_mask, separator_ids(tokenizer, "\n\n")))
    seen = {}

    def logits_fn(ids, mask):  # records what PRMScorer feeds the PRM; constant p(+) = sigmoid(1)
        seen["ids"], seen["mask"] = np.asarray(ids), np.asarray(mask)
        return jnp.stack([jnp.zeros(ids.shape), jnp.ones(ids.shape)], axis=-1)

    step_id = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    r = np.asarray(prm_step_rewards(logits_fn, prompt_ids, prompt_mask, resp_ids, resp_mask, ends, step_id))
    valid = seen["mask"].astype(bool)
    np.testing.assert_array_equal(valid, batch.attention_mask)
    np.testing.assert_array_equal(np.where(valid, seen["ids"], -1), np.where(valid, batch.input_ids, -1))
    read = np.zeros_like(batch.labels, bool)
    read[:, width_prompt:] = r != 0
    np.testing.assert_array_equal(read, batch.labels != IGNORE)
    assert (batch.input_ids[read] == step_id).all()
    for i, rec in enumerate(records):  # labels in step order
        np.testing.assert_array_equal(batch.labels[i][read[i]], np.asarray(rec["labels"], int))
        # Each labelled step decodes back to its text (a merged ".\n\n" loses its ".", PURE_SPEC §2).
        pos = np.flatnonzero(read[i])
        starts = np.concatenate([[width_prompt], pos[:-1] + 1])
        for step, a, b in zip(rec["completions"], starts, pos):
            text = tokenizer.decode(batch.input_ids[i, a:b].tolist())
            assert step.startswith(text) and len(step) - len(text) <= 1, (step, text)


def test_trl_layout_matches_trl_tokenize_row(tokenizer, records):
    """TRL's PRMTrainer.tokenize_row, re-implemented naively: steps tokenised alone, + "\\n", label on it."""
    batch, _ = prm_data.encode_records(records, tokenizer, layout="trl")
    sep = tokenizer.encode("\n", add_special_tokens=False)
    for i, r in enumerate(records):
        ids = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]  # no BOS in this tokenizer
        labels = [-100] * len(ids)
        for step, label in zip(r["completions"], r["labels"]):
            step_ids = tokenizer(step, add_special_tokens=False)["input_ids"] + sep
            ids += step_ids
            labels += [-100] * (len(step_ids) - 1) + [int(label)]
        row = batch.attention_mask[i]
        assert batch.input_ids[i][row].tolist() == ids
        assert batch.labels[i][row].tolist() == labels
        assert (batch.labels[i][~row] == IGNORE).all()


def test_load_records_round_trip_and_bad_input(tmp_path, records):
    path = tmp_path / "d.jsonl"
    prm_data.write_records(records, str(path))
    assert prm_data.load_records(str(path)) == records
    bad = [
        ({"prompt": "q", "completions": ["a", "b"], "labels": [True]}, "'labels'"),
        ({"prompt": "q", "completions": [], "labels": []}, "'completions'"),
        ({"prompt": "q", "labels": [True]}, "'completions'"),
        ({"completions": ["a"], "labels": [True]}, "'prompt'"),
        ({"prompt": "q", "completions": ["a"], "labels": ["yes"]}, "'labels'[0]"),
    ]
    for record, field in bad:
        path.write_text(json.dumps(records[0]) + "\n" + json.dumps(record) + "\n")
        with pytest.raises(PRMDataError) as info:
            prm_data.load_records(str(path))
        assert f"{path}:2" in str(info.value) and field in str(info.value), str(info.value)


def test_policy_layout_refuses_a_step_containing_the_separator(tokenizer):
    record = {"prompt": "Question: x\nAnswer:\n", "completions": ["1 + 1 = 2\n\n2 + 1 = 3"], "labels": [True]}
    with pytest.raises(PRMDataError, match="record 0: its 1 completions"):
        prm_data.encode_records([record], tokenizer, layout="policy")
    batch, kept = prm_data.encode_records(
        [record] * 2 + [dict(record, completions=["1 + 1 = 2"])], tokenizer, drop_invalid=True
    )
    assert kept.tolist() == [2] and batch.input_ids.shape[0] == 1


def test_prm800k_conversion_of_a_hand_written_row():
    row = {
        "question": {"problem": "What is 1 + 2 + 3?"},
        "label": {
            "steps": [
                {
                    "completions": [{"text": "1 + 2 = 3.", "rating": 1}],
                    "human_completion": None,
                    "chosen_completion": 0,
                },
                {
                    "completions": [
                        {"text": "3 + 3 = 7.", "rating": -1},
                        {"text": "3 + 3 = 6.", "rating": 1},
                    ],
                    "human_completion": None,
                    "chosen_completion": 1,
                },
                {
                    "completions": [{"text": "Hmm.", "rating": 0}],
                    "human_completion": {"text": "So 6."},
                    "chosen_completion": None,
                },
                {
                    "completions": [{"text": "# Answer\n\n6", "rating": 1}],
                    "human_completion": None,
                    "chosen_completion": 0,
                },
            ],
            "finish_reason": "solution",
        },
    }
    expected = [
        dict(prompt="What is 1 + 2 + 3?", completions=["1 + 2 = 3.", "3 + 3 = 7."], labels=[True, False]),
        dict(
            prompt="What is 1 + 2 + 3?",
            completions=["1 + 2 = 3.", "3 + 3 = 6.", "Hmm."],
            labels=[True, True, False],
        ),
        dict(
            prompt="What is 1 + 2 + 3?",
            completions=["1 + 2 = 3.", "3 + 3 = 6.", "So 6.", "# Answer\n\n6"],
            labels=[True, True, True, True],
        ),
    ]
    assert prm_data.prm800k_to_trl(row) == expected
    assert prm_data.prm800k_to_trl(row, neutral_is_positive=True)[1]["labels"] == [True, True, True]
    with pytest.raises(PRMDataError, match="question.problem"):
        prm_data.prm800k_to_trl({"label": {}}, where="f.jsonl:7")


# ---------------------------------------------------------------- loss and training


def test_loss_equals_naive_cross_entropy_on_labelled_positions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 2)).astype(np.float32) * 3
    labels = np.full((3, 7), IGNORE, np.int32)
    labels[0, [2, 5]] = [1, 0]
    labels[1, 6] = 1
    labels[2, [0, 1, 3]] = [0, 0, 1]
    terms = []
    for b in range(3):  # naive loop
        for t in range(7):
            if labels[b, t] != IGNORE:
                z = logits[b, t].astype(np.float64)
                terms.append(np.log(np.exp(z).sum()) - z[labels[b, t]])
    nll = prm_training.step_label_nll(jnp.asarray(logits), jnp.asarray(labels))
    assert float(jnp.abs(nll[labels == IGNORE]).max()) == 0.0
    from purejax import reductions

    loss = reductions.masked_mean(nll, labels != IGNORE)
    np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-6)
    import torch

    ref = torch.nn.functional.cross_entropy(
        torch.tensor(logits).reshape(-1, 2), torch.tensor(labels).long().reshape(-1)
    )
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-6)


def _flat(model):
    return {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _tiny_batch(tokenizer, records):
    batch, _ = prm_data.encode_records(records, tokenizer)
    return PRMBatch(*(jnp.asarray(x) for x in batch))


def test_head_stage_freezes_the_body_and_trains_the_head(tokenizer, records):
    model = _classifier(len(tokenizer))
    before = _flat(model)
    optimizer = sft.make_optimizer(1e-2, 10)
    graphdef, state, frozen = prm_training.init_stage(model, "head", optimizer)
    assert {k[0][0] for k in nnx.to_flat_state(state.trainable)} == set(prm_training.HEAD_PARAMS)
    step = prm_training.make_prm_step(graphdef, optimizer)
    batch = _tiny_batch(tokenizer, records)
    for _ in range(3):
        state, _ = step(state, frozen, batch)
    after = _flat(nnx.merge(graphdef, state.trainable, frozen))
    for path, value in before.items():
        if path[0] in prm_training.HEAD_PARAMS:
            assert not np.array_equal(value, after[path]), path
        else:
            np.testing.assert_array_equal(value, after[path], err_msg=str(path))


def test_a_few_steps_reduce_the_loss(tokenizer, records):
    model = _classifier(len(tokenizer))
    optimizer = sft.make_optimizer(1e-2, 25)
    graphdef, state, frozen = prm_training.init_stage(model, "all", optimizer)
    step = prm_training.make_prm_step(graphdef, optimizer)
    batch = _tiny_batch(tokenizer, records)
    losses = []
    for _ in range(25):
        state, metrics = step(state, frozen, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses


def test_step_metrics_hand_computed():
    labels = np.full((3, 6), IGNORE, np.int32)
    labels[0, [1, 3, 5]] = [1, 0, 0]  # first error at step 2
    labels[1, [0, 2]] = [1, 1]  # no error
    labels[2, [2, 4]] = [1, 0]
    p = np.full((3, 6), 0.9)
    p[0, 5] = 0.1  # predicted first error at step 3: miss; bad step 2 missed
    p[2, 4] = 0.2  # hit
    m = prm_training.step_metrics(p, labels, kinds=["a", "b", "b", "a", "a", "a", "b"])
    assert m["steps"] == 7
    assert m["step_accuracy"] == pytest.approx(6 / 7)
    assert m["recall_good"] == 1.0 and m["recall_bad"] == pytest.approx(2 / 3)
    assert m["first_error_accuracy"] == 0.5 and m["no_error_accuracy"] == 1.0
    assert m["process_f1"] == pytest.approx(2 / 3)
    assert m["by_kind"]["b"]["count"] == 3 and m["by_kind"]["b"]["accuracy"] == pytest.approx(2 / 3)


def test_saved_prm_loads_in_transformers_with_the_same_logits(tmp_path, tokenizer, records):
    from tests._tiny_hf import load_hf_torch, torch_logits

    lm = init_model(
        DecoderConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            qkv_bias=True,
            model_type="qwen2",
            tie_word_embeddings=True,
        ),
        seed=1,
    )
    prm = prm_training.classifier_from_lm(lm, seed=0)
    body = {k: v for k, v in _flat(lm).items()}
    for path, value in _flat(prm).items():
        if path[0] not in prm_training.HEAD_PARAMS:
            np.testing.assert_array_equal(value, body[path])
    export_pretrained(prm, tokenizer, str(tmp_path / "prm"), {"note.json": {"note": "test"}})
    torch_model = load_hf_torch(str(tmp_path / "prm"))
    assert type(torch_model).__name__ == "Qwen2ForTokenClassification"
    batch = _tiny_batch(tokenizer, records)
    ours = np.asarray(prm(batch.input_ids, batch.attention_mask))
    ref = torch_logits(torch_model, np.asarray(batch.input_ids), np.asarray(batch.attention_mask))
    valid = np.asarray(batch.attention_mask)
    np.testing.assert_allclose(ours[valid], ref[valid], atol=2e-5)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path / "prm")).get_vocab() == tokenizer.get_vocab()


def test_config_errors_name_the_field():
    from purejax.tasks import arith_prm

    config = arith_prm.load_config("configs/arith_prm.py")
    with pytest.raises(ValueError, match=r"stages\.stage1_head\.trainable"):
        arith_prm.load_config("configs/arith_prm.py", ["stages.stage1_head.trainable=body"])
    assert list(config.stages) == ["stage1_head", "stage2_all"]
    with pytest.raises(FileNotFoundError, match="PRM800K"):
        two_stage = prm_training.load_config(
            "configs/qwen25_math_prm_two_stage.py", ["model.path=/nonexistent"]
        )
        prm_training.load_data(two_stage, tokenizer=None)
    paper = prm_training.load_config("configs/qwen25_math_prm_two_stage.py")
    stages = list(paper.stages.values())
    assert [(s.trainable, s.lr, s.epochs) for s in stages] == [("head", 1e-4, 3.0), ("all", 1e-6, 1.0)]
