"""purejax.engine: continuous batching over a paged KV pool equals `sampling.sample` (the
independent reference) token for token, greedy and sampled with the same key, with its
log-probs; pages are freed and reused (evictions included); paged attention equals
`decoder.attend`; bad arguments fail naming the argument."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import purejax.models as pm
from purejax import config as config_lib
from purejax import engine, sampling
from purejax import rollout as rollout_lib
from purejax.models.decoder import attend

VOCAB = 97
CONFIG = pm.DecoderConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    qkv_bias=True,
    model_type="qwen2",
)


@pytest.fixture(scope="module")
def model():
    # Weights x3: peaked logits, so greedy choices are not near-ties that float rounding flips.
    graphdef, state = nnx.split(pm.init_model(CONFIG, seed=0))
    return nnx.merge(graphdef, jax.tree.map(lambda x: x * 3.0 if x.ndim > 1 else x, state))


def _prompts(rows, width, seed=0):
    """Left-padded prompts of random real lengths 1..width."""
    rng = np.random.default_rng(seed)
    ids, mask = np.zeros((rows, width), np.int32), np.zeros((rows, width), np.int32)
    for b, length in enumerate(rng.integers(1, width + 1, rows)):
        ids[b, width - length :] = rng.integers(3, VOCAB, length)
        mask[b, width - length :] = 1
    return ids, mask


def _assert_same(got, ref, atol=2e-5):
    np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(ref.tokens))
    np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(ref.mask))
    np.testing.assert_allclose(np.asarray(got.logprobs), np.asarray(ref.logprobs), atol=atol)


# (rows, prompt width, max_new_tokens, slots, page_size, eos ids): slots < rows so slots are
# refilled many times; pages smaller than a row so each row spans several.
CASES = [
    (13, 7, 20, 4, 4, [5, 6, 7, 8, 9]),
    (9, 5, 12, 3, 3, None),
    (10, 8, 17, 2, 8, [11]),
    (7, 6, 9, 16, 5, list(range(10, 30))),  # slots > rows: one slot per row
]


@pytest.mark.parametrize("rows,width,new,slots,page,eos", CASES)
def test_greedy_equals_sample_token_for_token(model, rows, width, new, slots, page, eos):
    ids, mask = _prompts(rows, width, seed=rows)
    ref = sampling.sample(model, ids, mask, new, jax.random.key(0), temperature=0.0, eos_token_id=eos)
    out = engine.run(
        model,
        ids,
        mask,
        new,
        jax.random.key(0),
        temperature=0.0,
        eos_token_id=eos,
        slots=slots,
        page_size=page,
    )
    _assert_same(out.samples, ref)
    lengths = np.asarray(ref.mask).sum(1)
    # Without eviction every token after a row's first comes from exactly one useful slot-step.
    assert int(out.stats.evictions) == 0
    assert int(out.stats.prefills) == rows
    assert int(out.stats.useful_slot_steps) == lengths.sum() - rows
    assert int(out.stats.decode_steps) >= -(-(lengths.sum() - rows) // min(slots, rows))


def test_the_eos_cases_have_mixed_lengths(model):
    """The EOS mixtures above end some rows early and leave others at max_new_tokens, so the
    equality tests cover refills at different times."""
    rows, width, new, _, _, eos = CASES[0]
    ids, mask = _prompts(rows, width, seed=rows)
    for temperature in (0.0, 1.0):
        ref = sampling.sample(
            model, ids, mask, new, jax.random.key(0), temperature=temperature, eos_token_id=eos
        )
        lengths = np.asarray(ref.mask).sum(1)
        assert (lengths < new).any() and (lengths == new).any(), lengths


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 5, 1.0), (1.2, 0, 0.8), (0.9, 7, 0.9)]
)
def test_sampled_equals_sample_for_the_same_key(model, temperature, top_k, top_p):
    """Row b's token i uses sample()'s random numbers for it, whichever slot decodes it."""
    rows, width, new, slots, page, eos = CASES[0]
    ids, mask = _prompts(rows, width, seed=1)
    kwargs = dict(temperature=temperature, top_k=top_k, top_p=top_p, eos_token_id=eos)
    ref = sampling.sample(model, ids, mask, new, jax.random.key(7), **kwargs)
    got = engine.sample_continuous(
        model, ids, mask, new, jax.random.key(7), slots=slots, page_size=page, **kwargs
    )
    _assert_same(got, ref)
    other = engine.sample_continuous(
        model, ids, mask, new, jax.random.key(8), slots=slots, page_size=page, **kwargs
    )
    assert (np.asarray(other.tokens) != np.asarray(got.tokens)).any()  # the key matters


def test_logprobs_equal_a_full_forward(model):
    """The recorded log-probs are those of the tokens under the full (uncached) forward."""
    rows, width, new, slots, page, eos = CASES[0]
    ids, mask = _prompts(rows, width, seed=2)
    out = engine.sample_continuous(
        model, ids, mask, new, jax.random.key(3), eos_token_id=eos, slots=slots, page_size=page
    )
    full_ids = jnp.concatenate([jnp.asarray(ids), out.tokens], axis=1)
    full_mask = jnp.concatenate([jnp.asarray(mask), out.mask.astype(jnp.int32)], axis=1)
    expected = pm.token_logprobs(model, full_ids, full_mask)[:, width:]
    valid = np.asarray(out.mask)
    np.testing.assert_allclose(np.asarray(out.logprobs)[valid], np.asarray(expected)[valid], atol=1e-4)
    assert (np.asarray(out.logprobs)[~valid] == 0).all()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_pool_of_one_row_evicts_and_still_equals_sample(model, temperature):
    """With pages for one whole row only (far less than rows x max length), rows wait for
    pages, get evicted and are decoded again; the outputs do not change."""
    rows, width, new, slots, page = 11, 7, 20, 4, 4
    ids, mask = _prompts(rows, width, seed=3)
    eos = [5, 6, 7, 8, 9]
    minimum = engine.pages_per_row(width, new, page)
    ref = sampling.sample(model, ids, mask, new, jax.random.key(5), temperature=temperature, eos_token_id=eos)
    out = engine.run(
        model, ids, mask, new, jax.random.key(5), temperature=temperature, eos_token_id=eos,
        slots=slots, page_size=page, num_pages=minimum,
    )  # fmt: skip
    _assert_same(out.samples, ref)
    assert int(out.stats.evictions) > 0
    assert int(out.stats.prefills) == rows + int(out.stats.evictions)
    assert int(out.stats.peak_pages) <= minimum < rows * minimum


def test_paged_attention_equals_attend_over_the_gathered_pages():
    """The online softmax over page columns equals one softmax over the slots' positions laid
    out contiguously, including a first column with no visible position (left padding)."""
    rng = np.random.default_rng(0)
    w, n, k, h, page, pages, j = 3, 4, 2, 8, 4, 10, 3
    q = jnp.asarray(rng.standard_normal((w, n, h)), jnp.float32)
    k_pool = jnp.asarray(rng.standard_normal((pages, k, h, page)), jnp.float32)
    v_pool = jnp.asarray(rng.standard_normal((pages, k, page, h)), jnp.float32)
    table = jnp.asarray([[3, 7, 1], [0, 2, 9], [5, 4, 8]], jnp.int32)
    visible = rng.random((w, j * page)) < 0.6
    visible[0, :page] = False  # a column with nothing visible, before visible ones
    visible[:, -1] = True
    got = engine.paged_attention(q, k_pool, v_pool, table, jnp.asarray(visible), jnp.int32(j))
    k_wkhs = k_pool[table].transpose(0, 2, 3, 1, 4).reshape(w, k, h, j * page)
    v_wksh = v_pool[table].transpose(0, 2, 1, 3, 4).reshape(w, k, j * page, h)
    expected = attend(q[:, None], k_wkhs, v_wksh, jnp.asarray(visible)[:, None])[:, 0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
    # Only columns < `columns` are read: with 2, the third column's positions do not count.
    hidden = visible.copy()
    hidden[:, 2 * page :] = False
    hidden[:, 2 * page - 1] = True
    unread = k_pool.at[table[:, 2]].set(jnp.nan)  # the third column's pages: NaN changes nothing
    got = engine.paged_attention(q, unread, v_pool, table, jnp.asarray(hidden), jnp.int32(2))
    expected = attend(q[:, None], k_wkhs, v_wksh, jnp.asarray(hidden)[:, None])[:, 0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(slots=0), "slots must be an int >= 1"),
        (dict(slots=2.5), "slots must be an int >= 1"),
        (dict(page_size=0), "page_size must be an int >= 1"),
        (dict(num_pages=3), "num_pages must be an int >= 5"),
    ],
)
def test_bad_arguments_fail_naming_the_argument(model, kwargs, match):
    ids, mask = _prompts(3, 7)
    args = dict(slots=2, page_size=4) | kwargs
    with pytest.raises(ValueError, match=match):
        engine.sample_continuous(model, ids, mask, 12, jax.random.key(0), **args)  # 7 + 11 -> 5 pages


def test_sample_rollout_continuous_equals_static_per_seed_and_chunk(model):
    """rollout.engine='continuous' in the trainer's rollout: every seed and chunk draws what
    'static' draws for the same keys."""
    graphdef, state = nnx.split(model)
    params = jax.tree.map(lambda x: jnp.stack([x, x * 1.1]), state)  # two seeds' policies
    ids, mask = _prompts(8, 6, seed=4)
    ids, mask = np.stack([ids, ids[::-1]]), np.stack([mask, mask[::-1]])
    keys = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
    outs = {}
    for name in ("static", "continuous"):
        rollout = ml_collections.ConfigDict(
            dict(engine=name, sample_batch=4, max_new_tokens=9, temperature=1.0, top_k=0, top_p=1.0)
        )
        outs[name] = rollout_lib.sample_rollout(
            graphdef, params, ids, mask, keys, rollout, eos_ids=[5, 6, 7, 8, 9], pad_id=0
        )
    assert outs["continuous"].tokens.shape == (2, 8, 9)
    _assert_same(outs["continuous"], outs["static"])


def test_the_engine_is_a_checked_config_field():
    config = config_lib.defaults()
    config.rewards.prm = config_lib.reward_source("prm")
    assert config.rollout.engine == "static"
    config.rollout.engine = "contiuous"
    with pytest.raises(config_lib.ConfigError, match=r"config.rollout.engine.*Did you mean 'continuous'"):
        config_lib.validate(config)
    config.rollout.engine = "continuous"
    config_lib.validate(config)
    # On a device mesh the trainer refuses it at start-up, naming the field.
    mesh = types.SimpleNamespace(mesh=types.SimpleNamespace(devices=np.empty((2, 2, 1))))
    with pytest.raises(config_lib.ConfigError, match=r"config.rollout.engine: .*4 devices; use 'static'"):
        rollout_lib.check_engine(config.rollout, mesh)
    rollout_lib.check_engine(config.rollout, None)
    config.rollout.engine = "static"
    rollout_lib.check_engine(config.rollout, mesh)


@pytest.mark.slow
def test_the_trainer_with_the_continuous_engine_trains_as_with_the_static_one(
    smoke_config, task, uninterrupted, tmp_path
):
    """configs/smoke.py with rollout.engine='continuous': the first two RL steps log what the
    static sampler's run logs (the same tokens, so the same rewards and updates)."""
    from purejax import trainer as trainer_lib
    from purejax.metrics_log import read_metrics

    config = ml_collections.ConfigDict(smoke_config.to_dict())
    config.rollout.engine = "continuous"
    trainer_lib.Trainer(config, task, str(tmp_path), show_progress=False).run(stop_after=2)
    got = read_metrics(str(tmp_path / "metrics.jsonl"))
    reference = read_metrics(str(uninterrupted[0] / "metrics.jsonl"))[: len(got)]
    assert [r["step"] for r in got] == [r["step"] for r in reference] and len(got) >= 2
    for ours, theirs in zip(got, reference):
        keys = sorted(k for k in theirs if "/time/" not in k)
        assert sorted(k for k in ours if "/time/" not in k) == keys
        for k in keys:
            if isinstance(theirs[k], float):
                assert ours[k] == pytest.approx(theirs[k], rel=1e-5, abs=1e-6, nan_ok=True), k
            else:
                assert ours[k] == theirs[k], k
