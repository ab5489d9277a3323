"""The jitted PPO/PURE update on a tiny random policy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import purejax as pj
from purejax import config as config_lib
from purejax import train_step as ts
from purejax.models import DecoderConfig, init_model

VOCAB, P, T, K, PROMPTS = 32, 4, 6, 4, 2


def _config(**ppo_overrides):
    config = config_lib.defaults()  # the paper's PPO settings, then what the tests vary
    config.rollout.samples_per_prompt = K
    config.advantage.update(credit="min", whiten=False)
    config.optim.lr = 1e-2
    config.ppo.update(ppo_overrides)
    return config


def _policy(seed=0, num_layers=2):
    return init_model(
        DecoderConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_layers=num_layers,
            num_heads=4,
            num_kv_heads=2,
        ),
        seed=seed,
    )


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    b = K * PROMPTS
    prompt_len = rng.integers(1, P + 1, b)
    prompt_mask = np.arange(P)[None] >= (P - prompt_len)[:, None]  # left-padded
    resp_len = rng.integers(1, T + 1, b)
    resp_mask = np.arange(T)[None] < resp_len[:, None]
    ends = (rng.random((b, T)) < 0.3) & resp_mask
    ends[np.arange(b), resp_len - 1] = True
    rewards = np.where(ends, rng.uniform(-1, 1, (b, T)), 0).astype(np.float32)
    return ts.RolloutBatch(
        prompt_ids=jnp.array(np.where(prompt_mask, rng.integers(1, VOCAB, (b, P)), 0), jnp.int32),
        prompt_mask=jnp.array(prompt_mask),
        response_ids=jnp.array(rng.integers(1, VOCAB, (b, T)), jnp.int32),
        response_mask=jnp.array(resp_mask),
        step_end=jnp.array(ends),
        step_rewards=jnp.array(rewards),
        seq_rewards=jnp.array(rng.integers(0, 2, b), jnp.float32),
    )


def _setup(config, seed=0):
    optimizer = ts.make_optimizer(config)
    graphdef, state = ts.init_train_state(_policy(seed), optimizer)
    return graphdef, state, ts.make_train_step(config, graphdef, optimizer)


@pytest.fixture(scope="module")
def default_setup():
    """One compiled step shared by the tests of the default config; each test gets a fresh state."""
    config = _config()
    optimizer = ts.make_optimizer(config)
    graphdef, _ = ts.init_train_state(_policy(), optimizer)
    step = ts.make_train_step(config, graphdef, optimizer)
    return config, graphdef, lambda: ts.init_train_state(_policy(), optimizer)[1], step


def _copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def test_first_update_is_the_policy_gradient(default_setup):
    # With one minibatch the ratio is exactly 1, so the surrogate's value is -mean(A)
    # and its gradient is the REINFORCE gradient -mean(A grad logp).
    config, graphdef, fresh_state, step = default_setup
    state = fresh_state()
    batch = _batch()
    params0 = _copy(state.params)
    state, metrics = step(state, batch, jax.random.PRNGKey(0))
    np.testing.assert_allclose(metrics["ratio_mean"], 1.0, atol=1e-6)
    assert float(metrics["clip_fraction"]) == 0.0
    assert float(metrics["skipped"]) == 0.0
    assert int(state.step) == 1
    changed = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), state.params, params0)
    assert max(jax.tree.leaves(changed)) > 0
    # The reference policy is frozen.
    np.testing.assert_array_equal(jax.tree.leaves(state.ref_params)[0], jax.tree.leaves(params0)[0])

    # Independent check of the advantage and the loss value.
    adv = pj.pure_advantages(
        batch.step_rewards,
        batch.step_end,
        batch.response_mask,
        K,
        config.advantage,
        seq_r_b=batch.seq_rewards,
        dense_r_bt=jnp.zeros_like(batch.step_rewards),
    ).advantages
    np.testing.assert_allclose(metrics["pg_loss"], -pj.masked_mean(adv, batch.response_mask), atol=1e-3)


def test_repeated_updates_raise_the_likelihood_of_rewarded_responses(default_setup):
    config, graphdef, fresh_state, step = default_setup
    state = fresh_state()
    batch = _batch(1)
    adv = pj.pure_advantages(
        batch.step_rewards,
        batch.step_end,
        batch.response_mask,
        K,
        config.advantage,
        seq_r_b=batch.seq_rewards,
    ).advantages
    score = lambda params: float(
        jnp.sum(
            ts._logp_of(ts.response_logits(graphdef, params, (), batch), batch.response_ids)
            * adv
            * batch.response_mask
        )
    )
    before = score(state.params)
    for i in range(5):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
    assert score(state.params) > before + 1.0
    assert 0 < float(metrics["kl_reward"])


def test_nonfinite_rewards_skip_the_update(default_setup):
    config, graphdef, fresh_state, step = default_setup
    state = fresh_state()
    batch = _batch()
    first_end = int(jnp.argmax(batch.step_end[0]))
    batch = batch._replace(step_rewards=batch.step_rewards.at[0, first_end].set(jnp.nan))
    params0 = _copy(state.params)
    state, metrics = step(state, batch, jax.random.PRNGKey(0))
    assert float(metrics["skipped"]) == 1.0
    for new, old in zip(jax.tree.leaves(state.params), jax.tree.leaves(params0)):
        np.testing.assert_array_equal(new, old)
        assert np.all(np.isfinite(new))


def test_epochs_and_minibatches_are_scanned_and_deterministic():
    config = _config(epochs=2, minibatches=2, dual_clip=3.0, kl_in="loss", loss_agg="seq-mean-token-mean")
    _, state_a, step = _setup(config)
    _, state_b, _ = _setup(config)
    batch = _batch(2)
    state_a, metrics_a = step(state_a, batch, jax.random.PRNGKey(7))
    state_b, metrics_b = step(state_b, batch, jax.random.PRNGKey(7))
    for a, b in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
        np.testing.assert_array_equal(a, b)
    assert metrics_a.keys() == metrics_b.keys()
    # The later minibatches see a moved policy: the ratio is no longer exactly 1.
    assert abs(float(metrics_a["ratio_mean"]) - 1.0) > 0


def test_bad_minibatch_count():
    config = _config(minibatches=3)
    _, state, step = _setup(config)
    with pytest.raises(ValueError, match="ppo.minibatches=3 must divide the batch of 8"):
        step(state, _batch(), jax.random.PRNGKey(0))


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean"])
def test_gradient_accumulation_and_logit_chunks_give_the_same_update(loss_agg):
    """micro_batches = 2 (and 4) with the vocabulary projected 2 and 3 positions at a time is the
    same computation as one pass over each minibatch: the loss normalisers are the minibatch's,
    so the accumulated gradient is the minibatch gradient, not a mean of micro-batch means."""
    settings = dict(minibatches=2, epochs=2, loss_agg=loss_agg, kl_in="loss", kl_beta=0.1)
    _, state, step = _setup(_config(**settings))
    want_state, want = step(state, _batch(), jax.random.PRNGKey(3))
    for micro_batches, logit_chunk in ((2, 2), (4, 3)):
        _, state, step = _setup(_config(**settings, micro_batches=micro_batches, logit_chunk=logit_chunk))
        got_state, got = step(state, _batch(), jax.random.PRNGKey(3))
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7, err_msg=key)
        # Four Adam updates: a near-zero gradient entry's rounding difference becomes a
        # relative one in the update (Adam divides by sqrt(v)); params are ~0.02 in size.
        for a, b in zip(jax.tree.leaves(got_state.params), jax.tree.leaves(want_state.params)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_chunked_log_probs_equal_the_full_projection():
    graphdef, state, _ = _setup(_config())
    batch = _batch()
    full = ts.response_logp(graphdef, state.params, (), batch, entropy=True)
    chunked = ts.response_logp(graphdef, state.params, (), batch, chunk=2, entropy=True)
    logits = ts.response_logits(graphdef, state.params, (), batch)
    reference = jax.nn.log_softmax(logits)[np.arange(8)[:, None], np.arange(T)[None], batch.response_ids]
    np.testing.assert_allclose(full[0], reference, atol=1e-5)
    for a, b in zip(chunked, full):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for field, value in (("logit_chunk", 5), ("micro_batches", 3)):
        config = _config(**{field: value})
        config.rewards.prm = config_lib.reward_source("prm")
        with pytest.raises(config_lib.ConfigError, match=f"ppo.{field}: must divide .*, got {value}"):
            config_lib.validate(config)


def test_remat_keeps_one_layers_attention_temporaries_at_a_time():
    """XLA's buffer assignment for the compiled step (memory, not time): with ppo.remat the
    [B, heads, T, T] attention temporaries of one layer are alive at a time, so six layers
    need far less temporary memory than without remat, and barely more than two layers."""

    def temp_bytes(num_layers, remat):
        config = _config(remat=remat)
        model = _policy(num_layers=num_layers)
        optimizer = ts.make_optimizer(config)
        graphdef, state = ts.init_train_state(model, optimizer)
        b, t = 8, 256
        batch = ts.RolloutBatch(
            prompt_ids=jnp.ones((b, 4), jnp.int32),
            prompt_mask=jnp.ones((b, 4), bool),
            response_ids=jnp.ones((b, t), jnp.int32),
            response_mask=jnp.ones((b, t), bool),
            step_end=jnp.ones((b, t), bool),
            step_rewards=jnp.zeros((b, t)),
            seq_rewards=jnp.zeros((b,)),
        )
        step = ts.make_train_step(config, graphdef, optimizer)
        compiled = step.lower(state, batch, jax.random.PRNGKey(0)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, remat, remat_shallow = temp_bytes(6, False), temp_bytes(6, True), temp_bytes(2, True)
    assert remat < 0.5 * plain, (remat, plain)
    assert remat < 1.5 * remat_shallow, (remat, remat_shallow)


@pytest.mark.parametrize("schedule,warmup", [("cosine", 2), ("constant", 3)])
def test_learning_rate_schedule_counts_rl_steps_not_optimizer_updates(schedule, warmup):
    """With epochs x minibatches updates per RL step, update u uses the rate of RL step
    u // (epochs x minibatches): a cosine decay over total_steps ends at the last RL step."""
    config = _config(epochs=2, minibatches=4)
    config.total_steps = 10
    config.optim.update(schedule=schedule, warmup_steps=warmup, lr=1e-2, weight_decay=0.0)
    optimizer = ts.make_optimizer(config)
    params = {"w": jnp.zeros(())}

    def update(opt_state, _):  # a constant unit gradient: each Adam update is -lr (m / sqrt(v) = 1)
        updates, opt_state = optimizer.update({"w": jnp.ones(())}, opt_state, params)
        return opt_state, -updates["w"]

    _, rates = jax.lax.scan(update, optimizer.init(params), length=10 * 8)
    rates = np.asarray(rates)
    if schedule == "cosine":
        rl_step_rate = optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup, 10)
    else:
        rl_step_rate = lambda step: 1e-2 * min(step / warmup, 1.0)
    expected = [float(rl_step_rate(u // 8)) for u in range(80)]
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-9)
    assert rates[-1] > 1e-5  # still learning in the last RL step


@pytest.mark.parametrize("beta1,beta2", [(0.9, 0.999), (0.9, 0.95), (0.5, 0.8)])
def test_adamw_uses_the_configured_betas(beta1, beta2):
    """optim.beta1 / beta2 reach AdamW: three updates of a varying gradient equal a naive AdamW
    with bias correction (OpenRLHF's betas (0.9, 0.95) move differently from verl's (0.9, 0.999)).
    grad_clip = 0 is off (a clip at norm 0 would zero every gradient)."""
    config = _config()
    config.optim.update(lr=0.1, weight_decay=0.0, grad_clip=0.0, beta1=beta1, beta2=beta2)
    optimizer = ts.make_optimizer(config)
    params = {"w": jnp.zeros(())}
    state = optimizer.init(params)
    m = v = w = 0.0
    for t, g in enumerate([1.0, -3.0, 0.5], start=1):
        updates, state = optimizer.update({"w": jnp.float32(g)}, state, params)
        params = optax.apply_updates(params, updates)
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        w -= 0.1 * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + 1e-8)
        np.testing.assert_allclose(float(params["w"]), w, rtol=1e-5)


def test_a_nonfinite_update_from_finite_gradients_is_skipped():
    """lr = 1e39 is finite in Python but inf in float32: the gradients are finite, the update is
    not. The step must leave params and optimizer state as they were and count the skip."""
    config = _config()
    config.optim.lr = 1e39
    _, state, step = _setup(config)
    params0, opt0 = _copy(state.params), _copy(state.opt_state)
    state, metrics = step(state, _batch(), jax.random.PRNGKey(0))
    assert float(metrics["skipped"]) == 1.0
    assert np.isfinite(float(metrics["grad_norm"]))
    for new, old in zip(jax.tree.leaves(state.params), jax.tree.leaves(params0)):
        np.testing.assert_array_equal(new, old)
    for new, old in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(opt0)):
        np.testing.assert_array_equal(new, old)


def test_ratio_guard_averages_per_sequence_mean_ratios_as_openrlhf():
    # Issue 18 §1.5: a 1-token row at ratio 25 and a 10-token row at ratio 1 give
    # (25 + 1) / 2 = 13.0 (skip at 10), where a token mean gives 35 / 11 = 3.18.
    ratio = jnp.concatenate([jnp.full((1, 10), 1.0), jnp.full((1, 10), 1.0)]).at[0, 0].set(25.0)
    mask = jnp.array([[True] + [False] * 9, [True] * 10])
    np.testing.assert_allclose(ts.guard_ratio(ratio, mask), 13.0, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(ts.guard_ratio)(ratio, mask), 13.0, rtol=1e-6)
    assert float(pj.masked_mean(ratio, mask)) < 10  # the statistic the guard used before
    # A row without valid tokens does not count.
    empty = jnp.zeros((1, 10), bool)
    np.testing.assert_allclose(
        ts.guard_ratio(jnp.concatenate([ratio, ratio[:1]]), jnp.concatenate([mask, empty])), 13.0, rtol=1e-6
    )


def test_dense_rewards_enter_the_advantages_and_are_required_for_shared_sources():
    # verl's shared VR arrives in RolloutBatch.dense_rewards and is added after the
    # credit transform, like the KL penalty (zero here: old and reference policies agree).
    config = _config()
    config.advantage.update(credit="soft_min")
    config.rewards.vr = config_lib.reward_source("verifiable", baseline="shared", workers=0)
    optimizer = ts.make_optimizer(config)
    graphdef, state = ts.init_train_state(_policy(), optimizer)
    step = ts.make_train_step(config, graphdef, optimizer)
    batch = _batch()
    last = batch.response_mask.sum(1) - 1
    vr = jnp.zeros_like(batch.step_rewards).at[jnp.arange(K * PROMPTS), last].set(batch.seq_rewards)
    with pytest.raises(ValueError, match="RolloutBatch.dense_rewards is None, but rewards.vr"):
        step(state, batch, jax.random.PRNGKey(0))
    _, metrics = step(state, batch._replace(dense_rewards=vr), jax.random.PRNGKey(0))
    adv = pj.pure_advantages(
        batch.step_rewards, batch.step_end, batch.response_mask, K, config.advantage,
        seq_r_b=batch.seq_rewards, dense_r_bt=vr,
    ).advantages
    np.testing.assert_allclose(metrics["pg_loss"], -pj.masked_mean(adv, batch.response_mask), atol=1e-3)
