"""purejax.sharding on 8 simulated CPU devices: sharded == single device.

The equivalence tests read the results of ONE subprocess (tests/_sharding_worker.py) run with
XLA_FLAGS=--xla_force_host_platform_device_count=8: jax fixes its device count at import, and
compiling is the cost, so the single-device reference step is compiled once for every mesh.
Each test checks its own case and fails with that case's traceback. The worker also runs XLA
with its cheap CPU pipeline (optimization level 0): both sides of every comparison use it.

Tolerances (float32, reductions reorder across devices):
  train step: params after two updates max|a - b| <= 1e-4 * max|b| per array; metrics
              |a - b| <= 1e-4 |b| + 1e-6. (Adam divides by sqrt(v), so a near-zero gradient
              entry's tiny absolute difference becomes a relative one of ~1e-5 in the update.)
  sampler:    greedy tokens and masks identical; log-probs |a - b| <= 1e-4.
  checkpoint: restored values bit-identical.

Run just these: python -m pytest -k "shard or mesh" -q
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from purejax import config as config_lib
from purejax import sharding
from tests import _simulated as simulated
from tests._simulated import ROOT



def _env():
    # Both sides of every comparison run in the subprocess with XLA:CPU's fast pipeline.
    return simulated.env(8)


@pytest.fixture(scope="module")
def sharded_results(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sharded_ckpt") / "ckpt")
    proc = subprocess.run(
        [sys.executable, "-m", "tests._sharding_worker", directory],
        check=False,
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith('{"case"'):
            record = json.loads(line)
            results[record["case"]] = record["result"]
    tail = "\n".join(line for line in proc.stderr.splitlines() if "spmd_partitioner" not in line)[-3000:]
    return results, f"worker exit code {proc.returncode}; stderr tail:\n{tail}"


def _case(sharded_results, name):
    results, diagnostics = sharded_results
    if name not in results:
        pytest.fail(f"the sharding worker produced no result for {name!r}. {diagnostics}")
    result = results[name]
    if "error" in result:
        pytest.fail(f"{name} raised in the 8-device worker:\n{result['error']}")
    return result


@pytest.mark.parametrize("mesh", ["2x2x2", "1x8x1"])
def test_sharded_train_step_equals_single_device(sharded_results, mesh):
    r = _case(sharded_results, f"train_step_{mesh}")
    assert r["step"] == 2
    assert r["params_changed"] > 1e-2  # the updates did something, so agreement means something
    assert r["params_rel_diff"] <= 1e-4, r
    for key, rel in r["metrics_rel_diff"].items():
        assert rel <= 1e-4 or r["metrics_abs_diff"][key] <= 1e-6, (key, r)
    # Parameters really are split: FSDP on `embed`, tensor parallelism on heads / vocabulary;
    # Adam's moments follow their parameters.
    assert r["num_devices_of_q"] == 8
    if mesh == "2x2x2":
        assert r["specs"] == {"q": "P('fsdp', 'tensor')", "embed": "P('tensor', 'fsdp')"}
        assert r["moment_specs"] == ["P('tensor', 'fsdp')"]
    else:
        assert r["specs"] == {"q": "P('fsdp',)", "embed": "P(None, 'fsdp')"}
        assert r["moment_specs"] == ["P(None, 'fsdp')"]


def test_sharded_sampler_equals_unsharded(sharded_results):
    r = _case(sharded_results, "sampler_2x2x2")
    assert r["num_generated"] > 8  # several tokens per row were decoded through the cache
    assert r["tokens_equal"] and r["mask_equal"], r
    assert r["logprobs_max_abs_diff"] <= 1e-4, r
    assert r["tokens_spec"] == "P(('data', 'fsdp'),)" and r["tokens_devices"] == 8
    assert r["cache_k_spec"] == "P(('data', 'fsdp'), 'tensor')"


def test_sharded_checkpoint_restores_on_another_mesh_and_one_device(sharded_results):
    r = _case(sharded_results, "checkpoint")
    assert r["saved_q_spec"] == "P('fsdp',)"  # written from a (data 2, fsdp 4) mesh
    for name, q_spec in (("data8", "P()"), ("fsdp8", "P('fsdp',)")):
        assert r[name]["values_equal"], (name, r)
        assert r[name]["shardings_match"], (name, r)  # every array carries the new mesh's sharding
        assert r[name]["q_spec"] == q_spec
        assert r[name]["meta_step"] == 1
    assert r["one_device"]["values_equal"] and r["one_device"]["devices"] == [1]


# ------------------------------------------------------------------ in-process (one device)


def test_mesh_shape_resolves_the_rest_and_names_the_field():
    assert sharding.mesh_shape(-1, 1, 1, 8) == (8, 1, 1)
    assert sharding.mesh_shape(2, -1, 2, 8) == (2, 2, 2)
    with pytest.raises(ValueError, match=r"config.mesh: data=2 x fsdp=2 x tensor=1 = 4 devices, but 8"):
        sharding.mesh_shape(2, 2, 1, 8)
    with pytest.raises(ValueError, match=r"config.mesh.fsdp=-1"):
        sharding.mesh_shape(3, -1, 1, 8)
    with pytest.raises(ValueError, match=r"only one of data/fsdp/tensor"):
        sharding.mesh_shape(-1, -1, 1, 8)


def test_mesh_config_is_validated():
    config = config_lib.defaults()
    config.rewards.prm = config_lib.reward_source("prm")
    config_lib.validate(config)
    config.mesh.fsdp = 0
    with pytest.raises(config_lib.ConfigError, match=r"config.mesh.fsdp: must be a positive mesh size"):
        config_lib.validate(config)
    config.mesh.fsdp = 1
    config.mesh.rules = (("embed", "fdsp"),)
    with pytest.raises(config_lib.ConfigError, match=r"unknown mesh axis 'fdsp'"):
        config_lib.validate(config)


def test_mesh_rules_skip_indivisible_dims_and_reused_axes():
    mesh = jax.sharding.AbstractMesh((2, 2, 4), sharding.MESH_AXES)
    p = sharding.Partitioner(mesh)
    assert p.spec(("embed", "kv_heads", "head_dim"), (32, 4, 8)) == jax.P("fsdp", "tensor")
    # 2 KV heads cannot be split 4 ways: replicated, not padded.
    assert p.spec(("embed", "kv_heads", "head_dim"), (32, 2, 8)) == jax.P("fsdp")
    assert p.spec(sharding.CACHE_K_AXES, (8, 4, 8, 16)) == jax.P(("data", "fsdp"), "tensor")
    # A mesh axis is used once per array, the first dimension that asks for it wins.
    p2 = sharding.Partitioner(mesh, (("embed", "fsdp"), ("mlp", "fsdp")))
    assert p2.spec(("embed", "mlp"), (32, 64)) == jax.P("fsdp")


def test_constrain_is_the_identity_without_a_mesh():
    x = jax.numpy.ones((2, 3, 4))
    assert sharding.constrain(x, sharding.RESIDUAL_AXES) is x
    assert sharding.from_config(config_lib.defaults()) is None  # one device: unsharded path


def test_multihost_mesh_initializes_only_when_configured_or_launched_multi_process(monkeypatch):
    from purejax import distributed

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    config = config_lib.defaults()
    assert not distributed.initialize(config, environ={})  # single-process CPU run: untouched
    assert not distributed.initialize(config, environ={"SLURM_NTASKS": "1"})
    assert distributed.initialize(config, environ={"SLURM_NTASKS": "4"})  # JAX auto-detects the rest
    assert calls[-1] == {"coordinator_address": None, "num_processes": None, "process_id": None}
    config.distributed.update(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)
    assert distributed.initialize(config, environ={})
    assert calls[-1] == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    config.distributed.process_id = 2
    with pytest.raises(ValueError, match=r"config.distributed.process_id=2 must be < num_processes=2"):
        distributed.initialize(config, environ={})


def test_plan_on_a_tiny_mesh_prints_the_json_plan():
    """experiments.plan on 8 simulated devices: compiles the three programs from shapes only."""
    proc = simulated.run_module("experiments.plan", *simulated.TINY_PLAN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout.strip().splitlines()[-1])
    assert plan["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    assert (plan["micro_batch"], plan["prm_batch"], plan["sample_batch"]) == (4, 4, 8)
    # 74,112 parameters (1 layer, D=64, 8 heads of 8, F=128, V=256, untied): all but the 192
    # norm weights are split 4 ways (fsdp x tensor; `data` replicates parameters). The reference
    # is bf16 (policy.dtype); the trained masters are float32 (policy.param_dtype).
    assert 148_224 / 4 <= plan["ref_params_bytes"] <= 148_224 / 4 + 2 * 192
    assert plan["params_bytes"] == 2 * plan["ref_params_bytes"] and plan["param_dtype"] == "float32"
    assert plan["opt_state_bytes"] >= 2 * plan["params_bytes"]  # two f32-or-bf16 moments per param
    assert plan["kv_cache_bytes"] == 2 * 1 * (8 // 4) * (8 // 2) * 8 * 15 * 2  # k+v, rows/4, heads/2
    for key in ("train_temp_bytes", "prm_temp_bytes", "sample_temp_bytes", "bytes_per_device"):
        assert plan[key] > 0, key
    assert plan["bytes_per_device"] == plan["resident_bytes"] + plan["activations_bytes"]
    assert plan["fits_h100_80gb"] and plan["fits_tpu_v5p_95gb"]


def test_plan_of_the_main_job_has_no_device_program_for_the_scripted_prm():
    """The scripted PRM runs on the host: the plan compiles train and sample only."""
    import os

    from purejax import plan as plan_lib

    config = config_lib.load(
        os.path.join(ROOT, "configs", "arith_pure.py"),
        ["config.policy.arch=tiny", "config.rollout.prompts_per_step=2"],
    )
    result = plan_lib.plan(config, (1, 1, 1))
    assert result["prm"].startswith("none on the devices")
    assert result["prm_params_bytes"] == 0 and "prm_temp_bytes" not in result
    assert result["train_temp_bytes"] > 0 and result["sample_temp_bytes"] > 0
    assert "PRM:    none on the devices" in plan_lib.table(result)


def test_remat_for_sharded_runs_gives_the_same_loss_and_gradients():
    """ppo.remat recomputes layer activations in the backward pass; the numbers do not change."""
    import numpy as np
    from flax import nnx

    from purejax.models import DecoderConfig, init_model

    model = init_model(
        DecoderConfig(
            vocab_size=32, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1
        )
    )
    graphdef, params = nnx.split(model, nnx.Param)
    ids = jax.numpy.arange(10).reshape(2, 5) % 32

    def loss(params, remat):
        return jax.numpy.sum(nnx.merge(graphdef, params).hidden_states(ids, remat=remat) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)  # both jitted: same fusion
    plain, remat = value_and_grad(params, False), value_and_grad(params, True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
