"""Losses, KL estimators and entropy against hand computation and naive loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purejax as pj
from tests import naive


def _inputs(seed, n=16):
    rng = np.random.default_rng(seed)
    logp = jnp.array(rng.uniform(-3, -0.1, n), jnp.float32)
    old = logp + jnp.array(rng.normal(0, 0.3, n), jnp.float32)
    adv = jnp.array(rng.normal(0, 1, n), jnp.float32)
    return logp, old, adv


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("clip", [(0.2, 0.2, None), (0.2, 0.28, None), (0.2, 0.2, 3.0)])
def test_clipped_surrogate_against_naive(seed, clip):
    logp, old, adv = _inputs(seed)
    lo, hi, dual = clip
    np.testing.assert_allclose(
        pj.clipped_surrogate_loss(logp, old, adv, lo, hi, dual),
        naive.ppo_loss(np.array(logp), np.array(old), np.array(adv), lo, hi, dual),
        rtol=1e-5,
        atol=1e-6,
    )


def test_clipped_surrogate_hand_computed():
    # ratio 1.5 with A = 1: clipped at 1.2 -> loss -1.2; ratio 0.5 with A = -1: clipped at 0.8 -> 0.8.
    logp = jnp.log(jnp.array([1.5, 0.5, 1.0]))
    old = jnp.zeros(3)
    adv = jnp.array([1.0, -1.0, 2.0])
    np.testing.assert_allclose(pj.clipped_surrogate_loss(logp, old, adv), [-1.2, 0.8, -2.0], rtol=1e-6)
    # Dual clip bounds a huge ratio with negative advantage at c |A|.
    np.testing.assert_allclose(
        pj.clipped_surrogate_loss(jnp.log(jnp.array([10.0])), jnp.zeros(1), jnp.array([-1.0]), dual_clip=3.0),
        [3.0],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(pj.ratio_clipped(logp, old, adv), [True, True, False])


def test_surrogate_gradient_is_policy_gradient_at_ratio_one():
    # At logp == old_logp, d loss / d logp = -A (the REINFORCE gradient).
    logp, _, adv = _inputs(0)
    grad = jax.grad(lambda x: jnp.sum(pj.clipped_surrogate_loss(x, x, adv)))(logp)
    np.testing.assert_allclose(grad, -adv, rtol=1e-6)


def test_surrogate_gradients_finite_and_masked():
    logp, old, adv = _inputs(1)
    mask = jnp.arange(16) < 9
    adv = jnp.where(mask, adv, jnp.nan)  # garbage on padding must not leak
    loss = lambda x: pj.aggregate_loss(
        pj.clipped_surrogate_loss(x, old, jnp.where(mask, adv, 0.0))[None], mask[None]
    ).mean()
    grad = jax.grad(loss)(logp)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[9:], 0.0)
    jax.test_util.check_grads(loss, (logp,), order=1, modes=["rev"], eps=1e-3, atol=1e-2, rtol=1e-2)


def test_kl_estimators():
    logp = jnp.log(jnp.array([0.5, 0.2]))
    ref = jnp.log(jnp.array([0.25, 0.4]))
    d = np.array(ref - logp)
    np.testing.assert_allclose(pj.kl_k1(logp, ref), -d, rtol=1e-6)
    np.testing.assert_allclose(pj.kl_k2(logp, ref), 0.5 * d**2, rtol=1e-6)
    np.testing.assert_allclose(pj.kl_k3(logp, ref), np.exp(d) - d - 1, rtol=1e-5)
    assert np.all(np.asarray(pj.kl_k3(logp, ref)) >= 0)
    np.testing.assert_allclose(pj.kl_penalty(logp, ref, "k1"), pj.kl_k1(logp, ref))


def test_kl_estimators_are_unbiased_for_the_kl():
    # Sample from pi; E[k1] = E[k3] = KL(pi || ref).
    pi = np.array([0.6, 0.3, 0.1])
    ref = np.array([0.2, 0.5, 0.3])
    kl = float(np.sum(pi * np.log(pi / ref)))
    samples = jax.random.choice(jax.random.PRNGKey(0), 3, (200_000,), p=jnp.array(pi))
    logp, ref_logp = jnp.log(jnp.array(pi))[samples], jnp.log(jnp.array(ref))[samples]
    assert abs(float(jnp.mean(pj.kl_k1(logp, ref_logp))) - kl) < 0.01
    assert abs(float(jnp.mean(pj.kl_k3(logp, ref_logp))) - kl) < 0.01


def test_k3_clamps_extreme_log_ratios():
    out = pj.kl_k3(jnp.array([-100.0, 0.0]), jnp.array([0.0, -100.0]))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [10.0, 10.0])
    assert np.isfinite(pj.kl_k3(jnp.array([-100.0]), jnp.array([0.0]), clamp=None))


def test_entropy_from_logits():
    logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [10.0, -10.0, -10.0, -10.0], [1.0, 2.0, 3.0, 4.0]])
    p = jax.nn.softmax(logits[2])
    np.testing.assert_allclose(
        pj.entropy_from_logits(logits), [np.log(4), 0.0, -float(jnp.sum(p * jnp.log(p)))], atol=1e-5
    )
    assert np.all(np.isfinite(jax.grad(lambda z: jnp.sum(pj.entropy_from_logits(z)))(logits)))


def test_clipped_value_loss():
    v = jnp.array([1.0, 0.0, 0.5])
    old = jnp.array([0.5, 0.5, 0.5])
    ret = jnp.array([0.0, 0.0, 1.0])
    # Row 0: max((1-0)^2, (0.7-0)^2)/2 = 0.5; row 1: max(0, (0.3)^2)/2 = 0.045; row 2: 0.125.
    np.testing.assert_allclose(pj.clipped_value_loss(v, old, ret, 0.2), [0.5, 0.045, 0.125], rtol=1e-6)


class TestBadInput:
    def test_shapes(self):
        with pytest.raises(ValueError, match="`logp_t` \\(3,\\), `old_logp_t` \\(4,\\)"):
            pj.clipped_surrogate_loss(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3))

    def test_rank(self):
        with pytest.raises(AssertionError, match="argument `logits_tv`"):
            pj.entropy_from_logits(jnp.zeros(3))

    def test_dual_clip(self):
        with pytest.raises(ValueError, match="`dual_clip` must be None or > 1"):
            pj.clipped_surrogate_loss(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), dual_clip=0.5)

    def test_unknown_estimator(self):
        with pytest.raises(ValueError, match="allowed values are 'k1', 'k2', 'k3'"):
            pj.kl_penalty(jnp.zeros(3), jnp.zeros(3), "low_var_kl")
