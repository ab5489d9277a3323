"""Baselines (PURE_SPEC §5), sequence estimators, GAE, reductions and the one-call recipe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purejax as pj
from tests import naive


def _group(seed, k=4, n=13):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, n + 1, size=k)
    lengths[0] = n  # one full row, and possibly very short ones
    m = np.arange(n)[None, :] < lengths[:, None]
    e = (rng.random((k, n)) < 0.3) & m
    e[np.arange(k), lengths - 1] = True
    r = np.where(e, rng.uniform(-1, 1, (k, n)), 0.0).astype(np.float32)
    return r, e, m


class TestPureBaselines:
    def test_token_mean_hand_computed(self):
        # K = 2, N = 3: b_0 = (0.3 + 0.3) / 3 = 0.2, b_1 = (0.5 + 0.5 + 0.5) / 3 = 0.5.
        g = jnp.array([[0.5, 0.5, 0.5], [0.3, 0.3, 0.0]])
        m = jnp.array([[1, 1, 1], [1, 1, 0]])
        np.testing.assert_allclose(
            pj.token_mean_advantages(g, m), [[0.3, 0.3, 0.3], [-0.2, -0.2, 0.0]], atol=1e-6
        )

    def test_step_mean_hand_computed(self):
        # Row 0: steps [0.8, 0.4] -> 0.6 per step; row 1: one step 0.2; row 2: no valid token.
        r = jnp.array([[0.8, 0.4], [0.0, 0.2], [0.0, 0.0]])
        e = jnp.array([[1, 1], [0, 1], [0, 0]], bool)
        m = jnp.array([[1, 1], [1, 1], [0, 0]], bool)
        out = pj.step_mean_rewards(r, e, m)
        np.testing.assert_allclose(out, [[0.6, 0.2], [0.0, -0.4], [0.0, 0.0]], atol=1e-6)

    def test_step_mean_rewards_one_giant_step(self):
        # Every step is rated 0.5, so after the soft-min transform every response has
        # the same value R = 0.5, spread over its steps. step_mean subtracts the
        # others' positive per-step mean once per step: the return is R - n_steps b,
        # so the one-step answer wins (PURE_SPEC §5, §8.4).
        e = jnp.array([[1, 1, 1, 1], [0, 0, 0, 1], [0, 1, 0, 1]], bool)
        r = jnp.where(e, 0.5, 0.0)
        m = jnp.ones((3, 4), bool)
        out = pj.pure_advantages(r, e, m, 3, dict(credit="soft_min", baseline="step_mean", whiten=False))
        # b_0 = mean(0.5 / 1, 0.5 / 2); b_1 = mean(0.5 / 4, 0.5 / 2); b_2 = mean(0.5 / 4, 0.5 / 1).
        np.testing.assert_allclose(
            out.advantages[:, 0], [0.5 - 4 * 0.375, 0.5 - 0.1875, 0.5 - 2 * 0.3125], atol=1e-5
        )
        assert int(jnp.argmax(out.advantages[:, 0])) == 1

    def test_token_rate_hand_computed(self):
        # Row 0: steps of 2 and 1 tokens, rewards 0.6, 0.3; row 1: one 2-token step, reward 0.4.
        r = jnp.array([[0.0, 0.6, 0.3], [0.0, 0.4, 0.0]])
        e = jnp.array([[0, 1, 1], [0, 1, 0]], bool)
        m = jnp.array([[1, 1, 1], [1, 1, 0]], bool)
        # b_0 = 0.4 / 2 = 0.2 per token; b_1 = 0.9 / 3 = 0.3 per token. Tokens per step
        # leave the step end out (OpenRLHF): row 0 counts 1 and 0, row 1 counts 1.
        np.testing.assert_allclose(
            pj.token_rate_rewards(r, e, m), [[0.0, 0.6 - 0.2, 0.3 - 0.0], [0.0, 0.4 - 0.3, 0.0]], atol=1e-6
        )

    @pytest.mark.parametrize("seed", range(4))
    def test_against_naive_loops(self, seed):
        r, e, m = _group(seed)
        g = np.array(jax.vmap(pj.sum_form_returns)(jnp.array(r), m))
        np.testing.assert_allclose(
            pj.token_mean_advantages(jnp.array(g), m), naive.token_mean_advantages(g, m), atol=1e-5
        )
        np.testing.assert_allclose(
            pj.token_rate_rewards(jnp.array(r), e, m), naive.token_rate_rewards(r, e, m), atol=1e-5
        )
        np.testing.assert_allclose(
            pj.step_mean_rewards(jnp.array(r), e, m), naive.step_mean_rewards(r, e, m), atol=1e-5
        )

    def test_step_lengths(self):
        e = jnp.array([0, 1, 0, 0, 1, 1, 0, 0], bool)
        m = jnp.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
        np.testing.assert_array_equal(pj.step_lengths(e, m), [0, 2, 0, 0, 3, 1, 0, 0])


class TestSequenceEstimators:
    def test_rloo(self):
        np.testing.assert_allclose(
            pj.rloo_advantages(jnp.array([1.0, 0.0, 0.0, 1.0])), [2 / 3, -2 / 3, -2 / 3, 2 / 3], atol=1e-6
        )

    def test_grpo_and_dr_grpo(self):
        r = jnp.array([1.0, 0.0, 0.0, 1.0])
        std = np.std([1, 0, 0, 1], ddof=1)
        np.testing.assert_allclose(
            pj.grpo_advantages(r), (np.array([1, 0, 0, 1]) - 0.5) / (std + 1e-6), rtol=1e-5
        )
        np.testing.assert_allclose(pj.dr_grpo_advantages(r), [0.5, -0.5, -0.5, 0.5])

    def test_equal_rewards_give_zero_advantage(self):
        r = jnp.full(8, 0.7)
        for fn in (pj.rloo_advantages, pj.grpo_advantages, pj.dr_grpo_advantages):
            np.testing.assert_allclose(fn(r), 0.0, atol=1e-5)

    @pytest.mark.parametrize("seed", range(3))
    def test_gae_against_naive(self, seed):
        rng = np.random.default_rng(seed)
        n, length = 11, int(rng.integers(1, 12))
        m = np.arange(n) < length
        r, v = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
        adv, ret = pj.gae_advantages(jnp.array(r), jnp.array(v), m, discount=0.99, lambda_=0.9)
        expected = naive.gae(r, v, m, 0.99, 0.9)
        np.testing.assert_allclose(adv, expected, atol=1e-5)
        np.testing.assert_allclose(ret, (np.array(expected) + v) * m, atol=1e-5)

    def test_gae_lambda_one_is_return_minus_value(self):
        r = jnp.array([0.0, 0.5, 1.0, 0.0])
        v = jnp.array([0.2, 0.1, -0.3, 9.0])
        m = jnp.array([1, 1, 1, 0], bool)
        adv, _ = pj.gae_advantages(r, v, m, 1.0, 1.0)
        np.testing.assert_allclose(adv, (pj.sum_form_returns(r, m) - v) * m, atol=1e-6)


class TestReductions:
    def test_whiten(self):
        x = jnp.array([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0]])
        m = jnp.array([[1, 1, 1], [1, 0, 0]])
        values = np.array([1.0, 2.0, 3.0, 4.0])
        expected = (values - values.mean()) / np.sqrt(values.var(ddof=1) + 1e-8)
        out = pj.masked_whiten(x, m)
        np.testing.assert_allclose(out[np.asarray(m, bool)], expected, rtol=1e-5)
        np.testing.assert_array_equal(out[~np.asarray(m, bool)], 0.0)

    @pytest.mark.parametrize("mode", pj.LOSS_AGGREGATIONS)
    def test_aggregation_is_exact_across_micro_batches(self, mode):
        rng = np.random.default_rng(0)
        loss = jnp.array(rng.normal(size=(6, 5)), jnp.float32)
        m = jnp.array(np.arange(5)[None] < np.array([5, 3, 1, 0, 4, 2])[:, None])
        whole = pj.aggregate_loss(loss, m, mode)
        parts = pj.aggregate_loss(loss[:2], m[:2], mode) + pj.aggregate_loss(loss[2:], m[2:], mode)
        np.testing.assert_allclose(parts.mean(), whole.mean(), rtol=1e-6)

    def test_aggregation_values(self):
        loss = jnp.array([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
        m = jnp.array([[1, 1, 0], [1, 0, 0]])
        expected = {
            "token-mean": 6 / 3,
            "seq-mean-token-mean": (2 + 2) / 2,
            "seq-mean-token-sum": (4 + 2) / 2,
            "seq-mean-token-sum-norm": (4 / 3 + 2 / 3) / 2,
        }
        for mode, value in expected.items():
            np.testing.assert_allclose(
                pj.aggregate_loss(loss, m, mode).mean(), value, rtol=1e-6, err_msg=mode
            )

    def test_unknown_aggregation(self):
        with pytest.raises(ValueError, match="allowed values are 'token-mean'"):
            pj.aggregate_loss(jnp.zeros((2, 2)), jnp.ones((2, 2)), "token_mean")


class TestPureAdvantages:
    """The one-call recipe equals the pieces composed by hand."""

    def _batch(self, seed, groups=3, k=4, n=10):
        parts = [_group(seed * 10 + g, k, n) for g in range(groups)]
        return tuple(jnp.array(np.concatenate(x)) for x in zip(*parts))

    def test_soft_min_token_mean_by_hand(self):
        r, e, m = self._batch(0)
        out = pj.pure_advantages(r, e, m, 4, pj.AdvantageConfig(credit="soft_min", temperature=0.1))
        g = jax.vmap(pj.soft_min_returns, (0, 0, 0, None))(r, e, m, 0.1)
        a = jax.vmap(pj.token_mean_advantages)(g.reshape(3, 4, -1), m.reshape(3, 4, -1)).reshape(12, -1)
        np.testing.assert_allclose(out.returns, g, atol=1e-6)
        np.testing.assert_allclose(out.advantages, pj.masked_whiten(a, m), atol=1e-5)

    def test_min_step_mean_with_vr_rloo_and_kl(self):
        r, e, m = self._batch(1)
        vr = jnp.array(np.random.default_rng(0).integers(0, 2, 12), jnp.float32)
        kl = jnp.full(r.shape, -1e-3)
        config = dict(credit="min", baseline="step_mean", whiten=False)
        out = pj.pure_advantages(r, e, m, 4, config, seq_r_b=vr, dense_r_bt=kl)
        r2 = jax.vmap(pj.step_mean_rewards)(r.reshape(3, 4, -1), e.reshape(3, 4, -1), m.reshape(3, 4, -1))
        g = jax.vmap(pj.min_form_returns)(r2.reshape(12, -1), e, m) + jax.vmap(pj.sum_form_returns)(kl, m)
        a = g * m + jax.vmap(pj.rloo_advantages)(vr.reshape(3, 4)).reshape(12)[:, None] * m
        np.testing.assert_allclose(out.advantages, a, atol=1e-6)

    @pytest.mark.parametrize("baseline", ["rloo", "grpo", "dr_grpo"])
    def test_sequence_baselines_use_the_whole_value(self, baseline):
        r, e, m = self._batch(2)
        out = pj.pure_advantages(r, e, m, 4, dict(credit="sum", baseline=baseline, whiten=False))
        value = jax.vmap(pj.sum_form_returns)(r, m)[:, 0]
        fn = {"rloo": pj.rloo_advantages, "grpo": pj.grpo_advantages, "dr_grpo": pj.dr_grpo_advantages}[
            baseline
        ]
        expected = jax.vmap(fn)(value.reshape(3, 4)).reshape(12)[:, None] * m
        np.testing.assert_allclose(out.advantages, expected, atol=1e-5)

    @pytest.mark.parametrize("credit", pj.CREDIT_MODES)
    @pytest.mark.parametrize("baseline", pj.BASELINES)
    def test_every_setting_is_finite_and_zero_on_padding(self, credit, baseline):
        r, e, m = self._batch(3)
        out = pj.pure_advantages(
            r,
            e,
            m,
            4,
            dict(credit=credit, baseline=baseline),
            seq_r_b=jnp.ones(12),
            dense_r_bt=jnp.full(r.shape, 0.01),
        )
        assert np.all(np.isfinite(out.advantages))
        np.testing.assert_array_equal(np.asarray(out.advantages)[~np.asarray(m, bool)], 0.0)

    def test_bad_config(self):
        r, e, m = self._batch(0)
        with pytest.raises(ValueError, match="unknown key 'temprature'.*Did you mean 'temperature'"):
            pj.pure_advantages(r, e, m, 4, dict(temprature=0.1))
        with pytest.raises(ValueError, match="unknown baseline 'mean'.*'token_mean', 'token_rate'"):
            pj.pure_advantages(r, e, m, 4, dict(baseline="mean"))
        with pytest.raises(ValueError, match="`temperature` must be > 0"):
            pj.pure_advantages(r, e, m, 4, dict(temperature=0.0))
        with pytest.raises(
            ValueError, match="`group_size` must be a positive int dividing the batch size 12"
        ):
            pj.pure_advantages(r, e, m, 5)


class TestOfficialVariants:
    """Issue 18 §1: the options that reproduce the official code, with its numbers.

    Each input is the issue's; each expected value is what the official code
    (CJReinforce/PURE, branches `verl` and `main` = OpenRLHF) returns for it.
    """

    def test_verl_shared_vr_enters_after_the_soft_min_transform(self):
        # K = 2 identical rows r = [0.5, 0.9], both tokens step ends, VR = [1, 0] on the
        # last token, T = 0.1, token_mean, no whitening. verl: r* = softmax(-r/T) r, then
        # VR added to the last token's score, sum-form returns, token-mean baseline.
        r = jnp.array([[0.5, 0.9], [0.5, 0.9]])
        e = jnp.ones((2, 2), bool)
        vr = jnp.array([[0.0, 1.0], [0.0, 0.0]])
        config = dict(credit="soft_min", temperature=0.1, baseline="token_mean", whiten=False)
        out = pj.pure_advantages(r, e, e, 2, config, dense_r_bt=vr)
        np.testing.assert_allclose(out.advantages, [[1.2455, 0.7545], [-0.7545, -1.2455]], atol=1e-4)
        # Hand: w = softmax([-5, -9]) = [0.98201, 0.01799]; r* = [0.49101, 0.01619].
        w0 = 1 / (1 + np.exp(-4.0))
        r_star = np.array([0.5 * w0, 0.9 * (1 - w0)])
        g0 = np.cumsum((r_star + [0, 1])[::-1])[::-1]
        g1 = np.cumsum(r_star[::-1])[::-1]
        np.testing.assert_allclose(out.returns, [g0, g1], atol=1e-6)
        np.testing.assert_allclose(out.advantages[0], g0 - g1.sum() / 2, atol=1e-6)

    def test_all_token_min_takes_dense_rewards_inside_the_running_min(self):
        # One step end at t = 1, r = [0, 0.8], kl = [0.2, 0.1], beta = 0.1, K = 2 identical
        # rows. verl: min over (r - beta kl) = [-0.02, 0.79] -> returns [-0.02, 0.79].
        r = jnp.array([[0.0, 0.8], [0.0, 0.8]])
        e = jnp.array([[0, 1], [0, 1]], bool)
        m = jnp.ones((2, 2), bool)
        dense = -0.1 * jnp.array([[0.2, 0.1], [0.2, 0.1]])
        config = dict(credit="all_token_min", baseline="token_mean", whiten=False)
        out = pj.pure_advantages(r, e, m, 2, config, dense_r_bt=dense)
        np.testing.assert_allclose(out.returns, [[-0.02, 0.79], [-0.02, 0.79]], atol=1e-6)
        np.testing.assert_allclose(out.advantages, [[-0.405, 0.405], [-0.405, 0.405]], atol=1e-6)

    def test_min_and_worst_step_keep_dense_rewards_in_sum_form(self):
        # No official code runs these modes; the KL keeps its sum form there.
        r = jnp.array([[0.0, 0.8]])
        e = jnp.array([[0, 1]], bool)
        m = jnp.ones((1, 2), bool)
        dense = jnp.array([[-0.02, -0.01]])
        for credit in ("min", "worst_step"):
            out = pj.pure_advantages(r, e, m, 1, dict(credit=credit, baseline="none", whiten=False), dense_r_bt=dense)
            np.testing.assert_allclose(out.returns, [[0.77, 0.79]], atol=1e-6, err_msg=credit)

    def test_openrlhf_token_rate_counts_step_tokens_without_the_step_end(self):
        # Row 0: length 4, ends at t = 1 and 3, r* = [0.4, 0.2]; row 1: length 2, an end at
        # t = 1, r* = 0.6. Rates: b_0 = 0.6 / 2, b_1 = 0.6 / 4 (full lengths); tokens per
        # step, step end left out: row 0 [1, 1], row 1 [1].
        r = jnp.array([[0.0, 0.4, 0.0, 0.2], [0.0, 0.6, 0.0, 0.0]])
        e = jnp.array([[0, 1, 0, 1], [0, 1, 0, 0]], bool)
        m = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
        np.testing.assert_allclose(
            pj.token_rate_rewards(r, e, m), [[0, 0.1, 0, -0.1], [0, 0.45, 0, 0]], atol=1e-6
        )

    def test_openrlhf_zero_step_ends_returns(self):
        # Rewards [0, 0.5, 0, 0.3], ends at t = 1 and 3: returns [0.8, 0, 0.3, 0].
        r = jnp.array([[0.0, 0.5, 0.0, 0.3]])
        e = jnp.array([[0, 1, 0, 1]], bool)
        m = jnp.ones((1, 4), bool)
        config = dict(credit="sum", baseline="none", whiten=False, zero_step_ends=True)
        out = pj.pure_advantages(r, e, m, 1, config)
        np.testing.assert_allclose(out.returns, [[0.8, 0.0, 0.3, 0.0]], atol=1e-6)
        np.testing.assert_allclose(out.advantages, [[0.8, 0.0, 0.3, 0.0]], atol=1e-6)
        off = pj.pure_advantages(r, e, m, 1, dict(config, zero_step_ends=False))
        np.testing.assert_allclose(off.returns, [[0.8, 0.8, 0.3, 0.3]], atol=1e-6)

    def test_openrlhf_whitening_of_nonzero_tokens(self):
        # x = [1, 0, 2, 3]: mean over the non-zero tokens 2, squared deviations over all
        # valid tokens 1 + 4 + 0 + 1 = 6, divided by the non-zero count 3 -> var 2.
        x = jnp.array([[1.0, 0.0, 2.0, 3.0, 7.0]])
        m = jnp.array([[1, 1, 1, 1, 0]], bool)
        np.testing.assert_allclose(
            pj.masked_whiten_nonzero(x, m), [[-0.70710678, 0, 0, 0.70710678, 0]], atol=1e-6
        )
        # The same through pure_advantages: zero_step_ends with whitening uses it.
        r = jnp.array([[0.0, 0.5, 0.0, 0.3]])
        e = jnp.array([[0, 1, 0, 1]], bool)
        out = pj.pure_advantages(
            r, e, jnp.ones((1, 4), bool), 1, dict(credit="sum", baseline="none", zero_step_ends=True)
        )
        # Non-zero [0.8, 0.3]: mean 0.55, var = (0.0625 + 0.3025 + 0.0625 + 0.3025) / 2.
        rstd = 1 / np.sqrt((2 * 0.0625 + 2 * 0.3025) / 2)
        np.testing.assert_allclose(out.advantages, [[0.25 * rstd, 0, -0.25 * rstd, 0]], atol=1e-5)

    @pytest.mark.parametrize("seed", range(3))
    def test_zero_step_ends_against_naive_loops(self, seed):
        rng = np.random.default_rng(seed)
        r, e, m = _group(seed, k=4, n=9)
        kl = np.where(m, rng.normal(0, 0.01, r.shape), 0).astype(np.float32)
        vr = rng.integers(0, 2, 4).astype(np.float32)
        config = dict(credit="soft_min", baseline="token_rate", zero_step_ends=True)
        out = pj.pure_advantages(jnp.array(r), e, m, 4, config, seq_r_b=jnp.array(vr), dense_r_bt=jnp.array(kl))
        want = naive.openrlhf_advantages(r, e, m, kl, vr, 0.1)
        np.testing.assert_allclose(out.advantages, want, atol=1e-4)
