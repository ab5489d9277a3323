"""The time plan (purejax.timeplan, purejax.hlo_cost): HLO collective bytes and loop-aware
costs against hand-computed values, the roofline's bound on hand-made numbers, and
`experiments.plan --time` on 8 simulated devices with a tiny architecture."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from purejax import hlo_cost, timeplan
from tests import _simulated as simulated

# Entry: a weight (parameter 0, bf16 [4, 8]) converted and all-gathered 4 ways; an activation
# (parameter 1, f32 [2, 16]) all-gathered, reduce-scattered, all-to-all'd, permuted (async pair)
# and, as a two-array tuple, all-reduced; a loop of 3 iterations all-reduces [2, 16] f32.
HLO = """HloModule handwritten, entry_computation_layout={(bf16[4,8]{1,0}, f32[2,16]{1,0})->f32[2,16]{1,0}}, num_partitions=4

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %sum = f32[] add(%a, %b)
}

%body (carry: (s32[], f32[2,16])) -> (s32[], f32[2,16]) {
  %carry = (s32[], f32[2,16]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%carry), index=0
  %x = f32[2,16]{1,0} get-tuple-element(%carry), index=1
  %ar = f32[2,16]{1,0} all-reduce(%x), replica_groups={{0,1,2,3}}, to_apply=%add
  ROOT %next = (s32[], f32[2,16]{1,0}) tuple(%i, %ar)
}

%cond (carry.1: (s32[], f32[2,16])) -> pred[] {
  %carry.1 = (s32[], f32[2,16]{1,0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%carry.1), index=0
  %three = s32[] constant(3)
  ROOT %lt = pred[] compare(%i.1, %three), direction=LT
}

ENTRY %main (p0: bf16[4,8], p1: f32[2,16]) -> f32[2,16] {
  %p0 = bf16[4,8]{1,0} parameter(0)
  %p1 = f32[2,16]{1,0} parameter(1)
  %cv = f32[4,8]{1,0} convert(%p0)
  %ag.w = f32[16,8]{1,0} all-gather(%cv), replica_groups={{0,1,2,3}}, dimensions={0}
  %ag.x = f32[8,16]{1,0} all-gather(%p1), replica_groups={{0,1,2,3}}, dimensions={0}
  %rs = f32[1,16]{1,0} reduce-scatter(%p1), replica_groups={{0,1}}, dimensions={0}, to_apply=%add
  %a2a = f32[2,16]{1,0} all-to-all(%p1), replica_groups={{0,1}}, dimensions={0}
  %cps = (f32[2,16]{1,0}, f32[2,16]{1,0}, u32[], u32[]) collective-permute-start(%p1), source_target_pairs={{0,1},{1,0}}
  %cpd = f32[2,16]{1,0} collective-permute-done(%cps)
  %art = (f32[2]{0}, bf16[3]{0}) all-reduce(%p1, %p1), replica_groups={{0,1,2,3}}, to_apply=%add
  %zero = s32[] constant(0)
  %init = (s32[], f32[2,16]{1,0}) tuple(%zero, %cpd)
  %loop = (s32[], f32[2,16]{1,0}) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  ROOT %out = f32[2,16]{1,0} get-tuple-element(%loop), index=1
}
"""


def test_collective_bytes_of_a_handwritten_module():
    got = hlo_cost.collective_bytes(HLO)
    assert got == {
        "all-gather": 16 * 8 * 4 + 8 * 16 * 4,  # both gathers' results
        "all-reduce": 3 * (2 * 16 * 4) + (2 * 4 + 3 * 2),  # the loop's, 3 times; the tuple's
        "reduce-scatter": 1 * 16 * 4,
        "all-to-all": 2 * 16 * 4,
        "collective-permute": 2 * 16 * 4,  # at its -done; the -start's tuple is not counted
    }


def test_weight_gathers_are_the_all_gathers_computed_from_weights_only():
    assert hlo_cost.weight_gather_bytes(HLO, weight_params=[0]) == 16 * 8 * 4  # %ag.w, not %ag.x
    assert hlo_cost.weight_gather_bytes(HLO, weight_params=[]) == 0
    assert hlo_cost.weight_gather_bytes(HLO, weight_params=[0, 1]) == 16 * 8 * 4 + 8 * 16 * 4


def test_shape_bytes():
    assert hlo_cost.shape_bytes("bf16[3584,18944]{1,0}") == 3584 * 18944 * 2
    assert hlo_cost.shape_bytes("(f32[2]{0}, pred[5], s32[])") == 8 + 5 + 4
    assert hlo_cost.shape_bytes("token[]") == 0


def test_loop_cost_counts_each_body_by_its_trip_count():
    """cost_analysis() counts a scan's body once; program_cost counts 10 x 3 matmuls."""

    def f(x, w):
        def outer(c, _):
            inner = lambda c2, _: (jnp.tanh(c2 @ w), None)
            return jax.lax.scan(inner, c, None, length=3)[0], None

        return jax.lax.scan(outer, x, None, length=10)[0]

    x = jnp.ones((64, 64))
    cost = hlo_cost.program_cost(jax.jit(f).lower(x, x).compile())
    matmul = 2 * 64**3
    assert cost.xla_flops_once == pytest.approx(matmul, rel=0.01)
    assert cost.flops == pytest.approx(30 * matmul, rel=0.01)
    assert cost.bytes > 10 * 64 * 64 * 4  # each iteration reads its carry at least
    assert cost.unknown_trip_loops == ()


def test_roofline_picks_the_largest_term():
    gpu = timeplan.Target(chips=8, peak_flops=1e12, hbm_bytes_per_s=1e9, link_bytes_per_s=1e8, source="made up")
    r = timeplan.roofline(flops=3e12, bytes_=1e9, collective_bytes=1e8, target=gpu)
    assert (r["bound"], r["s"]) == ("compute", 3.0)
    assert (r["hbm_s"], r["interconnect_s"], r["no_overlap_s"]) == (1.0, 1.0, 5.0)
    assert timeplan.roofline(1e12, 2e9, 1e8, gpu)["bound"] == "hbm"
    r = timeplan.roofline(1e12, 1e9, 5e8, gpu)
    assert (r["bound"], r["s"]) == ("interconnect", 5.0)


def test_decode_seconds_interpolate_between_fills():
    # Step i takes 1 + 0.2 i s between fills 0 (1 s) and 10 (3 s): 11 + 0.2 x 55 for i < 11.
    assert timeplan.decode_seconds([10, 0], [3.0, 1.0], 11) == pytest.approx(22.0)
    assert timeplan.decode_seconds([0], [2.0], 5) == 10.0  # one fill: constant
    assert timeplan.decode_seconds([0, 10], [1.0, 3.0], 0) == 0.0


def test_step_seconds_adds_the_phases_by_their_calls():
    cost = lambda flops: hlo_cost.ProgramCost(flops, 0.0, {"all-gather": 0}, 0, flops)
    gpu = timeplan.Target(chips=1, peak_flops=1.0, hbm_bytes_per_s=1.0, link_bytes_per_s=1.0, source="")
    programs = {"prefill": cost(5), "decode@0": cost(1), "decode@9": cost(1), "prm": cost(2), "train": cost(7)}
    calls = {"prefill": 8, "decode": 8, "prm": 64, "train": 1}
    r = timeplan.step_seconds(programs, calls, [0, 9], gpu, length=10)
    assert r["phases_s"] == {"prefill": 40.0, "decode": 80.0, "prm": 128.0, "train": 7.0}
    assert r["step_s"] == 255.0


def _plan(*args):
    proc = simulated.run_module("experiments.plan", *simulated.TINY_PLAN, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_time_plan_of_a_tiny_arch_prints_the_json():
    """experiments.plan --time on 8 simulated devices (data 2 x fsdp 2 x tensor 2)."""
    plan = _plan("--time", "--mean-response-len=4", "--max-response-len=8", "--decode-fills=0,1")
    assert plan["decode_fills"] == [0, 6]
    assert set(plan["programs"]) == {"train", "prm", "prefill", "decode@0", "decode@6"}
    assert plan["calls_per_step"] == {"prefill": 1, "decode": 1, "prm": 2, "train": 1}
    assert set(plan["decode_step_collective_bytes"]) == set(hlo_cost.COLLECTIVE_KINDS)
    # Parameters in the training layout (fsdp 2): the decode step gathers weights per token.
    assert 0 < plan["decode_weight_gather_bytes"] <= plan["decode_step_collective_bytes"]["all-gather"]
    for name in ("a100_80gb_x8", "h100_80gb_x8", "tpu_v5p_8"):
        target = plan[name]
        assert target["step_s"] > 0 and target["step_s_batch_synchronous"] >= target["step_s"]
        assert set(target["programs"]) == set(plan["programs"])
        for t in target["programs"].values():
            assert t["bound"] in ("compute", "hbm", "interconnect") and t["s"] == t[f"{t['bound']}_s"]
        assert target["step_s"] == pytest.approx(sum(target["phases_s"].values()))
        assert 0 < target["step_s_decode_at_hbm_floor"] <= target["step_s"]
    assert 0 < plan["decode_hbm_floor_bytes"] <= plan["programs"]["decode@0"]["bytes"]
    assert plan["tpu_v5p_8"]["mesh_matches_target"] is False  # 4 chips, an 8-device mesh
    train = plan["programs"]["train"]
    assert train["flops"] > train["xla_cost_analysis_flops_loop_bodies_once"]  # its scans counted


def test_decode_layout_gathers_no_weights_in_the_decode_step():
    """rollout.mesh_tensor=2: weights replicated over 4 groups, split 2 ways inside one; the
    decode step's collectives then carry no weights, and the reshard runs once per step."""
    plan = _plan("--time", "--decode-fills=0", "--config.rollout.mesh_tensor=2")
    assert plan["rollout_mesh"] == {"data": 4, "fsdp": 1, "tensor": 2}
    assert plan["decode_weight_gather_bytes"] == 0
    assert plan["programs"]["prefill"]["weight_gather_bytes"] == 0
    assert plan["decode_step_collective_bytes"]["all-reduce"] > 0  # tensor-parallel activations
    assert plan["calls_per_step"]["reshard"] == 1
    assert plan["programs"]["reshard"]["collective_bytes"]["all-gather"] > 0
    assert "reshard" in plan["h100_80gb_x8"]["phases_s"]


def test_memory_plan_holds_the_rollout_weights_in_the_compute_dtype():
    plan = _plan("--config.rollout.mesh_tensor=2")
    # 74,112 bf16 parameters, all but the 192 norm weights split over tensor = 2 only.
    assert 2 * (74_112 - 192) / 2 <= plan["rollout_params_bytes"] <= 2 * (74_112 - 192) / 2 + 2 * 192
    assert plan["activations_bytes"] >= plan["sample_temp_bytes"] + plan["rollout_params_bytes"]
