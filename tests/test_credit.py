"""Credit assignment against the spec's worked examples and naive loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purejax as pj
from tests import naive


def _ones(n):
    return jnp.ones(n, bool)


class TestWorkedExamples:
    """PURE_SPEC §3, one token per step."""

    def test_mixed_rewards(self):
        r = jnp.array([0.9, -0.6, 0.7])
        np.testing.assert_allclose(pj.min_form_returns(r, _ones(3), _ones(3)), [-0.6, -0.6, 0.7], atol=1e-6)
        np.testing.assert_allclose(pj.worst_step_returns(r, _ones(3), _ones(3)), [-0.6, -0.6, 0.0], atol=1e-6)
        np.testing.assert_allclose(
            pj.soft_min_returns(r, _ones(3), _ones(3), 0.1), [-0.6, -0.6, 0.0], atol=1e-4
        )
        np.testing.assert_allclose(pj.sum_form_returns(r, _ones(3)), [1.0, 0.1, 0.7], atol=1e-6)

    def test_five_equal_steps(self):
        r = jnp.full(5, 0.9)
        np.testing.assert_allclose(pj.min_form_returns(r, _ones(5), _ones(5)), [0.9] * 5, atol=1e-6)
        np.testing.assert_allclose(
            pj.soft_min_returns(r, _ones(5), _ones(5), 0.1), [0.9, 0.72, 0.54, 0.36, 0.18], atol=1e-6
        )

    def test_near_ties(self):
        r = jnp.array([0.5, 0.45, 0.5])
        np.testing.assert_allclose(pj.soft_min_rewards(r, _ones(3), 0.1), [0.137, 0.203, 0.137], atol=1e-3)
        np.testing.assert_allclose(
            pj.soft_min_returns(r, _ones(3), _ones(3), 0.1), [0.477, 0.340, 0.137], atol=1e-3
        )

    def test_official_all_token_min_zeroes_positive_rewards(self):
        # Two positive multi-token steps, VR = 1 added on the last token, then padding:
        # the official strict min-form sees the zeros and returns all zeros.
        r = jnp.array([0.0, 0.0, 0.8, 0.0, 0.6 + 1.0, 0.0, 0.0])
        m = jnp.array([1, 1, 1, 1, 1, 0, 0])
        e = jnp.array([0, 0, 1, 0, 1, 0, 0])
        np.testing.assert_allclose(pj.all_token_min_returns(r, m), np.zeros(7))
        # Our min-form takes the min over step ends only.
        np.testing.assert_allclose(pj.min_form_returns(r, e, m), [0.8, 0.8, 0.8, 1.6, 1.6, 0, 0], atol=1e-6)

    def test_multi_token_steps(self):
        r = jnp.array([0, 0, 0.9, 0, -0.6, 0, 0.7, 0])
        e = jnp.array([0, 0, 1, 0, 1, 0, 1, 0], bool)
        m = jnp.array([1, 1, 1, 1, 1, 1, 1, 0])
        np.testing.assert_allclose(pj.min_form_returns(r, e, m), [-0.6] * 5 + [0.7, 0.7, 0], atol=1e-6)
        np.testing.assert_allclose(pj.worst_step_returns(r, e, m), [-0.6] * 5 + [0, 0, 0], atol=1e-6)


def _random_case(rng, n, kind):
    lengths = {"full": n, "truncated": n, "empty": 0, "one_token": 1}
    length = lengths.get(kind, int(rng.integers(1, n)))
    m = np.arange(n) < length
    p = {"one_step": 0.0}.get(kind, 0.3)
    e = (rng.random(n) < p) & m
    if length:
        e[length - 1] = True  # the last valid token always ends a step
    r = np.where(e, rng.uniform(-1, 1, n), 0.0).astype(np.float32)
    return r, e, m


KINDS = ["full", "truncated", "ragged", "ragged", "empty", "one_token", "one_step"]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", KINDS)
def test_against_naive_loops(seed, kind):
    rng = np.random.default_rng(seed)
    r, e, m = _random_case(rng, 23, kind)
    np.testing.assert_allclose(pj.sum_form_returns(jnp.array(r), m), naive.sum_returns(r, m), atol=1e-5)
    np.testing.assert_allclose(
        pj.sum_form_returns(jnp.array(r), m, 0.9), naive.sum_returns(r, m, 0.9), atol=1e-5
    )
    np.testing.assert_allclose(pj.min_form_returns(jnp.array(r), e, m), naive.min_returns(r, e, m), atol=1e-6)
    np.testing.assert_allclose(
        pj.worst_step_returns(jnp.array(r), e, m), naive.worst_step_returns(r, e, m), atol=1e-6
    )
    np.testing.assert_allclose(
        pj.all_token_min_returns(jnp.array(r), m), naive.all_token_min_returns(r, m), atol=1e-6
    )
    for temperature in (0.05, 0.1, 1.0, 10.0):
        np.testing.assert_allclose(
            pj.soft_min_rewards(jnp.array(r), e, temperature),
            naive.soft_min_rewards(r, e, temperature),
            atol=1e-5,
        )


def test_per_step_discount_array():
    rng = np.random.default_rng(0)
    x = rng.normal(size=9).astype(np.float32)
    g = rng.uniform(0.5, 1.0, size=9).astype(np.float32)
    expected = np.zeros(9)
    acc = 0.0
    for t in reversed(range(9)):
        acc = x[t] + g[t] * acc
        expected[t] = acc
    np.testing.assert_allclose(pj.discounted_reverse_cumsum(jnp.array(x), jnp.array(g)), expected, rtol=1e-5)


def _all_modes(r, e, m):
    return {
        "sum": pj.sum_form_returns(r, m),
        "sum_discounted": pj.sum_form_returns(r, m, 0.95),
        "min": pj.min_form_returns(r, e, m),
        "soft_min": pj.soft_min_returns(r, e, m, 0.1),
        "soft_min_r": pj.soft_min_rewards(r, e, 0.3),
        "worst_step": pj.worst_step_returns(r, e, m),
        "all_token_min": pj.all_token_min_returns(r, m),
    }


def test_jit_and_vmap_match_eager():
    rng = np.random.default_rng(1)
    cases = [_random_case(rng, 17, kind) for kind in KINDS]
    r_bt, e_bt, m_bt = (jnp.array(np.stack(x)) for x in zip(*cases))
    batched = jax.jit(jax.vmap(_all_modes))(r_bt, e_bt, m_bt)
    for b in range(len(cases)):
        eager = _all_modes(r_bt[b], e_bt[b], m_bt[b])
        for name, value in eager.items():
            np.testing.assert_allclose(batched[name][b], value, atol=1e-6, err_msg=name)


def test_masks_as_numbers_equal_bools():
    rng = np.random.default_rng(2)
    r, e, m = _random_case(rng, 15, "ragged")
    as_bool = _all_modes(jnp.array(r), jnp.array(e), jnp.array(m))
    as_float = _all_modes(jnp.array(r), jnp.array(e, jnp.float32), jnp.array(m, jnp.float32))
    as_int = _all_modes(jnp.array(r), jnp.array(e, jnp.int32), jnp.array(m, jnp.int32))
    for name in as_bool:
        np.testing.assert_array_equal(as_bool[name], as_float[name], err_msg=name)
        np.testing.assert_array_equal(as_bool[name], as_int[name], err_msg=name)


def test_padding_does_not_change_valid_outputs():
    rng = np.random.default_rng(3)
    r, e, m = _random_case(rng, 12, "ragged")
    pad = 9
    r_p, e_p, m_p = (np.concatenate([x, np.zeros(pad, x.dtype)]) for x in (r, e, m))
    # Garbage in padded reward slots must be ignored too.
    r_p[12:] = rng.normal(size=pad)
    short, long = _all_modes(jnp.array(r), e, m), _all_modes(jnp.array(r_p), e_p, m_p)
    for name in short:
        if name == "all_token_min":
            continue  # documented: the official variant depends on the padded width
        np.testing.assert_allclose(long[name][:12], short[name], atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(long[name][12:], 0.0, err_msg=name)


def test_soft_min_tends_to_worst_step():
    rng = np.random.default_rng(4)
    for _ in range(5):
        r, e, m = _random_case(rng, 20, "full")
        worst = pj.worst_step_returns(jnp.array(r), e, m)
        errors = [
            float(jnp.max(jnp.abs(pj.soft_min_returns(jnp.array(r), e, m, t) - worst)))
            for t in (1.0, 0.1, 0.01, 0.001)
        ]
        assert errors[-1] < 1e-3, errors
        assert all(a >= b - 1e-7 for a, b in zip(errors, errors[1:])), errors


def test_soft_min_tends_to_mean_at_high_temperature():
    r = jnp.array([0.2, -0.4, 0.8, 0.1])
    value = pj.soft_min_returns(r, _ones(4), _ones(4), 1e4)[0]
    np.testing.assert_allclose(value, jnp.mean(r), atol=1e-4)


def test_one_step_all_min_forms_agree():
    r = jnp.array([0.0, 0.0, 0.0, -0.3, 0.0])
    e = jnp.array([0, 0, 0, 1, 0], bool)
    m = jnp.array([1, 1, 1, 1, 0], bool)
    expected = np.array([-0.3, -0.3, -0.3, -0.3, 0.0])
    for value in (
        pj.min_form_returns(r, e, m),
        pj.soft_min_returns(r, e, m, 0.1),
        pj.worst_step_returns(r, e, m),
        pj.sum_form_returns(r, m),
    ):
        np.testing.assert_allclose(value, expected, atol=1e-6)


def test_no_valid_token_gives_zeros_without_nans():
    z = jnp.zeros(6)
    for value in _all_modes(z + 0.5, jnp.zeros(6, bool), jnp.zeros(6, bool)).values():
        np.testing.assert_array_equal(value, 0.0)


def test_nan_rewards_propagate_instead_of_vanishing():
    # A NaN on a step end must surface (the trainer then skips the update), not read as 0.
    r = jnp.array([0.5, jnp.nan, 0.2])
    for name, value in _all_modes(r, _ones(3), _ones(3)).items():
        assert np.isnan(np.asarray(value)[0]), name


def test_soft_min_gradient_is_finite_and_matches_finite_differences():
    r = jnp.array([0.3, 0.0, -0.2, 0.0, 0.9, 0.0])
    e = jnp.array([1, 0, 1, 0, 1, 0], bool)
    value = lambda x: jnp.sum(pj.soft_min_rewards(x, e, 0.5))
    jax.test_util.check_grads(value, (r,), order=1, modes=["rev"], eps=1e-3, atol=1e-2, rtol=1e-2)
    grad = jax.grad(value)(r)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[~np.asarray(e)], 0.0)


def test_temperature_can_be_vmapped():
    r = jnp.array([0.9, -0.6, 0.7])
    sweep = jax.vmap(pj.soft_min_returns, (None, None, None, 0))(
        r, _ones(3), _ones(3), jnp.array([0.01, 0.1, 1.0])
    )
    for i, t in enumerate((0.01, 0.1, 1.0)):
        np.testing.assert_allclose(sweep[i], pj.soft_min_returns(r, _ones(3), _ones(3), t), atol=1e-6)


class TestBadInput:
    def test_wrong_rank_names_argument(self):
        with pytest.raises(AssertionError, match="min_form_returns: argument `r_t`"):
            pj.min_form_returns(jnp.zeros((2, 3)), jnp.ones((2, 3), bool), jnp.ones((2, 3), bool))

    def test_mismatched_shapes(self):
        with pytest.raises(ValueError, match="`r_t` \\(4,\\).*`mask_t` \\(5,\\)"):
            pj.sum_form_returns(jnp.zeros(4), jnp.ones(5))

    def test_integer_rewards_refused(self):
        with pytest.raises(TypeError, match="`r_t` must be a float array"):
            pj.sum_form_returns(jnp.zeros(4, jnp.int32), jnp.ones(4))

    @pytest.mark.parametrize("temperature", [0.0, -1.0])
    def test_non_positive_temperature(self, temperature):
        with pytest.raises(ValueError, match="temperature"):
            pj.soft_min_rewards(jnp.zeros(3), _ones(3), temperature)

    def test_unknown_mode_lists_allowed_values(self):
        with pytest.raises(ValueError, match="allowed values are 'sum', 'min'.*Did you mean 'soft_min'"):
            pj.returns(jnp.zeros(3), _ones(3), _ones(3), mode="softmin")

    def test_errors_raise_at_trace_time_under_jit(self):
        with pytest.raises(AssertionError, match="`step_end_t`"):
            jax.jit(pj.min_form_returns)(jnp.zeros(3), jnp.ones((3, 1), bool), _ones(3))
