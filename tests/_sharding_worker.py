"""Bodies of tests/test_sharding.py, run in a subprocess with 8 simulated CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests._sharding_worker CKPT_DIR

The device count is fixed when jax is imported, so the pytest process (one device) cannot
run these itself. Each case compares a sharded computation with the same computation on one
device (device 0, no mesh), in this one process (compiling is the cost, so the single-device
step is compiled once for all meshes), and the script prints one JSON line of measurements per
case, or the case's traceback; each test asserts on its own case.
"""

from __future__ import annotations

import json
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from purejax import config as config_lib
from purejax import sharding
from purejax import train_step as ts
from purejax.models import DecoderConfig, init_model

VOCAB, P, T, K, PROMPTS = 64, 4, 6, 4, 2
TINY = DecoderConfig(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4, num_kv_heads=2
)


def _policy(seed=0, scale=1.0):
    model = init_model(TINY, seed=seed)
    if scale != 1.0:  # peaked logits, so greedy decoding has clear winners
        from flax import nnx

        graphdef, state = nnx.split(model)
        model = nnx.merge(graphdef, jax.tree.map(lambda x: x * scale, state))
    return model


def _config():
    config = config_lib.defaults()
    config.rollout.samples_per_prompt = K
    config.advantage.update(credit="min", whiten=False)
    config.optim.lr = 1e-2
    config.ppo.update(minibatches=2)  # two updates per step: reductions in the loss, grads, Adam
    return config


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    b = K * PROMPTS
    prompt_len = rng.integers(1, P + 1, b)
    prompt_mask = np.arange(P)[None] >= (P - prompt_len)[:, None]
    resp_len = rng.integers(1, T + 1, b)
    resp_mask = np.arange(T)[None] < resp_len[:, None]
    ends = (rng.random((b, T)) < 0.3) & resp_mask
    ends[np.arange(b), resp_len - 1] = True
    rewards = np.where(ends, rng.uniform(-1, 1, (b, T)), 0).astype(np.float32)
    return ts.RolloutBatch(
        prompt_ids=np.where(prompt_mask, rng.integers(1, VOCAB, (b, P)), 0).astype(np.int32),
        prompt_mask=prompt_mask,
        response_ids=rng.integers(1, VOCAB, (b, T)).astype(np.int32),
        response_mask=resp_mask,
        step_end=ends,
        step_rewards=rewards,
        seq_rewards=rng.integers(0, 2, b).astype(np.float32),
    )


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _max_rel_diff(a_tree, b_tree):
    """max over leaves of max|a - b| / (max|b| + 1e-12)."""
    return max(
        float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))
        for a, b in zip(_leaves(a_tree), _leaves(b_tree))
    )


def single_device_steps():
    """Two updates on one device: (state, metrics of the second)."""
    config = _config()
    optimizer = ts.make_optimizer(config)
    graphdef, state = ts.init_train_state(_policy(), optimizer)
    step = ts.make_train_step(config, graphdef, optimizer)
    metrics = None
    for _ in range(2):
        state, metrics = step(state, jax.tree.map(jnp.asarray, _batch()), jax.random.PRNGKey(0))
    return state, metrics


def train_step(single, data, fsdp, tensor):
    config = _config()
    optimizer = ts.make_optimizer(config)
    batch = _batch()
    rng = jax.random.PRNGKey(0)
    single_state, single_metrics = single

    partitioner = sharding.Partitioner(sharding.make_mesh(data, fsdp, tensor))
    graphdef, state = ts.init_train_state(_policy(), optimizer)
    state_sharding = partitioner.tree(state)
    state = jax.device_put(state, state_sharding)
    sharded_step = ts.make_train_step(
        config, graphdef, optimizer, partitioner=partitioner, state_sharding=state_sharding
    )
    sharded_batch = jax.device_put(batch, partitioner.batch(K * PROMPTS))
    for _ in range(2):
        state, metrics = sharded_step(state, sharded_batch, rng)

    params = state.params
    specs = {
        "q": str(params["layers"][0]["attn"]["q_dnh"].get_value().sharding.spec),
        "embed": str(params["embed_vd"].get_value().sharding.spec),
    }
    # The moments of Adam are nnx.Params with the parameters' names: same shardings.
    moments = [
        x for x in jax.tree.leaves(state.opt_state) if x.ndim == 2 and x.shape == params["embed_vd"].shape
    ]
    return {
        "params_rel_diff": _max_rel_diff(state.params, single_state.params),
        "params_changed": _max_rel_diff(state.params, _policy_params()),
        "metrics_abs_diff": {k: float(abs(metrics[k] - single_metrics[k])) for k in single_metrics},
        "metrics_rel_diff": {
            k: float(abs(metrics[k] - single_metrics[k]) / (abs(single_metrics[k]) + 1e-6))
            for k in single_metrics
        },
        "num_devices_of_q": len(params["layers"][0]["attn"]["q_dnh"].get_value().sharding.device_set),
        "specs": specs,
        "moment_specs": sorted({str(x.sharding.spec) for x in moments}),
        "step": int(state.step),
    }


def _policy_params():
    from flax import nnx

    return nnx.split(_policy(), nnx.Param)[1]


def sampler(data, fsdp, tensor):
    from purejax.sampling import sample
    from tests._tiny_hf import padded_batch

    model = _policy(seed=1, scale=7.0)
    ids, mask = padded_batch(np.random.default_rng(0), VOCAB, [4, 1, 3, 4, 2, 4, 1, 3], 4)
    partitioner = sharding.Partitioner(sharding.make_mesh(data, fsdp, tensor))
    kwargs = {"max_new_tokens": 8, "rng": jax.random.PRNGKey(3), "temperature": 0.0, "eos_token_id": 2}
    single = sample(model, ids, mask, **kwargs)
    sharded = sample(model, ids, mask, partitioner=partitioner, **kwargs)
    out = {
        "tokens_equal": bool(np.array_equal(single.tokens, sharded.tokens)),
        "mask_equal": bool(np.array_equal(single.mask, sharded.mask)),
        "logprobs_max_abs_diff": float(np.max(np.abs(np.asarray(single.logprobs) - sharded.logprobs))),
        "tokens_spec": str(sharded.tokens.sharding.spec),
        "tokens_devices": len(sharded.tokens.sharding.device_set),
        "num_generated": int(np.asarray(single.mask).sum()),
    }
    # The KV cache's sharding the sampler constrains to: rows over data x fsdp, KV heads over tensor.
    cache = jax.eval_shape(lambda: model.init_cache(8, 11))
    out["cache_k_spec"] = str(partitioner.kv_cache(cache)[0].k.spec)
    return out


def checkpoint(single, directory):
    from purejax.checkpoint import Checkpointer

    state = single[0]  # moved off its initial values: moments non-zero, step 2
    reference = _leaves(state)

    save_on = sharding.Partitioner(sharding.make_mesh(2, 4, 1))
    saved = jax.device_put(state, save_on.tree(state))
    Checkpointer(directory).save(1, saved, {"step": 1})

    out = {"saved_q_spec": str(saved.params["layers"][0]["attn"]["q_dnh"].get_value().sharding.spec)}
    for name, mesh_shape in (("data8", (8, 1, 1)), ("fsdp8", (1, 8, 1))):
        target = sharding.Partitioner(sharding.make_mesh(*mesh_shape))
        restored, meta = Checkpointer(directory).restore(target.abstract(state))
        expected = jax.tree.leaves(target.tree(state))
        out[name] = {
            "values_equal": all(np.array_equal(a, b) for a, b in zip(_leaves(restored), reference)),
            "shardings_match": all(
                x.sharding.is_equivalent_to(s, x.ndim) for x, s in zip(jax.tree.leaves(restored), expected)
            ),
            "q_spec": str(restored.params["layers"][0]["attn"]["q_dnh"].get_value().sharding.spec),
            "meta_step": meta["step"],
        }
    # One device: an abstract target with single-device shardings.
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    restored, _ = Checkpointer(directory).restore(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), state)
    )
    out["one_device"] = {
        "values_equal": all(np.array_equal(a, b) for a, b in zip(_leaves(restored), reference)),
        "devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(restored)}),
    }
    return out


def _run(name, fn, *args):
    try:
        result = fn(*args)
    except Exception:  # noqa: BLE001 -- reported to the one test that reads this case
        result = {"error": traceback.format_exc()}
    print(json.dumps({"case": name, "result": result}), flush=True)


if __name__ == "__main__":
    single = single_device_steps()
    _run("train_step_2x2x2", train_step, single, 2, 2, 2)
    _run("train_step_1x8x1", train_step, single, 1, 8, 1)
    _run("sampler_2x2x2", sampler, 2, 2, 2)
    _run("checkpoint", checkpoint, single, sys.argv[1])
