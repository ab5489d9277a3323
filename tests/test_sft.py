"""SFT step and the cached warm start of the arithmetic miniature."""

import concurrent.futures
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from purejax import sft
from purejax.models import DecoderConfig, init_model
from purejax.tasks import arith, warmstart
from purejax.tasks.tokenizer import build_tokenizer

CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "arith_sft.py")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(vocab_size=160, n_problems=300, seed=0)


def _tiny_model(vocab, seed=0):
    config = DecoderConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        tie_word_embeddings=True,
    )
    return init_model(config, seed)


def test_encode_examples_masks_the_response_and_eos(tokenizer):
    prompts = ["Question: Compute 3 + 4.\nAnswer:\n", "Question: Compute 1 + 1.\nAnswer:\n"]
    responses = ["3 + 4 = 7\n\nThe answer is \\boxed{7}.", "1 + 1 = 2"]
    batch = sft.encode_examples(tokenizer, prompts, responses, max_len=48)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(r, add_special_tokens=False)["input_ids"]
        n = len(p_ids) + len(r_ids) + 1
        assert batch.input_ids[i, :n].tolist() == p_ids + r_ids + [tokenizer.eos_token_id]
        assert (batch.input_ids[i, n:] == tokenizer.pad_token_id).all()
        assert batch.attention_mask[i].tolist() == [True] * n + [False] * (48 - n)
        assert batch.loss_mask[i].tolist() == (
            [False] * len(p_ids) + [True] * (len(r_ids) + 1) + [False] * (48 - n)
        )
    with pytest.raises(ValueError, match="example 0 needs .* tokens .* raise max_len"):
        sft.encode_examples(tokenizer, prompts, responses, max_len=10)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        sft.encode_examples(tokenizer, prompts, responses[:1], max_len=48)


def test_token_nll_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    ids = rng.integers(0, 7, (2, 5))
    got = np.asarray(sft.token_nll(jnp.asarray(logits), jnp.asarray(ids)))
    want = np.zeros((2, 5))
    for b in range(2):
        for t in range(1, 5):
            z = logits[b, t - 1].astype(np.float64)
            want[b, t] = np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[b, t]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_loss_ignores_prompt_targets_and_padding(tokenizer):
    model = _tiny_model(len(tokenizer))
    graphdef, params = nnx.split(model)
    loss_fn = jax.jit(lambda p, b: sft.sft_loss(nnx.merge(graphdef, p), b)[0])
    batch = sft.encode_examples(tokenizer, ["Question: Compute 3 + 4.\nAnswer:\n"], ["3 + 4 = 7"], max_len=32)
    loss = loss_fn(params, jax.tree.map(jnp.asarray, batch))
    # Changing padded tokens changes neither the context of real tokens nor the targets.
    ids = batch.input_ids.copy()
    ids[~batch.attention_mask] = 5
    loss2 = loss_fn(params, jax.tree.map(jnp.asarray, batch._replace(input_ids=ids)))
    np.testing.assert_allclose(loss, loss2, rtol=1e-6)
    # Reference: mean of -log p over the response tokens only.
    logits = np.asarray(
        jax.jit(lambda p, i, m: nnx.merge(graphdef, p)(i, m))(
            params, jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask)
        )
    )
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    where = np.flatnonzero(batch.loss_mask[0])
    want = -np.mean([logp[0, t - 1, batch.input_ids[0, t]] for t in where])
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_sft_loss_decreases_on_a_tiny_run(tokenizer):
    problems = arith.make_problems("train", 32, seed=0)
    data = sft.encode_examples(
        tokenizer, [p.prompt for p in problems], [arith.render_trace(p) for p in problems], max_len=96
    )
    model = _tiny_model(len(tokenizer))
    optimizer = sft.make_optimizer(1e-2, 30, 3)
    graphdef, state = sft.init_sft_state(model, optimizer)
    step = sft.make_sft_step(graphdef, optimizer)
    batch = jax.tree.map(jnp.asarray, data)
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
        assert np.isfinite(float(metrics["grad_norm"]))
    assert int(state.step) == 30
    assert losses[-1] < 0.6 * losses[0]


def test_make_optimizer_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        sft.make_optimizer(1e-3, total_steps=10, warmup_steps=10)


# ---------------------------------------------------------------- warm start and its cache


def _tiny_config(cache_dir):
    config = warmstart.load_sft_config(
        CONFIG_PATH,
        [
            f"cache_dir='{cache_dir}'",
            "tokenizer.problems=200",
            "tokenizer.vocab_size=150",
            "data.problems=64",
            "model.hidden_size=32",
            "model.intermediate_size=64",
            "model.num_layers=1",
            "model.num_heads=2",
            "model.num_kv_heads=1",
            "train.steps=4",
            "train.batch_size=8",
            "train.warmup_steps=1",
            "train.check_from=0",
            "eval.problems=8",
            "eval.dev_problems=8",
            "eval.batch_size=8",
            "eval.max_new_tokens=8",
        ],
    )
    return config


def _entries(directory):
    """What a directory of the cache holds, without the empty lock files (purejax.cache.building)."""
    return sorted(n for n in os.listdir(directory) if not n.endswith(".lock"))


def test_warm_start_is_cached_and_reused(tmp_path, monkeypatch):
    config = _tiny_config(tmp_path)
    first = warmstart.warm_start(config, progress=False)
    assert first.trained and first.path == warmstart.cache_path(config)
    assert first.path.startswith(str(tmp_path))
    for name in ("config.json", "model.safetensors", "tokenizer.json", warmstart.MARKER):
        assert os.path.isfile(os.path.join(first.path, name))
    assert 0.0 <= first.metrics["accuracy"] <= 1.0
    assert first.metrics["accuracy"] == first.metrics["oracle_accuracy"]
    # Only the final directory remains: no temporary siblings.
    assert _entries(os.path.dirname(first.path)) == [os.path.basename(first.path)]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached warm start was retrained")

    monkeypatch.setattr(warmstart, "train_and_save", no_training)
    second = warmstart.warm_start(config, progress=False)
    assert not second.trained and second.path == first.path
    assert second.metrics == json.loads(json.dumps(first.metrics))

    # The saved checkpoint loads back with the project's loaders.
    from transformers import AutoTokenizer
    from purejax.models import load_pretrained

    model = load_pretrained(first.path)
    tok = AutoTokenizer.from_pretrained(first.path)
    assert model.config.vocab_size == len(tok) and model.config.eos_token_id == tok.eos_token_id


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    config = _tiny_config(tmp_path)

    def crash(cfg, out_dir, progress=True):
        with open(os.path.join(out_dir, "model.safetensors"), "w") as f:
            f.write("partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C half-way through writing

    monkeypatch.setattr(warmstart, "train_and_save", crash)
    with pytest.raises(KeyboardInterrupt):
        warmstart.warm_start(config, progress=False)
    root = os.path.dirname(warmstart.cache_path(config))
    assert _entries(root) == []  # neither the final directory nor a temporary one

    # A complete write appears all at once under the final name.
    def fake_train(cfg, out_dir, progress=True):
        assert not os.path.exists(warmstart.cache_path(cfg))
        with open(os.path.join(out_dir, warmstart.MARKER), "w") as f:
            json.dump({"metrics": {"accuracy": 0.5}}, f)
        return {"accuracy": 0.5}

    monkeypatch.setattr(warmstart, "train_and_save", fake_train)
    result = warmstart.warm_start(config, progress=False)
    assert result.trained and _entries(root) == [os.path.basename(result.path)]
    again = warmstart.warm_start(config, progress=False)
    assert not again.trained and again.metrics == {"accuracy": 0.5}


def test_processes_asking_for_one_warm_start_at_once_train_it_once(tmp_path, monkeypatch):
    """Side-by-side runs (purejax.parallel_runs) share a cold cache: the lock makes the second
    wait and read the first one's warm start. flock excludes two open files in one process as
    it excludes two processes, so threads stand in for them."""
    config = _tiny_config(tmp_path)
    trained = []

    def slow_train(cfg, out_dir, progress=True):
        trained.append(out_dir)
        time.sleep(0.5)  # long enough that the other thread asks while this one trains
        with open(os.path.join(out_dir, warmstart.MARKER), "w") as f:
            json.dump({"metrics": {"accuracy": 0.5}}, f)
        return {"accuracy": 0.5}

    monkeypatch.setattr(warmstart, "train_and_save", slow_train)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: warmstart.warm_start(config, progress=False), range(2)))
    assert len(trained) == 1
    assert sorted(r.trained for r in results) == [False, True]
    assert results[0].path == results[1].path == warmstart.cache_path(config)


def test_training_stops_at_the_first_check_reaching_stop_accuracy(tmp_path, monkeypatch):
    config = _tiny_config(tmp_path)
    config.unlock()
    config.train.update(steps=10, check_every=2, check_from=1, stop_accuracy=0.4)
    config.lock()
    seen = iter([0.1, 0.5, 0.9])  # the dev accuracy at steps 2, 4, 6
    monkeypatch.setattr(warmstart, "accuracy", lambda model, tokenizer, problems, *args: next(seen))
    metrics = warmstart.warm_start(config, progress=False).metrics
    assert metrics["steps"] == 4 and metrics["dev_accuracy"] == 0.5
    assert [tuple(c) for c in metrics["dev_checks"]] == [(2, 0.1), (4, 0.5)]


def test_dev_problems_are_unseen_by_training_and_by_the_heldout_set():
    config = warmstart.load_sft_config(CONFIG_PATH)
    spec = warmstart.spec_from_config(config)
    dev = {p.question for p in warmstart.dev_problems(config)}
    train = {p.question for p in arith.make_problems("train", config.data.problems, config.seed, spec)}
    assert len(dev) == config.eval.dev_problems and not dev & train
    assert all(arith.split_of(p, spec) == "train" for p in warmstart.dev_problems(config))


def test_stop_settings_are_checked():
    with pytest.raises(ValueError, match="config.train.stop_accuracy"):
        warmstart.load_sft_config(CONFIG_PATH, ["train.stop_accuracy=1.5"])
    with pytest.raises(ValueError, match="config.train.check_from"):
        warmstart.load_sft_config(CONFIG_PATH, ["train.check_from=5000"])
    with pytest.raises(ValueError, match="config.eval.dev_problems"):
        warmstart.load_sft_config(CONFIG_PATH, ["eval.dev_problems=0"])


def test_builtin_policy_path_names_the_sft_seed():
    from purejax.tasks.builtin import warm_start_seed

    assert warm_start_seed("builtin:arith") == 0 and warm_start_seed("builtin:arith@2") == 2
    with pytest.raises(ValueError, match="policy.path.*non-negative integer"):
        warm_start_seed("builtin:arith@x")


def test_builtin_policy_path_names_the_warm_start_and_its_seed():
    """builtin:arith_guess[@N] / _merged: the default SFT with 2% guess / 10% merged traces; nothing else differs."""
    from purejax.tasks.builtin import sft_config_for

    default, guess = sft_config_for("builtin:arith"), sft_config_for("builtin:arith_guess@2")
    assert dict(default.data.mix) == {"correct": 0.6, "error": 0.25, "filler": 0.15, "guess": 0.0, "merged": 0.0}
    assert guess.data.mix.guess == 0.02 and guess.seed == 2 and default.seed == 0
    edited = default.copy_and_resolve_references()
    edited.data.mix.guess, edited.seed = 0.02, 2
    assert warmstart.config_hash(edited) == warmstart.config_hash(guess)
    merged = sft_config_for("builtin:arith_merged")
    edited = default.copy_and_resolve_references()
    edited.data.mix.merged = 0.1
    assert warmstart.config_hash(edited) == warmstart.config_hash(merged)


def test_config_hash_covers_everything_but_the_cache_dir(tmp_path):
    a = _tiny_config(tmp_path / "a")
    b = _tiny_config(tmp_path / "b")
    assert warmstart.config_hash(a) == warmstart.config_hash(b)
    c = warmstart.load_sft_config(CONFIG_PATH, ["train.steps=600"])
    d = warmstart.load_sft_config(CONFIG_PATH, ["train.steps=700"])
    assert warmstart.config_hash(c) != warmstart.config_hash(d)


def test_config_is_locked_and_checked():
    config = warmstart.load_sft_config(CONFIG_PATH)
    with pytest.raises(AttributeError):
        config.train.stpes = 3
    with pytest.raises(ValueError, match="train.stpes.*unknown key.*'steps'"):
        warmstart.load_sft_config(CONFIG_PATH, ["train.stpes=3"])
    with pytest.raises(ValueError, match="config.data.mix"):
        warmstart.load_sft_config(CONFIG_PATH, ["data.mix.correct=-1.0"])
    with pytest.raises(ValueError, match="config.train.warmup_steps"):
        warmstart.load_sft_config(CONFIG_PATH, ["train.warmup_steps=100000"])
    with pytest.raises(ValueError, match="config.task"):
        warmstart.load_sft_config(CONFIG_PATH, ["task.max_ops=1"])
