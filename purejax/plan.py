"""Memory plan of a run on a device mesh, without hardware or weights.

Lowers and compiles, from abstract shapes only (jax.ShapeDtypeStruct with shardings,
nnx.eval_shape for the models: nothing is allocated), the three jitted programs of a PURE
step on the given mesh:
  train   purejax.train_step.make_train_step on the whole rollout batch, exactly as the
          trainer runs it: forward/backward passes of rows / (ppo.minibatches x
          ppo.micro_batches) rows, log-probs ppo.logit_chunk positions at a time;
  prm     the PRM's scoring forward over prompt + response, on prm.batch_size rows;
  sample  the KV-cached sampler, on rollout.sample_batch rows;
and reads XLA's per-device buffer sizes from `compiled.memory_analysis()`.

Per device, what is resident for the whole run (the policy's params, the reference params,
AdamW's moments, the PRM's params) plus the largest of the three programs' own buffers
(temporaries and outputs not aliased to donated inputs). Caveat: the numbers come from
XLA:CPU's buffer assignment; GPU/TPU compilers fuse and schedule differently (usually less
temporary memory; but CPU may also keep bf16 matmuls in f32), so leave ~10-20% headroom.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax import sharding
from purejax import train_step as ts
from purejax.models import archs
from purejax.models.decoder import init_model
from purejax.rewards.sources import model_scorers_needed

GiB = 1024**3
DEVICES = {"h100_80gb": 80e9, "tpu_v5p_95gb": 95e9}  # HBM per chip (decimal GB, as sold)


@dataclasses.dataclass(frozen=True)
class ProgramMemory:
    """Per-device bytes of one compiled program (XLA memory_analysis)."""

    argument: int
    output: int
    alias: int  # outputs written into donated arguments
    temp: int
    compile_s: float

    @property
    def own(self) -> int:
        """Bytes beyond its (already resident) arguments: temporaries and fresh outputs."""
        return self.temp + max(self.output - self.alias, 0)


def _memory(lowered, start: float) -> ProgramMemory:
    compiled = lowered.compile()
    m = compiled.memory_analysis()
    return ProgramMemory(
        int(m.argument_size_in_bytes),
        int(m.output_size_in_bytes),
        int(m.alias_size_in_bytes),
        int(m.temp_size_in_bytes),
        time.perf_counter() - start,
    )


def _abstract_model(decoder_config, dtype):
    model = nnx.eval_shape(lambda: init_model(decoder_config, seed=0, dtype=dtype))
    return nnx.split(model, nnx.Param)  # graphdef, abstract params (Variables of ShapeDtypeStructs)


def _sds(partitioner, shape, dtype, rows_sharded=True):
    spec = partitioner.batch() if rows_sharded else partitioner.replicated()
    return jax.ShapeDtypeStruct(shape, dtype, sharding=spec)


def _rollout_batch(partitioner, rows: int, p: int, n: int) -> ts.RolloutBatch:
    """An abstract rollout batch of `rows` rows, P prompt and N response tokens, split by rows."""
    return ts.RolloutBatch(
        prompt_ids=_sds(partitioner, (rows, p), jnp.int32),
        prompt_mask=_sds(partitioner, (rows, p), jnp.bool_),
        response_ids=_sds(partitioner, (rows, n), jnp.int32),
        response_mask=_sds(partitioner, (rows, n), jnp.bool_),
        step_end=_sds(partitioner, (rows, n), jnp.bool_),
        step_rewards=_sds(partitioner, (rows, n), jnp.float32),
        seq_rewards=_sds(partitioner, (rows,), jnp.float32),
        dense_rewards=_sds(partitioner, (rows, n), jnp.float32),  # ComposedRewards.dense_r_bt
    )


def plan(config, mesh_shape: tuple[int, int, int]):
    """The per-device memory plan of `config` on a (data, fsdp, tensor) mesh; a dict of bytes.

    Rows per call come from the config, as in a run: ppo.minibatches x ppo.micro_batches
    passes per train step, rollout.sample_batch rows per sampler call and prm.batch_size
    rows per PRM call (0: the whole rollout batch, prompts_per_step x samples_per_prompt).
    """
    mesh = sharding.make_mesh(*mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
    partitioner = sharding.Partitioner(mesh, tuple(map(tuple, config.mesh.rules)))
    rows = int(config.rollout.prompts_per_step) * int(config.rollout.samples_per_prompt)
    micro_batch = rows // (int(config.ppo.minibatches) * int(config.ppo.micro_batches))
    sample_batch = int(config.rollout.sample_batch) or rows
    prm_batch = int(config.prm.batch_size) or rows
    partitioner.check_rows(
        [
            ("rows per train pass (rollout rows / ppo.minibatches / config.ppo.micro_batches)", micro_batch),
            ("rows per sampler call (config.rollout.sample_batch)", sample_batch),
            ("rows per PRM call (config.prm.batch_size)", prm_batch),
        ]
    )
    p, n = int(config.rollout.max_prompt_len), int(config.rollout.max_new_tokens)

    policy_config = archs.resolve(config.policy, "policy")
    policy_dtype = jnp.dtype(config.policy.dtype)
    graphdef, params = _abstract_model(policy_config, policy_dtype)
    optimizer = ts.make_optimizer(config)

    param_dtype = jnp.dtype(config.policy.param_dtype)
    state = partitioner.abstract(jax.eval_shape(lambda q: ts._new_state(q, optimizer, param_dtype), params))
    state_sharding = partitioner.tree(state)
    out = {
        "mesh": dict(partitioner.mesh.shape),
        "devices": int(partitioner.mesh.devices.size),
        "policy": _describe(policy_config, policy_dtype),
        "micro_batch": micro_batch,
        "sample_batch": sample_batch,
        "prm_batch": prm_batch,
        "logit_chunk": int(config.ppo.logit_chunk),
        "prompt_len": p,
        "response_len": n,
        "remat": bool(config.ppo.remat),
        "param_dtype": str(param_dtype),
        "params_bytes": sharding.per_device_bytes(state.params),
        "ref_params_bytes": sharding.per_device_bytes(state.ref_params),
        "opt_state_bytes": sharding.per_device_bytes(state.opt_state),
    }

    # ---- train step, on the whole rollout batch
    batch = _rollout_batch(partitioner, rows, p, n)
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated())
    step = ts.make_train_step(
        config, graphdef, optimizer, partitioner=partitioner, state_sharding=state_sharding
    )
    start = time.perf_counter()
    programs = {"train": _memory(step.lower(state, batch, rng), start)}

    # ---- PRM scoring forward (none on the devices when no reward source is model-backed)
    has_prm = "prm" in model_scorers_needed(config.rewards)
    out["prm_params_bytes"] = 0
    if not has_prm:
        out["prm"] = "none on the devices (no model-backed reward source)"
    else:
        prm_config = archs.resolve(config.prm, "prm", head="classifier")
        prm_dtype = jnp.dtype(config.prm.dtype)
        prm_graphdef, prm_params = _abstract_model(prm_config, prm_dtype)
        prm_params = partitioner.abstract(prm_params)
        out["prm"] = _describe(prm_config, prm_dtype)
        out["prm_params_bytes"] = sharding.per_device_bytes(prm_params)
        score = partitioner.jit(
            lambda params, ids, mask: nnx.merge(prm_graphdef, params)(ids, mask, scan=True),
            in_shardings=(partitioner.tree(prm_params), partitioner.batch(), partitioner.batch()),
            out_shardings=partitioner.batch(),
        )
        ids = _sds(partitioner, (prm_batch, p + n), jnp.int32)
        mask = _sds(partitioner, (prm_batch, p + n), jnp.bool_)
        start = time.perf_counter()
        programs["prm"] = _memory(score.lower(prm_params, ids, mask), start)

    # ---- sampler (the KV cache lives inside it)
    from purejax.sampling import _sample_jit

    sample_graphdef, sample_state = nnx.split(
        nnx.eval_shape(lambda: init_model(policy_config, 0, policy_dtype))
    )
    # The sampler runs on the decode layout's mesh when config.rollout.mesh_tensor sets one; its
    # weights (compute dtype) then exist beside the training params while it runs.
    partitioner = sharding.for_rollout(partitioner, int(config.rollout.mesh_tensor)) or partitioner
    sample_state = partitioner.abstract(sample_state)
    rollout_layout = int(config.rollout.mesh_tensor) > 0 and partitioner.mesh.devices.size > 1
    out["rollout_mesh"] = dict(partitioner.mesh.shape)
    # A compute-dtype copy of the weights is alive while sampling when it is laid out for decoding
    # or cast from masters in another dtype; it counts towards the sampler's peak.
    copied = rollout_layout or param_dtype != policy_dtype
    out["rollout_params_bytes"] = sharding.per_device_bytes(sample_state) if copied else 0
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated())
    cache = jax.eval_shape(
        lambda: nnx.merge(sample_graphdef, sample_state).init_cache(sample_batch, p + n - 1)
    )
    cache_bytes = sharding.per_device_bytes(
        jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            cache,
            partitioner.kv_cache(cache),
        )
    )
    out["kv_cache_bytes"] = cache_bytes
    eos = policy_config.eos_token_id
    eos = tuple(sorted(eos)) if isinstance(eos, tuple) else (() if eos is None else (int(eos),))
    start = time.perf_counter()
    lowered = _sample_jit.lower(
        sample_graphdef,
        sample_state,
        _sds(partitioner, (sample_batch, p), jnp.int32),
        _sds(partitioner, (sample_batch, p), jnp.bool_),
        rng,
        jax.ShapeDtypeStruct((), jnp.float32, sharding=partitioner.replicated()),
        jax.ShapeDtypeStruct((), jnp.float32, sharding=partitioner.replicated()),
        max_new_tokens=n,
        greedy=False,
        top_k=int(config.rollout.top_k),
        use_top_p=float(config.rollout.top_p) < 1.0,
        eos=eos,
        pad_token_id=0,
        partitioner=partitioner,
    )
    programs["sample"] = _memory(lowered, start)

    resident = (
        out["params_bytes"] + out["ref_params_bytes"] + out["opt_state_bytes"] + out["prm_params_bytes"]
    )
    for name, m in programs.items():
        out[f"{name}_temp_bytes"] = m.temp
        out[f"{name}_argument_bytes"] = m.argument
        out[f"{name}_output_bytes"] = m.output
        out[f"{name}_alias_bytes"] = m.alias
        out[f"{name}_compile_s"] = round(m.compile_s, 1)
    own = {name: m.own for name, m in programs.items()}
    own["sample"] += out["rollout_params_bytes"]
    out["activations_bytes"] = max(own.values())
    out["peak_program"] = max(own, key=own.get)
    out["resident_bytes"] = resident
    out["bytes_per_device"] = resident + out["activations_bytes"]
    for device, capacity in DEVICES.items():
        out[f"fits_{device}"] = bool(out["bytes_per_device"] <= capacity)
    return out


def _describe(c, dtype) -> str:
    n = c.num_layers * (
        c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.resolved_head_dim
        + c.num_heads * c.resolved_head_dim * c.hidden_size
        + 3 * c.hidden_size * c.intermediate_size
    ) + c.vocab_size * c.hidden_size * (1 if c.tie_word_embeddings else 2)
    return (
        f"{c.architecture} L={c.num_layers} D={c.hidden_size} heads={c.num_heads}/{c.num_kv_heads} "
        f"F={c.intermediate_size} V={c.vocab_size} ~{n / 1e9:.2f}B params {np.dtype(dtype).name}"
    )


def table(result: dict) -> str:
    """A readable per-device breakdown."""
    gib = lambda key: f"{result[key] / GiB:8.2f} GiB"
    lines = [
        f"mesh {result['mesh']} ({result['devices']} devices)",
        f"policy: {result['policy']}",
    ]
    if "prm" in result:
        lines.append(f"PRM:    {result['prm']}")
    lines += [
        (
            f"rows per train pass {result['micro_batch']}, per PRM call {result['prm_batch']}, per sampler "
            f"call {result['sample_batch']}; {result['prompt_len']} prompt + {result['response_len']} "
            f"response tokens; logit chunk {result['logit_chunk'] or 'none'}; remat {result['remat']}"
        ),
        "per device:",
        f"  policy params ({result['param_dtype']:>8s}) {gib('params_bytes')}",
        f"  reference params       {gib('ref_params_bytes')}",
        f"  optimizer state        {gib('opt_state_bytes')}",
        f"  PRM params             {gib('prm_params_bytes')}",
        f"  KV cache (in sampler)  {gib('kv_cache_bytes')}",
    ]
    if result.get("rollout_params_bytes"):
        lines.append(
            f"  rollout weights        {gib('rollout_params_bytes')} (compute dtype, mesh {result['rollout_mesh']}, "
            "alive while sampling)"
        )
    for name in ("train", "prm", "sample"):
        if f"{name}_temp_bytes" in result:
            lines.append(
                f"  {name:6s} temp {result[f'{name}_temp_bytes'] / GiB:8.2f} GiB, args "
                f"{result[f'{name}_argument_bytes'] / GiB:7.2f} GiB, out {result[f'{name}_output_bytes'] / GiB:7.2f} "
                f"GiB (aliased {result[f'{name}_alias_bytes'] / GiB:.2f}); compiled in {result[f'{name}_compile_s']} s"
            )
    lines += [
        f"  resident (params, ref, optimizer, PRM) {gib('resident_bytes')}",
        f"  + largest program's own buffers ({result['peak_program']}) {gib('activations_bytes')}",
        (
            f"  = {result['bytes_per_device'] / GiB:.2f} GiB per device: "
            f"fits 80 GB H100: {'yes' if result['fits_h100_80gb'] else 'NO'}; "
            f"fits 95 GB TPU v5p: {'yes' if result['fits_tpu_v5p_95gb'] else 'NO'}"
        ),
    ]
    return "\n".join(lines)
