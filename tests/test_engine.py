"""purejax.engine: continuous batching over a paged KV pool equals `sampling.sample` (the
independent reference) token for token, greedy and sampled with the same key, with its
log-probs; pages are freed and reused (evictions included); the Pallas paged-attention
kernels (in the interpreter) give the same tokens; bad arguments fail naming the argument.
The pool's layouts and attention alone: tests/test_paged_kv.py."""

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
    stats = jax.tree.map(int, out.stats)
    assert stats.useful_slot_steps <= stats.slot_steps <= stats.decode_steps * min(slots, rows)


@pytest.mark.parametrize(
    "slots,widths", [(48, (48, 24, 12)), (64, (64, 32, 16)), (4, (4, 2, 1)), (3, (3, 1)), (2, (2, 1)), (1, (1,))]
)
def test_tail_widths_halve_twice_at_most(slots, widths):
    assert engine.tail_widths(slots) == widths


def test_the_tail_decodes_narrower_with_the_same_tokens(model):
    """Once the queue drains the live slots move to the front and decode at a half, then a
    quarter width: fewer slot-steps than full width, and still `sample`'s tokens (sampled,
    so every row's random numbers must follow it to its new slot)."""
    rows, width, new, slots, page, eos = 12, 5, 24, 8, 4, [5, 6, 7, 8, 9]
    ids, mask = _prompts(rows, width, seed=6)
    kwargs = dict(temperature=1.0, eos_token_id=eos)
    ref = sampling.sample(model, ids, mask, new, jax.random.key(4), **kwargs)
    out = engine.run(model, ids, mask, new, jax.random.key(4), slots=slots, page_size=page, **kwargs)
    _assert_same(out.samples, ref)
    lengths = np.asarray(ref.mask).sum(1)
    assert (lengths < new).any() and (lengths == new).any(), lengths  # a tail to narrow
    stats = jax.tree.map(int, out.stats)
    assert stats.slot_steps < stats.decode_steps * slots
    assert stats.useful_slot_steps == lengths.sum() - rows


# The TPU kernel rounds keys and values to bfloat16 (see tests/test_paged_kv.py), which moves
# log-probs by up to 6e-4 here; tokens must still match.
@pytest.mark.parametrize("attention,logprob_atol", [("pallas_gpu", 1e-4), ("pallas_tpu", 3e-3)])
def test_the_pallas_kernels_give_the_same_tokens(model, attention, logprob_atol):
    """The engine with jax.experimental's paged-attention kernel (run in Pallas' interpreter,
    as no GPU or TPU is here) in place of the jnp form: `sample`'s tokens, sampled with
    refills and several pages per row, and its log-probs."""
    rows, width, new, slots, page, eos = 7, 6, 10, 3, 4, [5, 6, 7, 8, 9]
    ids, mask = _prompts(rows, width, seed=4)
    kwargs = dict(temperature=1.0, eos_token_id=eos)
    ref = sampling.sample(model, ids, mask, new, jax.random.key(2), **kwargs)
    out = engine.run(
        model, ids, mask, new, jax.random.key(2), slots=slots, page_size=page,
        attention=attention, interpret=True, **kwargs,
    )  # fmt: skip
    _assert_same(out.samples, ref, atol=logprob_atol)
    assert int(out.stats.prefills) == rows > slots
    assert np.asarray(ref.mask).sum() > rows * page  # rows span more than one page


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


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(slots=0), "slots must be an int >= 1"),
        (dict(slots=2.5), "slots must be an int >= 1"),
        (dict(page_size=0), "page_size must be an int >= 1"),
        (dict(num_pages=3), "num_pages must be an int >= 5"),
        (dict(attention="flash"), "paged attention must be one of"),
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
            | dict(slots=3, page_size=4, num_pages=0, paged_attention="auto")
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


def test_the_engines_pool_is_checked_at_start_up():
    config = config_lib.defaults()
    config.rewards.prm = config_lib.reward_source("prm")
    config.rollout.update(engine="continuous", max_prompt_len=100, max_new_tokens=29, page_size=16)
    for field, bad, match in [
        ("slots", 0, "config.rollout.slots"),
        ("page_size", -1, "config.rollout.page_size"),
        ("num_pages", -1, "config.rollout.num_pages"),
        ("paged_attention", "pallas_gpux", "config.rollout.paged_attention.*Did you mean 'pallas_gpu'"),
    ]:
        broken = config.copy_and_resolve_references()
        broken.rollout[field] = bad
        with pytest.raises(config_lib.ConfigError, match=match):
            config_lib.validate(broken)
    config.rollout.num_pages = 7  # one row: 100 + 28 positions = 8 pages of 16
    with pytest.raises(config_lib.ConfigError, match=r"config.rollout.num_pages: .*8 pages of 16 .*got 7"):
        rollout_lib.check_engine(config.rollout, None)
    config.rollout.num_pages = 8
    rollout_lib.check_engine(config.rollout, None)


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
