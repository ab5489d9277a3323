"""PRM step scoring, reward composition, and the shaping sources, against naive references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purejax as pj
from purejax import config as config_lib
from purejax.rewards import (
    SOURCE_TYPES,
    PRMScorer,
    TokenBatch,
    compose_rewards,
    hash_uniform,
    overlong_penalty,
    prm_step_rewards,
    reasoning_pattern_rewards,
    repetition_score,
    reward_metrics,
)
from purejax.steps import step_end_mask_bt
from purejax.rewards.repetition import suffix_array_lcp

VOCAB, STEP_TOKEN, SEPARATORS = 13, 1, np.array([3, 7], np.int32)


def _tiny_classifier(seed=0, dim=8):
    """A causal 2-class token classifier: mean of (token + position) embeddings over the
    prefix, then a linear head. Positions come from the attention mask, as HF does
    for left-padded input, so padding cannot change the valid outputs."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    emb_vd = jax.random.normal(k1, (VOCAB, dim))
    pos_sd = jax.random.normal(k2, (64, dim))
    w_dc = jax.random.normal(k3, (dim, 2))

    def logits_fn(input_ids, attention_mask):
        m_bs = attention_mask.astype(jnp.float32)
        pos_bs = jnp.clip(jnp.cumsum(attention_mask, axis=1) - 1, 0)
        x_bsd = (emb_vd[input_ids] + pos_sd[pos_bs]) * m_bs[..., None]
        mean_bsd = jnp.cumsum(x_bsd, axis=1) / jnp.maximum(jnp.cumsum(m_bs, axis=1), 1)[..., None]
        return jnp.tanh(mean_bsd) @ w_dc * 3.0

    return jax.jit(logits_fn)


def _random_batch(rng, batch=5, prompt_width=6, width=9):
    prompt_len = rng.integers(1, prompt_width + 1, batch)
    response_len = rng.integers(0, width + 1, batch)
    response_len[0] = width  # one full row, one empty row
    response_len[1] = 0
    prompt_ids = np.zeros((batch, prompt_width), np.int32)
    prompt_mask = np.zeros((batch, prompt_width), bool)
    response_ids = np.zeros((batch, width), np.int32)
    response_mask = np.zeros((batch, width), bool)
    for b in range(batch):
        prompt_ids[b, prompt_width - prompt_len[b] :] = rng.integers(2, VOCAB, prompt_len[b])
        prompt_mask[b, prompt_width - prompt_len[b] :] = True
        response_ids[b, : response_len[b]] = rng.integers(2, VOCAB, response_len[b])
        response_mask[b, : response_len[b]] = True
    return prompt_ids, prompt_mask, response_ids, response_mask


def _naive_step_ends(tokens, length):
    return [t for t in range(length) if tokens[t] in SEPARATORS or t == length - 1]


def _naive_prm(logits_fn, prompt_ids, prompt_mask, response_ids, response_mask):
    """One unpadded sequence at a time, step ends found and replaced by a loop."""
    out = np.zeros(response_ids.shape, np.float64)
    for b in range(response_ids.shape[0]):
        prompt = [int(t) for t, m in zip(prompt_ids[b], prompt_mask[b]) if m]
        length = int(response_mask[b].sum())
        ends = _naive_step_ends(response_ids[b], length)
        response = [STEP_TOKEN if t in ends else int(response_ids[b, t]) for t in range(length)]
        ids = np.array([prompt + response], np.int32)
        logits = np.asarray(logits_fn(jnp.asarray(ids), jnp.ones_like(ids)), np.float64)[0]
        for t in ends:
            z = logits[len(prompt) + t]
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            out[b, t] = p[1] - p[0]
    return out


@pytest.fixture(scope="module")
def prm_case():
    """A random padded batch and its naive (unpadded, looped) PRM rewards, computed once."""
    logits_fn = _tiny_classifier()
    batch = _random_batch(np.random.default_rng(0))
    return logits_fn, batch, _naive_prm(logits_fn, *batch)


@pytest.mark.parametrize("jit", [False, True])
def test_prm_step_rewards_match_naive_unpadded_loop(jit, prm_case):
    logits_fn, (prompt_ids, prompt_mask, response_ids, response_mask), want = prm_case
    end_bt = step_end_mask_bt(jnp.asarray(response_ids), jnp.asarray(response_mask), SEPARATORS)
    fn = prm_step_rewards
    if jit:
        fn = jax.jit(prm_step_rewards, static_argnums=(0,))
    got = fn(logits_fn, prompt_ids, prompt_mask, response_ids, response_mask, end_bt, STEP_TOKEN)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
    assert np.all(np.asarray(got)[~response_mask] == 0)
    assert np.all(np.abs(np.asarray(got)) <= 1)
    assert np.count_nonzero(want) > 5  # the comparison is not vacuous


def test_prm_extra_padding_changes_nothing():
    logits_fn = _tiny_classifier(1)
    prompt_ids, prompt_mask, response_ids, response_mask = _random_batch(np.random.default_rng(1))
    end_bt = step_end_mask_bt(jnp.asarray(response_ids), jnp.asarray(response_mask), SEPARATORS)
    base = prm_step_rewards(
        logits_fn, prompt_ids, prompt_mask, response_ids, response_mask, end_bt, STEP_TOKEN
    )
    pad = lambda x, left, right: np.pad(x, ((0, 0), (left, right)))
    wide = prm_step_rewards(
        logits_fn,
        pad(prompt_ids, 3, 0),
        pad(prompt_mask, 3, 0),
        pad(response_ids, 0, 4),
        pad(response_mask, 0, 4),
        pad(np.asarray(end_bt), 0, 4),
        STEP_TOKEN,
    )
    np.testing.assert_allclose(np.asarray(wide)[:, : base.shape[1]], base, atol=1e-6)


def test_prm_rejects_wrong_logits_shape():
    prompt_ids, prompt_mask, response_ids, response_mask = _random_batch(np.random.default_rng(2))
    bad = lambda ids, mask: jnp.zeros(ids.shape + (3,))
    with pytest.raises(AssertionError, match="logits_fn must return"):
        prm_step_rewards(bad, prompt_ids, prompt_mask, response_ids, response_mask, response_mask, STEP_TOKEN)


# ---------------------------------------------------------------- composition


def _text_batch():
    texts = [
        "First, x=1.\n\nTherefore $\\boxed{2}$",
        "wait \\boxed{3}",
        "no answer",
        "$\\boxed{5}$",
        "\\boxed{5}",
        "hmm",
    ]
    truths = ["2", "2", None, "5", "5", None]
    mask = np.zeros((6, 5), bool)
    for b, n in enumerate([5, 3, 4, 1, 2, 0]):
        mask[b, :n] = True
    return texts, truths, mask, np.array([0, 0, 1, 2, 2, 3])


def test_composition_weights_levels_and_baselines():
    texts, truths, mask, prompt_index = _text_batch()
    sources = {
        "vr": config_lib.reward_source(
            "verifiable", weight=2.0, applies_to="with_answer", baseline="rloo", workers=0
        ),
        "vr_shared": config_lib.reward_source(
            "verifiable", weight=0.5, applies_to="with_answer", baseline="shared", workers=0
        ),
        "fmt": config_lib.reward_source("format", weight=3.0, baseline="rloo"),
        "len": config_lib.reward_source("length", weight=1.0, max_len=4, buffer=2),
    }
    out = compose_rewards(sources, texts=texts, truths=truths, response_mask=mask, prompt_index=prompt_index)
    vr = np.array([1, 0, 0, 1, 1, 0], np.float32)
    fmt = np.array([1, 1, 0, 1, 1, 0], np.float32)
    # Loop reference for the overlong penalty and the last-token placement.
    lengths = mask.sum(1)
    length_r = np.array([min(0.0, max(-1.0, (4 - 2 - n) / 2)) for n in lengths], np.float32)
    # 'shared' sequence sources are added after the credit transform (verl's VR): dense.
    want_dense = np.zeros((6, 5), np.float32)
    for b in range(6):
        if lengths[b]:
            want_dense[b, lengths[b] - 1] = 0.5 * vr[b] + 1.0 * length_r[b]
    np.testing.assert_allclose(out.seq_r_b, 2.0 * vr + 3.0 * fmt)
    np.testing.assert_allclose(out.dense_r_bt, want_dense, atol=1e-7)
    np.testing.assert_array_equal(out.step_r_bt, 0.0)  # no step source
    np.testing.assert_array_equal(out.raw["vr"], vr)  # raw = before weighting
    np.testing.assert_array_equal(out.applies["vr"], [1, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(out.applies["fmt"], np.ones(6, bool))
    metrics = reward_metrics(out)
    assert metrics["reward/vr/mean"] == pytest.approx(3 / 4)  # over the 4 rows with answers
    assert metrics["reward/vr/applies"] == pytest.approx(4 / 6)
    assert metrics["reward/fmt/mean"] == pytest.approx(4 / 6)


def test_composition_with_prm_step_source():
    logits_fn = _tiny_classifier(3)
    prompt_ids, prompt_mask, response_ids, response_mask = _random_batch(
        np.random.default_rng(3), batch=4, width=6
    )
    end_bt = step_end_mask_bt(jnp.asarray(response_ids), jnp.asarray(response_mask), SEPARATORS)
    tokens = TokenBatch(prompt_ids, prompt_mask, response_ids, response_mask, end_bt)
    texts = ["\\boxed{1}", "x", "\\boxed{2}", "\\boxed{4}"]
    truths = ["1", None, "3", None]
    sources = {
        "prm": config_lib.reward_source("prm", weight=0.5),
        "vr": config_lib.reward_source("verifiable", applies_to="with_answer", baseline="shared", workers=0),
    }
    out = compose_rewards(
        sources,
        texts=texts,
        truths=truths,
        response_mask=response_mask,
        prompt_index=np.arange(4),
        tokens=tokens,
        scorers={"prm": PRMScorer(logits_fn, STEP_TOKEN)},
    )
    prm_r = _naive_prm(logits_fn, prompt_ids, prompt_mask, response_ids, response_mask)
    want_dense = np.zeros_like(prm_r)
    for b, v in enumerate([1.0, 0.0, 0.0, 0.0]):
        n = response_mask[b].sum()
        if n:
            want_dense[b, n - 1] += v
    np.testing.assert_allclose(out.step_r_bt, 0.5 * prm_r, atol=1e-5)
    np.testing.assert_allclose(out.dense_r_bt, want_dense, atol=1e-7)
    np.testing.assert_array_equal(out.seq_r_b, 0)
    metrics = reward_metrics(out, np.asarray(end_bt))
    ends = np.asarray(end_bt)
    assert metrics["reward/prm/mean"] == pytest.approx(prm_r[ends].mean(), abs=1e-5)
    with pytest.raises(ValueError, match="scorers=\\{'prm': ...\\}"):
        compose_rewards(
            {"prm": sources["prm"]},
            texts=texts,
            truths=truths,
            response_mask=response_mask,
            prompt_index=np.arange(4),
            tokens=tokens,
        )


def test_shared_vr_enters_pure_advantages_after_the_soft_min_as_verl_does():
    # Issue 18 §1.1: K = 2 identical rows r = [0.5, 0.9], both tokens step ends, VR = [1, 0],
    # T = 0.1, token_mean, no whitening. verl adds the VR to the last token after the
    # soft-min transform: [[1.2455, 0.7545], [-0.7545, -1.2455]] (VR inside the
    # transform gave [[0.2383, -0.2617], [0.2572, -0.2338]]).
    mask = np.ones((2, 2), bool)
    sources = {"vr": config_lib.reward_source("verifiable", baseline="shared", workers=0)}
    out = compose_rewards(
        sources,
        texts=["\\boxed{1}", "\\boxed{2}"],
        truths=["1", "1"],
        response_mask=mask,
        prompt_index=np.array([0, 0]),
    )
    np.testing.assert_array_equal(out.dense_r_bt, [[0, 1], [0, 0]])
    prm_r = np.array([[0.5, 0.9], [0.5, 0.9]], np.float32)
    adv = pj.pure_advantages(
        jnp.asarray(prm_r + out.step_r_bt),
        mask,
        mask,
        2,
        dict(credit="soft_min", temperature=0.1, baseline="token_mean", whiten=False),
        seq_r_b=jnp.asarray(out.seq_r_b),
        dense_r_bt=jnp.asarray(out.dense_r_bt),
    )
    np.testing.assert_allclose(adv.advantages, [[1.2455, 0.7545], [-0.7545, -1.2455]], atol=1e-4)


def test_fraction_subsample_is_per_prompt_deterministic_and_close_to_fraction():
    n_prompts, k = 2000, 4
    prompt_index = np.repeat(np.arange(n_prompts), k)
    texts = ["\\boxed{1}"] * (n_prompts * k)
    mask = np.ones((n_prompts * k, 2), bool)
    sources = {"fmt": config_lib.reward_source("format", fraction=0.3)}
    run = lambda seed, order=slice(None): compose_rewards(
        sources,
        texts=texts,
        truths=[None] * len(texts),
        response_mask=mask[order],
        prompt_index=prompt_index[order],
        seed=seed,
    ).applies["fmt"]
    a, b = run(7), run(7)
    np.testing.assert_array_equal(a, b)  # reproducible
    by_prompt = a.reshape(n_prompts, k)
    assert np.all(by_prompt == by_prompt[:, :1])  # all K samples of a prompt agree
    assert abs(by_prompt[:, 0].mean() - 0.3) < 0.04
    assert not np.array_equal(a, run(8))  # the seed matters
    # A row's decision depends on its prompt only, not on batch composition (resumable).
    reversed_rows = slice(None, None, -1)
    np.testing.assert_array_equal(run(7, reversed_rows), a[::-1])


def test_applies_to_with_answer_and_fraction_zero():
    texts, truths, mask, prompt_index = _text_batch()
    sources = {
        "a": config_lib.reward_source("format", applies_to="with_answer"),
        "b": config_lib.reward_source("format", fraction=0.0),
    }
    out = compose_rewards(sources, texts=texts, truths=truths, response_mask=mask, prompt_index=prompt_index)
    np.testing.assert_array_equal(out.applies["a"], [t is not None for t in truths])
    np.testing.assert_array_equal(out.raw["a"], [1, 1, 0, 1, 1, 0])
    assert not out.applies["b"].any() and not out.raw["b"].any()
    assert reward_metrics(out)["reward/b/mean"] == 0.0


def test_noise_flips_with_probability_p_reproducibly():
    n = 4000
    texts = ["\\boxed{1}"] * n
    sources = {"noisy": config_lib.reward_source("noise", inner="format", p=0.25)}
    kwargs = dict(
        texts=texts,
        truths=[None] * n,
        response_mask=np.ones((n, 1), bool),
        prompt_index=np.arange(n) // 8,
        seed=3,
    )
    a = compose_rewards(sources, step=5, **kwargs).raw["noisy"]
    assert set(np.unique(a)) == {0.0, 1.0}
    assert abs((a == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(a, compose_rewards(sources, step=5, **kwargs).raw["noisy"])
    assert not np.array_equal(a, compose_rewards(sources, step=6, **kwargs).raw["noisy"])


def test_hash_uniform_is_uniform_and_stateless():
    u = hash_uniform(1, 2, np.arange(100_000))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(hash_uniform(1, 2, np.arange(10))[3], hash_uniform(1, 2, 3))


# ---------------------------------------------------------------- shaping sources


def _naive_repetition(text):
    n = len(text)
    if n < 2:
        return 0.0
    suffixes = sorted(text[i:] for i in range(n))

    def lcp(x, y):
        k = 0
        while k < min(len(x), len(y)) and x[k] == y[k]:
            k += 1
        return k

    return 2 * sum(lcp(a, b) for a, b in zip(suffixes, suffixes[1:])) / (n * (n + 1))


def test_repetition_score_matches_naive():
    rng = np.random.default_rng(0)
    for _ in range(200):
        alphabet = "abcdé\n"[: rng.integers(1, 7)]
        text = "".join(rng.choice(list(alphabet), rng.integers(0, 50)))
        assert repetition_score(text) == pytest.approx(_naive_repetition(text), abs=1e-12)
    text = "The answer is 5. " * 20 + "Done"
    assert repetition_score(text) == pytest.approx(_naive_repetition(text))
    assert repetition_score("aaaa") == pytest.approx(2 * (1 + 2 + 3) / 20)  # hand-computed
    assert repetition_score("abcdefg") == 0.0
    assert repetition_score(text) > 0.2  # "high" (PURE_SPEC §8)


def test_suffix_array_is_sorted_suffixes():
    text = "mississippi"
    sa, lcp = suffix_array_lcp(text)
    assert [text[i:] for i in sa] == sorted(text[i:] for i in range(len(text)))
    np.testing.assert_array_equal(lcp, [1, 1, 4, 0, 0, 1, 0, 2, 1, 3])


def test_repetition_cap_keeps_the_tail():
    text = "abcdefghij" * 3 + "z" * 5000
    assert repetition_score(text, max_chars=100) == pytest.approx(repetition_score("z" * 100))


def test_repetition_source_penalises_above_threshold():
    texts = ["Let me think. " * 30, "A short, varied answer: 42."]
    out = compose_rewards(
        {"rep": config_lib.reward_source("repetition", penalty=0.5)},
        texts=texts,
        truths=[None, None],
        response_mask=np.ones((2, 1), bool),
        prompt_index=np.arange(2),
    )
    np.testing.assert_array_equal(out.raw["rep"], [-0.5, 0.0])


def test_reasoning_pattern_is_bounded_and_counts_distinct_phrases():
    texts = [
        "Wait, wait, wait.",
        "First, let's verify. Therefore x. Double-check: yes. Wait.",
        "Firstly no match",
        "FIRST Alternatively let's check let me verify therefore wait",
    ]
    got = reasoning_pattern_rewards(texts, per_phrase=0.1, max_phrases=5)
    np.testing.assert_allclose(got, [0.1, 0.5, 0.0, 0.5], atol=1e-7)


def test_overlong_penalty_matches_dapo():
    got = overlong_penalty([0, 6, 7, 8, 9, 10, 11], max_len=10, buffer=4)
    np.testing.assert_allclose(got, [0, 0, -0.25, -0.5, -0.75, -1, -1])


def test_all_builtin_source_types_registered():
    assert {"prm", "verifiable", "reasoning_pattern", "repetition", "length", "format", "noise"} <= set(
        SOURCE_TYPES
    )
    assert SOURCE_TYPES["prm"].kind == "model" and SOURCE_TYPES["prm"].level == "step"
    assert SOURCE_TYPES["verifiable"].kind == "host"


def test_prm_scorer_over_a_decoder_scores_in_fixed_size_row_chunks():
    """scorer_for(model, ..., batch_size=2) on 5 rows (chunks 2, 2, 1 padded to 2) returns the
    model's logits for every row, as one call over all rows does."""
    from purejax.models import DecoderConfig, init_model
    from purejax.rewards.prm import scorer_for

    model = init_model(
        DecoderConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            intermediate_size=32,
            num_layers=1,
            num_heads=2,
            num_kv_heads=1,
            head="classifier",
        ),
        seed=3,
    )
    prompt_ids, prompt_mask, response_ids, response_mask = _random_batch(np.random.default_rng(4))
    ids = np.concatenate([prompt_ids, response_ids], 1)
    mask = np.concatenate([prompt_mask, response_mask], 1).astype(np.int32)
    want = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
    for batch_size in (0, 2):
        got = scorer_for(model, 1, batch_size=batch_size).logits_fn(jnp.asarray(ids), jnp.asarray(mask))
        assert got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
