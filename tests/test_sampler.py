"""purejax.sampling: cached == uncached decoding, greedy == transformers generate, logprobs,
EOS handling, determinism, top-k / top-p, no recompilation, input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import purejax.models as pm
from purejax import sampling, token_choice
from tests._tiny_hf import load_hf_torch, padded_batch, save_tiny_hf

LENGTHS, WIDTH, NEW = [6, 2, 4, 1], 6, 10
_forward = nnx.jit(lambda model, ids, mask: model(ids, mask))
_token_logprobs = nnx.jit(pm.token_logprobs, static_argnames="temperature")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            path = save_tiny_hf(tmp_path_factory.mktemp(name), name)
            cache[name] = (path, pm.load_pretrained(path))
        return cache[name]

    return get


def _prompts(vocab, seed=0, lengths=LENGTHS, width=WIDTH):
    return padded_batch(np.random.default_rng(seed), vocab, lengths, width)


def _recomputed_logprobs(model, ids, mask, out, temperature=1.0):
    full_ids = jnp.concatenate([jnp.asarray(ids), out.tokens], axis=1)
    full_mask = jnp.concatenate([jnp.asarray(mask), out.mask.astype(jnp.int32)], axis=1)
    return _token_logprobs(model, full_ids, full_mask, temperature=temperature)[:, ids.shape[1] :]


def test_cached_decoding_logits_equal_full_forward(tiny):
    """Prefill + one-token steps through the KV cache give the full forward's logits."""
    _, model = tiny("qwen2_gqa")
    ids, mask = _prompts(211)
    rng = np.random.default_rng(1)
    cont = rng.integers(3, 211, (len(LENGTHS), 5)).astype(np.int32)
    full_ids = np.concatenate([ids, cont], 1)
    full_mask = np.concatenate([mask, np.ones_like(cont)], 1)
    expected = _forward(model, jnp.asarray(full_ids), jnp.asarray(full_mask))

    b, p = ids.shape
    slots = p + cont.shape[1]
    kv_mask = jnp.asarray(full_mask).astype(bool)
    pos = pm.positions_from_mask(jnp.asarray(full_mask))
    cache = model.init_cache(b, slots)
    h, cache = model.forward_cached(jnp.asarray(ids), pos[:, :p], cache, 0, kv_mask)
    got = [model.head(h)]
    step = jax.jit(lambda c, tok, pos_b1, slot: model.forward_cached(tok, pos_b1, c, slot, kv_mask))
    for i in range(cont.shape[1]):
        h, cache = step(cache, jnp.asarray(cont[:, i : i + 1]), pos[:, p + i : p + i + 1], p + i)
        got.append(model.head(h))
    got = jnp.concatenate(got, axis=1)
    valid = full_mask.astype(bool)
    assert float(jnp.abs(got - expected)[valid].max()) <= 1e-4


@pytest.mark.parametrize("name", ["qwen2_gqa", "llama_bias_tied"])
def test_greedy_matches_transformers_generate_on_padded_batch(tiny, name):
    path, model = tiny(name)
    reference = load_hf_torch(path)
    vocab = model.config.vocab_size
    ids, mask = _prompts(vocab, seed=2)
    out = sampling.sample(model, ids, mask, NEW, jax.random.key(0), temperature=0.0)
    with torch.no_grad():
        expected = reference.generate(
            input_ids=torch.tensor(ids).long(),
            attention_mask=torch.tensor(mask).long(),
            do_sample=False,
            max_new_tokens=NEW,
            min_new_tokens=NEW,
            pad_token_id=0,
        )
    np.testing.assert_array_equal(np.asarray(out.tokens), expected[:, WIDTH:].numpy())
    assert bool(out.mask.all())
    diff = float(jnp.abs(out.logprobs - _recomputed_logprobs(model, ids, mask, out)).max())
    print(f"\n[{name}] greedy: max |sampler logprob - forward logprob| = {diff:.2e}")
    assert diff <= 1e-4


def test_sampled_logprobs_match_forward_pass_at_temperature(tiny):
    _, model = tiny("llama_mha")
    ids, mask = _prompts(256, seed=3)
    out = sampling.sample(model, ids, mask, NEW, jax.random.key(1), temperature=0.7)
    diff = float(jnp.abs(out.logprobs - _recomputed_logprobs(model, ids, mask, out, 0.7)).max())
    print(f"\n[temperature 0.7] max |sampler logprob - forward logprob| = {diff:.2e}")
    assert diff <= 1e-4


def _truncated_reference(logits_bv, temperature, top_k, top_p):
    """Naive numpy: temperature, then top-k, then top-p; returns log-probs (-inf = removed)."""
    out = []
    for row in np.asarray(logits_bv, np.float64) / temperature:
        order = np.argsort(-row, kind="stable")
        keep = np.zeros_like(row, bool)
        keep[order[:top_k] if top_k else order] = True
        kept = np.where(keep, row, -np.inf)
        probs = np.exp(kept - kept.max())
        probs /= probs.sum()
        mass_before = np.cumsum(probs[order]) - probs[order]
        keep_p = np.zeros_like(keep)
        keep_p[order[mass_before < top_p]] = True
        kept = np.where(keep & keep_p, row, -np.inf)
        out.append(kept - np.log(np.exp(kept - kept.max()).sum()) - kept.max())
    return np.array(out)


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.6), (7, 0.8)])
def test_top_k_top_p_logprobs_and_support(tiny, top_k, top_p):
    """First sampled token: inside the truncated set, log-prob = naive truncated log-softmax."""
    _, model = tiny("qwen2_mqa_tied")
    ids, mask = _prompts(150, seed=4, lengths=[3] * 64, width=3)
    ids[:] = ids[0]  # 64 draws from one distribution
    out = sampling.sample(model, ids, mask, 1, jax.random.key(2), temperature=0.9, top_k=top_k, top_p=top_p)
    logits = _forward(model, jnp.asarray(ids[:1]), jnp.asarray(mask[:1]))[:, -1]
    reference = _truncated_reference(logits, 0.9, top_k, top_p)[0]
    tokens = np.asarray(out.tokens[:, 0])
    assert np.all(np.isfinite(reference[tokens])), "sampled a token outside the top-k/top-p set"
    np.testing.assert_allclose(np.asarray(out.logprobs[:, 0]), reference[tokens], atol=1e-5)
    assert len(set(tokens.tolist())) > 1


def test_sampling_frequencies_follow_the_softmax(tiny):
    """First-token frequencies over n draws match softmax(logits / T): the total-variation
    distance stays within 2x its sampling-noise expectation 0.5 sum_v sqrt(2 p_v (1-p_v) / (pi n))."""
    _, model = tiny("qwen2_mqa_tied")
    n, temperature = 4096, 0.5
    ids, mask = _prompts(150, seed=5, lengths=[4], width=4)
    logits = _forward(model, jnp.asarray(ids), jnp.asarray(mask))[0, -1]
    probs = np.asarray(jax.nn.softmax(logits / temperature), np.float64)
    out = sampling.sample(
        model, np.repeat(ids, n, 0), np.repeat(mask, n, 0), 1, jax.random.key(3), temperature=temperature
    )
    freq = np.bincount(np.asarray(out.tokens[:, 0]), minlength=150) / n
    expected_tv = 0.5 * np.sum(np.sqrt(2 * probs * (1 - probs) / (np.pi * n)))
    at_temperature_1 = np.asarray(jax.nn.softmax(logits), np.float64)
    assert 0.5 * np.abs(at_temperature_1 - probs).sum() > 4 * expected_tv  # the test can fail
    assert 0.5 * np.abs(freq - probs).sum() < 2 * expected_tv


def test_top_k_1_and_tiny_top_p_equal_greedy(tiny):
    _, model = tiny("llama_bias_tied")
    ids, mask = _prompts(300, seed=6)
    greedy = sampling.sample(model, ids, mask, NEW, jax.random.key(0), temperature=0.0)
    top1 = sampling.sample(model, ids, mask, NEW, jax.random.key(5), temperature=1.3, top_k=1)
    nucleus = sampling.sample(model, ids, mask, NEW, jax.random.key(6), temperature=1.0, top_p=1e-6)
    np.testing.assert_array_equal(top1.tokens, greedy.tokens)
    np.testing.assert_array_equal(nucleus.tokens, greedy.tokens)
    np.testing.assert_allclose(top1.logprobs, 0.0, atol=1e-6)  # one candidate: probability 1


def test_temperature_sampling_is_deterministic_given_rng(tiny):
    _, model = tiny("qwen2_gqa")
    ids, mask = _prompts(211, seed=7)
    a = sampling.sample(model, ids, mask, NEW, jax.random.key(11), temperature=1.0)
    b = sampling.sample(model, ids, mask, NEW, jax.random.key(11), temperature=1.0)
    c = sampling.sample(model, ids, mask, NEW, jax.random.key(12), temperature=1.0)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    assert not np.array_equal(a.tokens, c.tokens)


@pytest.mark.parametrize("as_list", [False, True])
def test_per_row_eos_stops_and_masks(tiny, as_list):
    _, model = tiny("qwen2_gqa")
    ids, mask = _prompts(211, seed=8)
    free = np.asarray(sampling.sample(model, ids, mask, NEW, jax.random.key(0), temperature=0.0).tokens)
    eos = int(free[0, 3])  # row 0 emits it at step 3 (or earlier)
    eos_ids = [eos, 210] if as_list else eos
    out = sampling.sample(
        model, ids, mask, NEW, jax.random.key(0), temperature=0.0, eos_token_id=eos_ids, pad_token_id=0
    )
    tokens, valid = np.asarray(out.tokens), np.asarray(out.mask)
    stops = 0
    for row_free, row_tok, row_valid, row_lp in zip(free, tokens, valid, np.asarray(out.logprobs)):
        hits = np.flatnonzero(np.isin(row_free, np.atleast_1d(eos_ids)))
        end = hits[0] + 1 if hits.size else NEW  # valid through the EOS, inclusive
        stops += bool(hits.size)
        np.testing.assert_array_equal(row_tok[:end], row_free[:end])
        assert row_valid[:end].all() and not row_valid[end:].any()
        assert np.all(row_tok[end:] == 0) and np.all(row_lp[end:] == 0)
    assert stops >= 1 and not valid[0, 4:].any()


def test_early_exit_when_every_row_finished(tiny):
    """Once all rows emitted EOS the loop stops; outputs keep their full fixed width."""
    _, model = tiny("llama_mha")
    ids, mask = _prompts(256, seed=9)
    free = np.asarray(sampling.sample(model, ids, mask, NEW, jax.random.key(0), temperature=0.0).tokens)
    eos = sorted(set(free[:, 0].tolist()))  # every row stops at its first token
    out = sampling.sample(model, ids, mask, NEW, jax.random.key(0), temperature=0.0, eos_token_id=eos)
    assert out.tokens.shape == (len(LENGTHS), NEW)
    np.testing.assert_array_equal(out.tokens[:, 0], free[:, 0])
    assert bool(out.mask[:, 0].all()) and not bool(out.mask[:, 1:].any())


def test_second_call_with_same_shapes_does_not_retrace(tiny):
    _, model = tiny("qwen2_mqa_tied")
    ids, mask = _prompts(150, seed=10)
    sampling.sample(model, ids, mask, 7, jax.random.key(0), temperature=0.8, top_k=3)
    traces = sampling.TRACE_COUNTS["sample"]
    for temperature, seed in [(0.8, 1), (1.5, 2)]:  # temperature is traced, not static
        sampling.sample(model, ids + 1, mask, 7, jax.random.key(seed), temperature=temperature, top_k=3)
    assert sampling.TRACE_COUNTS["sample"] == traces
    sampling.sample(model, ids, mask, 8, jax.random.key(0), temperature=0.8, top_k=3)
    assert sampling.TRACE_COUNTS["sample"] == traces + 1  # a new width is a new program


def test_chunked_argmax_equals_argmax_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (16, 1024)).astype(np.float32)  # many ties
    x[0] = -np.inf
    x[1, 900] = 100.0
    index, best = token_choice.argmax_first(jnp.asarray(x))
    np.testing.assert_array_equal(index, np.argmax(x, -1))
    np.testing.assert_array_equal(best, np.max(x, -1))


def _total_variation_bound(probs, n):
    """2x the expected total-variation distance of n draws' frequencies from probs."""
    return 2 * 0.5 * np.sum(np.sqrt(2 * probs * (1 - probs) / (np.pi * n)))


@pytest.mark.parametrize("vocab", [1000, 100])  # two levels with a padded last chunk; one level
def test_inverse_cdf_draws_follow_the_weights_and_skip_zero_weights(vocab):
    rng = np.random.default_rng(0)
    weight = rng.exponential(size=vocab).astype(np.float32) ** 3
    weight[:5] = 0.0  # leading zeros: a target of 0 must not pick them
    weight[-3:] = 0.0  # trailing zeros: a target above the rounded sum must not pick them
    if vocab > 256:
        weight[128:256] = 0.0  # a whole empty chunk
    n = 50_000
    rows = jnp.broadcast_to(jnp.asarray(weight), (n, vocab))
    index, total = jax.jit(token_choice.draw)(rows, jax.random.key(0))
    probs = weight.astype(np.float64) / weight.sum()
    np.testing.assert_allclose(np.asarray(total), weight.sum(), rtol=1e-5)
    freq = np.bincount(np.asarray(index), minlength=vocab) / n
    assert np.all(freq[weight == 0] == 0)
    assert 0.5 * np.abs(freq - probs).sum() < _total_variation_bound(probs, n)


def test_inverse_cdf_with_one_positive_weight_always_draws_it():
    weight = np.zeros((4, 700), np.float32)
    for row, hot in enumerate([0, 127, 128, 699]):
        weight[row, hot] = 1e-30
    index, _ = token_choice.draw(jnp.asarray(weight), jax.random.key(1))
    np.testing.assert_array_equal(index, [0, 127, 128, 699])


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (0, 0.9), (5, 1.0), (0, 0.0)])
def test_nan_logits_still_give_token_ids_inside_the_vocabulary(top_k, top_p):
    """A broken model's NaN logits must not produce an id from the draw's padding (1000 -> 1024)."""
    logits = jnp.full((3, 1000), jnp.nan).at[1, :500].set(0.0)
    token, _ = token_choice.choose(
        logits, jax.random.key(0), jnp.float32(1.0), jnp.float32(top_p), greedy=top_p == 0.0,
        top_k=top_k, use_top_p=0.0 < top_p < 1.0,
    )
    assert np.all((np.asarray(token) >= 0) & (np.asarray(token) < 1000))


@pytest.mark.parametrize("top_p", [1e-6, 0.3, 0.9, 0.999])
def test_bisected_nucleus_equals_the_sorted_definition(top_p):
    """Keep token i iff the mass of the tokens sorted before it is < top_p (naive numpy sort in
    float64); a token may differ only where that mass is within float32 rounding of the cut."""
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((32, 3000)) * rng.uniform(0.5, 4, (32, 1))
    weight = np.exp(logits - logits.max(-1, keepdims=True)).astype(np.float32)
    keep = np.asarray(jax.jit(token_choice.nucleus)(jnp.asarray(weight), jnp.float32(top_p)))
    for row, kept in zip(weight.astype(np.float64), keep):
        order = np.argsort(-row, kind="stable")
        before = np.cumsum(row[order]) - row[order]
        expected, at_cut = np.zeros_like(kept), np.zeros_like(kept)
        expected[order[before < top_p * row.sum()]] = True
        at_cut[order[np.abs(before - top_p * row.sum()) <= 1e-5 * row.sum()]] = True
        np.testing.assert_array_equal(kept[~at_cut], expected[~at_cut])
        assert (kept != expected).sum() <= 1


def test_top_p_sampling_frequencies_follow_the_truncated_softmax():
    """_choose end to end on a 1000-token vocabulary: temperature, the bisected nucleus and
    the two-level draw give the naive truncated softmax's frequencies and log-probs."""
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal(1000) * 2).astype(np.float32)
    n, temperature, top_p = 50_000, 0.8, 0.7
    reference = _truncated_reference(logits[None], temperature, 0, top_p)[0]
    token, logp = jax.jit(token_choice.choose, static_argnames=("greedy", "top_k", "use_top_p"))(
        jnp.broadcast_to(jnp.asarray(logits), (n, 1000)),
        jax.random.key(3),
        jnp.float32(temperature),
        jnp.float32(top_p),
        greedy=False,
        top_k=0,
        use_top_p=True,
    )
    token = np.asarray(token)
    probs = np.exp(reference)
    freq = np.bincount(token, minlength=1000) / n
    assert np.all(np.isfinite(reference[token]))
    np.testing.assert_allclose(np.asarray(logp), reference[token], atol=1e-5)
    assert 0.5 * np.abs(freq - probs).sum() < _total_variation_bound(probs, n)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(prompt_ids=np.zeros((2,), np.int32)), "prompt_ids"),
        (dict(prompt_ids=np.zeros((2, 3), np.float32)), "prompt_ids"),
        (dict(prompt_mask=np.ones((2, 4), np.int32)), "prompt_mask"),
        (dict(prompt_mask=np.ones((2, 3), np.float32)), "prompt_mask"),
        (dict(prompt_mask=np.array([[1, 1, 1], [0, 0, 0]])), "prompt_mask"),
        (dict(prompt_ids=np.full((2, 3), 999, np.int32)), "prompt_ids"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_k=-1), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(eos_token_id=[2, 5000]), "eos_token_id"),
        (dict(rng=jax.random.split(jax.random.key(0), 2)), "rng"),
    ],
)
def test_bad_inputs_name_the_argument(tiny, kwargs, match):
    _, model = tiny("qwen2_gqa")
    args = dict(
        prompt_ids=np.ones((2, 3), np.int32),
        prompt_mask=np.ones((2, 3), np.int32),
        max_new_tokens=4,
        rng=jax.random.key(0),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sampling.sample(model, **args)


@pytest.mark.parametrize("seed_map", ["loop", "vmap"])
def test_sample_seeds_equals_one_sample_per_seed(seed_map):
    """sample_seeds (one call over S policies) == S separate sample() calls: bit for bit with
    seed_map='loop', log-probs to float rounding with 'vmap'."""
    from purejax.models import DecoderConfig, init_model
    from purejax.sampling import sample_seeds

    cfg = DecoderConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2
    )
    models = [init_model(cfg, seed=s) for s in range(3)]
    graphdef = nnx.split(models[0])[0]
    params = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.split(m)[1] for m in models])
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 64, (3, 5, 7))
    mask = np.ones((3, 5, 7), bool)
    mask[:, 0, :3] = False  # a left-padded row
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(3)])
    for temperature in (1.0, 0.0):
        out = sample_seeds(
            graphdef, params, ids, mask, 9, keys, temperature=temperature, eos_token_id=3, seed_map=seed_map
        )
        shared = sample_seeds(
            graphdef, params, ids[0], mask[0], 9, keys, temperature=temperature, seed_map=seed_map
        )
        for s in range(3):
            ref = sampling.sample(models[s], ids[s], mask[s], 9, keys[s], temperature=temperature, eos_token_id=3)
            np.testing.assert_array_equal(out.tokens[s], ref.tokens)
            np.testing.assert_array_equal(out.mask[s], ref.mask)
            if seed_map == "loop":
                np.testing.assert_array_equal(out.logprobs[s], ref.logprobs)
            else:
                np.testing.assert_allclose(out.logprobs[s], ref.logprobs, atol=1e-5)
            ref0 = sampling.sample(models[s], ids[0], mask[0], 9, keys[s], temperature=temperature)
            np.testing.assert_array_equal(shared.tokens[s], ref0.tokens)
    with pytest.raises(ValueError, match="one leading seed axis"):
        sample_seeds(graphdef, params, ids, mask, 9, keys[:2], seed_map=seed_map)
    with pytest.raises(ValueError, match="seed_map: expected one of"):
        sample_seeds(graphdef, params, ids, mask, 9, keys, seed_map="pmap")
