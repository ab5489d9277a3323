"""Time plan of one RL step on a device mesh, without hardware or weights: a roofline of the
compiled programs on named accelerators.

Compiles, from abstract shapes on simulated devices (as `purejax.plan` does for memory), each
program of a PURE step as the trainer runs it on `config`:
  prefill      the sampler's prompt forward into a fresh KV cache, rollout.sample_batch rows
               (`sampling._prefill`), once per sampler call;
  decode       ONE iteration of the sampler's decode loop (`sampling._decode_step`), compiled
               on its own at a few cache fills, so its per-token numbers are exact (inside the
               sampler it is a while loop, and XLA may hoist work out of it);
  prm          the PRM's scoring forward on prm.batch_size rows, once per PRM call;
  train        the whole train step (old/ref log-probs, ppo.epochs x ppo.minibatches x
               ppo.micro_batches passes, AdamW), once per RL step;
and reads from each compiled program its per-device FLOPs, HBM bytes and collective bytes by
kind (`purejax.hlo_cost`: loops counted trip-count times, which `cost_analysis()` alone does not).

Roofline: a program takes max(flops / peak, bytes / HBM bandwidth, collective bytes /
interconnect bandwidth) on a target; the largest term is its bound. An RL step takes

    sampler calls x (prefill + sum over response tokens i < L of decode(fill i))
    + PRM calls x prm + train

with decode(fill) interpolated linearly between the measured fills, and L the mean response
length (`step_s`: an engine whose decode batch stays full, e.g. continuous batching) or the
maximum (`step_s_batch_synchronous`: today's sampler, whose loop runs until the longest row of
the call ends, which for 64 long-tailed rows is close to the maximum).

What a roofline leaves out: kernel efficiency (real matmuls reach ~60-80% of peak, decode
attention less), overlap of collectives with compute (assumed none: the max takes the bound
term only, which assumes full overlap of the other two; the sum of the three terms is the
no-overlap bound, also reported), host work (decoding text, the verifier), and the XLA:CPU
compiler's choices (its fusions and f32 upcasts set the bytes; GPU and TPU compilers fuse more).
So treat step times as lower bounds whose ratios between programs are the useful part.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from purejax import hlo_cost, sharding
from purejax import plan as plan_lib
from purejax import train_step as ts
from purejax.models import archs
from purejax.models.decoder import init_model
from purejax.rewards.sources import model_scorers_needed


@dataclasses.dataclass(frozen=True)
class Target:
    """An accelerator system: `chips` devices, each with these peak rates."""

    chips: int
    peak_flops: float  # dense bf16 FLOP/s per chip
    hbm_bytes_per_s: float  # per chip
    link_bytes_per_s: float  # interconnect per chip, as published (all links, both directions)
    source: str


# Published peaks. Interconnect figures are the vendors' per-chip aggregate (both directions of
# every link); one direction of a ring collective sees at most half of it, so the interconnect
# term here is optimistic by up to 2x.
TARGETS = {
    # NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM column): BF16 Tensor Core 312 TFLOPS
    # dense (624 with sparsity), GPU memory bandwidth 2,039 GB/s, NVLink 600 GB/s.
    # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
    "a100_80gb_x8": Target(8, 312e12, 2.039e12, 600e9, "NVIDIA A100 datasheet, 80GB SXM"),
    # NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column): BF16 Tensor Core 1,979 TFLOPS
    # "with sparsity", i.e. 989.5 dense; GPU memory bandwidth 3.35 TB/s; NVLink 900 GB/s.
    # https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
    "h100_80gb_x8": Target(8, 989.5e12, 3.35e12, 900e9, "NVIDIA H100 datasheet, SXM"),
    # Google Cloud TPU v5p documentation, "System architecture": per chip 459 TFLOPS bf16,
    # 95 GB HBM2e at 2,765 GB/s, inter-chip interconnect 4,800 Gbps (= 600 GB/s). A v5p-8 slice
    # is 4 chips (the suffix counts TensorCores, two per chip), so plan it on a 4-device mesh.
    # https://cloud.google.com/tpu/docs/v5p
    "tpu_v5p_8": Target(4, 459e12, 2.765e12, 600e9, "Google Cloud TPU v5p docs"),
}

# Default response lengths. Maximum: the paper's verl config, 7168 new tokens (PURE_SPEC §7).
# Mean: 1024, an assumption, not a measurement: Qwen2.5-Math base models answer MATH-level
# problems in a few hundred to about a thousand tokens of chain of thought (their config
# declares 4096 positions), and a run's own `train/rollout/length_mean` should replace it.
MAX_RESPONSE_LEN = 7168
MEAN_RESPONSE_LEN = 1024


def roofline(flops: float, bytes_: float, collective_bytes: float, target: Target) -> dict:
    """Seconds of one program run on `target` and the term that bounds it.

    Returns {"s": max of the three terms, "bound": "compute" | "hbm" | "interconnect",
    "compute_s", "hbm_s", "interconnect_s", "no_overlap_s": their sum}."""
    terms = {
        "compute": flops / target.peak_flops,
        "hbm": bytes_ / target.hbm_bytes_per_s,
        "interconnect": collective_bytes / target.link_bytes_per_s,
    }
    bound = max(terms, key=terms.get)
    out = {"s": terms[bound], "bound": bound}
    out.update({f"{k}_s": v for k, v in terms.items()})
    out["no_overlap_s"] = sum(terms.values())
    return out


def decode_seconds(fills: list[int], seconds: list[float], length: int) -> float:
    """Seconds of `length` decode steps at response positions 0..length-1, each step's time
    interpolated linearly between the measured (fill, seconds) points (constant outside)."""
    order = np.argsort(fills)
    xs, ys = np.asarray(fills, float)[order], np.asarray(seconds, float)[order]
    return float(np.interp(np.arange(int(length)), xs, ys).sum())


def step_seconds(programs: dict, calls: dict, fills: list[int], target: Target, length: int) -> dict:
    """Per-step seconds of each phase and in total on `target`, for responses of `length`.

    programs: name -> ProgramCost, with decode fills named "decode@<fill>"; calls: how many
    times per RL step each of "prefill", "decode" (sampler calls), "prm" and "train" runs."""
    t = {name: roofline(c.flops, c.bytes, c.collective_total, target) for name, c in programs.items()}
    decode = decode_seconds(fills, [t[f"decode@{f}"]["s"] for f in fills], length)
    phases = {"prefill": calls["prefill"] * t["prefill"]["s"], "decode": calls["decode"] * decode}
    for name in ("prm", "reshard", "train"):
        if name in t:
            phases[name] = calls[name] * t[name]["s"]
    return {"step_s": sum(phases.values()), "phases_s": phases}


# ------------------------------------------------------------------ compiling the programs


def _compile(lowered, weight_params=()):
    start = time.perf_counter()
    compiled = lowered.compile()
    cost = hlo_cost.program_cost(compiled, weight_params)
    return cost, time.perf_counter() - start


def _rows_sharding(partitioner, x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=partitioner.batch())


def plan(
    config,
    mesh_shape: tuple[int, int, int],
    mean_response_len: int = MEAN_RESPONSE_LEN,
    max_response_len: int = MAX_RESPONSE_LEN,
    fills: tuple[float, ...] = (0.0, 0.5, 1.0),
) -> dict:
    """The time plan of `config` on a (data, fsdp, tensor) mesh; a JSON-able dict.

    fills: decode-step cache fills to compile, as fractions of rollout.max_new_tokens (0: the
    first fed-back token, 1: the last). Response lengths are clipped to max_new_tokens.
    """
    mesh = sharding.make_mesh(*mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
    partitioner = sharding.Partitioner(mesh, tuple(map(tuple, config.mesh.rules)))
    rows = int(config.rollout.prompts_per_step) * int(config.rollout.samples_per_prompt)
    sample_batch = int(config.rollout.sample_batch) or rows
    prm_batch = int(config.prm.batch_size) or rows
    p, n = int(config.rollout.max_prompt_len), int(config.rollout.max_new_tokens)
    mean_len, max_len = min(int(mean_response_len), n), min(int(max_response_len), n)
    if not 1 <= mean_len <= max_len:
        raise ValueError(
            f"--mean-response-len={mean_response_len} must be >= 1 and <= --max-response-len={max_response_len}."
        )
    partitioner.check_rows(
        [
            ("rows per sampler call (config.rollout.sample_batch)", sample_batch),
            ("rows per PRM call (config.prm.batch_size)", prm_batch),
        ]
    )
    programs, compile_s = {}, {}

    policy_config = archs.resolve(config.policy, "policy")
    policy_dtype = jnp.dtype(config.policy.dtype)
    graphdef, params = plan_lib._abstract_model(policy_config, policy_dtype)

    # ---- train step
    optimizer = ts.make_optimizer(config)
    state = partitioner.abstract(
        jax.eval_shape(
            lambda params: ts.TrainState(params, params, optimizer.init(params), jnp.zeros((), jnp.int32)),
            params,
        )
    )
    step = ts.make_train_step(
        config, graphdef, optimizer, partitioner=partitioner, state_sharding=partitioner.tree(state)
    )
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated())
    batch = plan_lib._rollout_batch(partitioner, rows, p, n)
    programs["train"], compile_s["train"] = _compile(step.lower(state, batch, rng))

    # ---- PRM scoring
    if "prm" in model_scorers_needed(config.rewards):
        prm_config = archs.resolve(config.prm, "prm", head="classifier")
        prm_graphdef, prm_params = plan_lib._abstract_model(prm_config, jnp.dtype(config.prm.dtype))
        prm_params = partitioner.abstract(prm_params)
        score = partitioner.jit(
            lambda params, ids, mask: nnx.merge(prm_graphdef, params)(ids, mask, scan=True),
            in_shardings=(partitioner.tree(prm_params), partitioner.batch(), partitioner.batch()),
            out_shardings=partitioner.batch(),
        )
        ids = plan_lib._sds(partitioner, (prm_batch, p + n), jnp.int32)
        mask = plan_lib._sds(partitioner, (prm_batch, p + n), jnp.bool_)
        programs["prm"], compile_s["prm"] = _compile(score.lower(prm_params, ids, mask))

    # ---- the sampler's prefill and decode step, on the sampler's parameter layout: the training
    # layout, or with rollout.mesh_tensor the decode layout, reached by one reshard per step
    from purejax import sampling

    sample_graphdef, sample_state = nnx.split(
        nnx.eval_shape(lambda: init_model(policy_config, 0, policy_dtype))
    )
    train_layout = partitioner.abstract(sample_state)
    rollout = sharding.for_rollout(partitioner, int(config.rollout.mesh_tensor))
    if rollout is not None:
        reshard = jax.jit(lambda state: state, out_shardings=rollout.tree(sample_state))
        programs["reshard"], compile_s["reshard"] = _compile(reshard.lower(train_layout))
        partitioner = rollout
    sample_state = partitioner.abstract(sample_state)
    eos = policy_config.eos_token_id
    eos = tuple(sorted(eos)) if isinstance(eos, tuple) else (() if eos is None else (int(eos),))
    static = {
        "max_new_tokens": n,
        "greedy": False,
        "top_k": int(config.rollout.top_k),
        "use_top_p": float(config.rollout.top_p) < 1.0,
        "eos": eos,
        "pad_token_id": 0,
    }
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=partitioner.replicated())
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated())
    prompt_ids = plan_lib._sds(partitioner, (sample_batch, p), jnp.int32)
    prompt_mask = plan_lib._sds(partitioner, (sample_batch, p), jnp.bool_)

    def prefill(state, ids, mask, rng, temperature, top_p):
        model = nnx.merge(sample_graphdef, state)
        return sampling._prefill(model, ids, mask, rng, temperature, top_p, **static)

    prefill_jit = partitioner.jit(prefill, keep_unused=True)
    n_weights = len(jax.tree.leaves(sample_state))
    weights = range(n_weights)  # the state's leaves are the first entry parameters
    lowered = prefill_jit.lower(sample_state, prompt_ids, prompt_mask, rng, scalar, scalar)
    programs["prefill"], compile_s["prefill"] = _compile(lowered, weights)

    carry, kv_mask, n_prompt = jax.eval_shape(
        prefill, sample_state, prompt_ids, prompt_mask, rng, scalar, scalar
    )
    carry = carry._replace(
        step=jax.ShapeDtypeStruct((), jnp.int32, sharding=partitioner.replicated()),
        cache=jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            carry.cache,
            partitioner.kv_cache(carry.cache),
        ),
        **{
            k: _rows_sharding(partitioner, getattr(carry, k))
            for k in ("done_b", "tokens_bn", "mask_bn", "logp_bn")
        },
    )
    kv_mask, n_prompt = _rows_sharding(partitioner, kv_mask), _rows_sharding(partitioner, n_prompt)
    # What any implementation must read from HBM per decode step and device: its weights once
    # (the whole model, split only by tensor parallelism: FSDP shards are gathered to be used)
    # and its rows' whole KV cache. XLA:CPU's byte counts of the same step are several times
    # this (f32 copies of gathered weights, unfused elementwise passes over the cache).
    tensor_ways = partitioner.mesh.shape["tensor"]
    no_fsdp = sharding.for_rollout(partitioner, tensor_ways) or partitioner
    decode_floor_bytes = sharding.per_device_bytes(
        no_fsdp.abstract(nnx.split(nnx.eval_shape(lambda: init_model(policy_config, 0, policy_dtype)))[1])
    ) + sharding.per_device_bytes(carry.cache)

    def decode(fill, state, carry, kv_mask, n_prompt, rng, temperature, top_p):
        # The fill is a constant of the program: the step's cache slot p + fill.
        model = nnx.merge(sample_graphdef, state)
        carry = carry._replace(step=jnp.int32(fill))
        return sampling._decode_step(model, carry, kv_mask, n_prompt, p, rng, temperature, top_p, **static)

    fill_steps = sorted({min(max(round(f * (n - 2)), 0), max(n - 2, 0)) for f in fills})
    for fill in fill_steps:
        decode_jit = partitioner.jit(functools.partial(decode, fill), keep_unused=True, donate_argnums=(1,))
        lowered = decode_jit.lower(sample_state, carry, kv_mask, n_prompt, rng, scalar, scalar)
        programs[f"decode@{fill}"], compile_s[f"decode@{fill}"] = _compile(lowered, weights)

    calls = {
        "prefill": rows // sample_batch,
        "decode": rows // sample_batch,
        "prm": rows // prm_batch,
        "reshard": 1,
        "train": 1,
    }
    out = {
        "mesh": dict(mesh.shape),
        "rollout_mesh": dict(partitioner.mesh.shape),
        "devices": int(mesh.devices.size),
        "policy": plan_lib._describe(policy_config, policy_dtype),
        "rows_per_step": rows,
        "sample_batch": sample_batch,
        "prm_batch": prm_batch,
        "prompt_len": p,
        "max_new_tokens": n,
        "mean_response_len": mean_len,
        "max_response_len": max_len,
        "decode_fills": fill_steps,
        "calls_per_step": {k: v for k, v in calls.items() if k in programs or k in ("prefill", "decode")},
        "compile_s": {k: round(v, 1) for k, v in compile_s.items()},
        "programs": {k: c.to_json() for k, c in programs.items()},
    }
    out["decode_hbm_floor_bytes"] = decode_floor_bytes
    first_decode = programs[f"decode@{fill_steps[0]}"]
    out["decode_step_collective_bytes"] = dict(first_decode.collectives)
    out["decode_weight_gather_bytes"] = first_decode.weight_gather_bytes
    for name, target in TARGETS.items():
        per_program = {k: roofline(c.flops, c.bytes, c.collective_total, target) for k, c in programs.items()}
        mean = step_seconds(programs, calls, fill_steps, target, mean_len)
        longest = step_seconds(programs, calls, fill_steps, target, max_len)
        floor = dict(programs)
        for f in fill_steps:  # the decode step at its HBM floor, the rest as compiled
            floor[f"decode@{f}"] = dataclasses.replace(
                programs[f"decode@{f}"], bytes=float(decode_floor_bytes)
            )
        floor = step_seconds(floor, calls, fill_steps, target, mean_len)
        out[name] = {
            "step_s": mean["step_s"],
            "step_s_batch_synchronous": longest["step_s"],
            "step_s_decode_at_hbm_floor": floor["step_s"],
            "phases_s": mean["phases_s"],
            "phases_s_batch_synchronous": longest["phases_s"],
            "programs": per_program,
            "chips": target.chips,
            "mesh_matches_target": out["devices"] == target.chips,
        }
    return out


def table(result: dict) -> str:
    """A readable summary: each program's costs, then per target its times and bounds."""
    gb = lambda x: f"{x / 1e9:9.3f} GB"
    lines = [
        f"mesh {result['mesh']} ({result['devices']} devices); policy: {result['policy']}",
        (
            f"{result['rows_per_step']} rows per step: {result['calls_per_step']['prefill']} sampler calls of "
            f"{result['sample_batch']} rows, {result['calls_per_step'].get('prm', 0)} PRM calls of "
            f"{result['prm_batch']}; {result['prompt_len']} prompt + {result['max_new_tokens']} response slots; "
            f"responses mean {result['mean_response_len']}, max {result['max_response_len']} tokens"
        ),
        "per device, per program run:",
    ]
    for name, c in result["programs"].items():
        coll = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in c["collective_bytes"].items() if v)
        lines.append(
            f"  {name:12s} {c['flops'] / 1e12:10.3f} TFLOP {gb(c['bytes'])} HBM; collectives GB: {coll or 'none'}"
            + (
                f"; weight all-gathers {c['weight_gather_bytes'] / 1e9:.3f} GB"
                if c["weight_gather_bytes"]
                else ""
            )
        )
    lines.append(
        f"  decode step HBM floor (weights once + the rows' KV cache): {gb(result['decode_hbm_floor_bytes'])}"
    )
    for name in TARGETS:
        r = result[name]
        note = (
            "" if r["mesh_matches_target"] else f" (NB: {r['chips']} chips, the mesh has {result['devices']})"
        )
        lines.append(
            f"{name}{note}: {r['step_s']:.1f} s per RL step at the mean length "
            f"({r['step_s_batch_synchronous']:.1f} s batch-synchronous, at the max; "
            f"{r['step_s_decode_at_hbm_floor']:.1f} s with the decode step at its HBM floor)"
        )
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in r["phases_s"].items())
        lines.append(f"  per step: {phases}")
        for k, t in r["programs"].items():
            lines.append(f"  {k:12s} {t['s'] * 1e3:10.3f} ms per run, {t['bound']}-bound")
    return "\n".join(lines)
