"""The whole Trainer on a device mesh and across processes equals the single-device run.

configs/smoke.py with two vmapped seeds (every array of the state carries a leading seed axis)
runs in subprocesses (tests/_mesh_trainer_worker.py), since jax fixes its devices and process
group at start-up, all with the same XLA flags:
  reference   one device, no mesh;
  mesh        8 simulated devices on mesh (data 2, fsdp 2, tensor 2), stopped after 3 steps as a
              preempted run stops (its last checkpoint is step 2);
  multi-host  a copy of that workdir resumed and finished by 2 processes x 4 simulated devices
              joined by jax.distributed over localhost, on one (1, 4, 2) mesh across both (a
              checkpoint restored onto another mesh shape and another process group), sharing
              one workdir as hosts of a pod share one. Process 1 scores every step 0.5 higher
              than process 0 (a host whose rewards differ): the run must train on process 0's.
Both sample in the decode layout (rollout.mesh_tensor=2: weights laid out once per step,
replicated over the data groups, tensor-parallel over 2 inside one).

Every metric of every step and seed (rewards, losses, greedy accuracy; sampled tokens decide
them all) must match the reference to |a - b| <= 1e-4 |a| + 1e-6 (float32 reductions reorder
across devices), the multi-host run must write each record once, and the exported policy
must equal the reference's. The mesh run also records the op-by-op primitives its steps run on
sharded arrays (tests/_eager_ops.py), which must be none: such ops hung the multi-host run.

Run just these: python -m pytest -k "shard or mesh" -q
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from purejax.metrics_log import read_metrics
from tests import _simulated as simulated
from tests._simulated import ROOT



def _launch(
    workdir, mesh, devices, stop_after=None, process=None, port=0, rollout_tensor=0, skew=False, record_eager=None
):
    command = [sys.executable, "-m", "tests._mesh_trainer_worker", str(workdir), "--mesh", mesh]
    if record_eager:
        command += ["--record-eager", str(record_eager)]
    if skew:
        command += ["--skew-rewards"]
    if stop_after:
        command += ["--stop-after", str(stop_after)]
    if rollout_tensor:
        command += ["--rollout-tensor", str(rollout_tensor)]
    if process:
        command += ["--process", process, "--port", str(port)]
    env = simulated.env(devices)
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(procs, timeout=600):
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            tails = [_tail(p.communicate()[0]) for p in procs]  # where each worker was stuck
            pytest.fail(f"mesh trainer worker timed out after {timeout} s:\n" + "\n---\n".join(tails))
        if proc.returncode:
            pytest.fail(f"worker exit code {proc.returncode}:\n{_tail(out)}")


def _tail(out: str) -> str:
    return "\n".join(line for line in (out or "").splitlines() if "spmd_partitioner" not in line)[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh_trainer")
    _finish([_launch(root / "reference", "1,1,1", devices=1)])
    eager = root / "eager_ops.txt"
    _finish([_launch(root / "mesh", "2,2,2", devices=8, stop_after=3, rollout_tensor=2, record_eager=eager)])
    shutil.copytree(root / "mesh", root / "multihost")
    port = _free_port()
    _finish(
        [
            _launch(root / "multihost", "1,4,2", 4, process=f"{i}/2", port=port, rollout_tensor=2, skew=True)
            for i in range(2)
        ]
    )
    return root


def _assert_same_records(got_dir, want_dir, steps=(0, 1, 2, 3, 4)):
    for seed in ("seed_0", "seed_1"):
        got = read_metrics(str(got_dir / seed / "metrics.jsonl"))
        want = read_metrics(str(want_dir / seed / "metrics.jsonl"))[: len(steps)]
        assert [r["step"] for r in got] == [r["step"] for r in want] == list(steps)
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            for key, value in w.items():
                if "/time/" in key:
                    continue
                if isinstance(value, float):
                    np.testing.assert_allclose(g[key], value, rtol=1e-4, atol=1e-6, err_msg=f"{seed} {key}")
                else:
                    assert g[key] == value, (seed, key)


def test_trainer_on_a_mesh_equals_single_device(runs):
    """The (2, 2, 2) run's records up to where it stopped, and no export before the end."""
    _assert_same_records(runs / "mesh", runs / "reference", steps=(0, 1, 2, 3))
    assert sorted(os.listdir(runs / "mesh" / "checkpoints")) == ["2"]
    assert not (runs / "mesh" / "seed_0" / "policy").exists()


def test_the_steps_run_no_op_by_op_primitive_on_sharded_arrays(runs):
    """Every computation of a step on sharded arrays is a jitted call or a fetch
    (tests/_eager_ops.py says why: an x[0] per leaf in the sampler hung the multi-host run)."""
    assert (runs / "eager_ops.txt").read_text().split() == []


def test_resumed_on_another_mesh_across_processes_equals_single_device(runs):
    """Restored onto (1, 4, 2) over 2 processes and finished: every record written once (only
    process 0 writes, and step 3 of the stopped run is replaced), the values those of one device."""
    _assert_same_records(runs / "multihost", runs / "reference")
    assert sorted(os.listdir(runs / "multihost" / "checkpoints")) == ["2", "4"]


def test_the_multihost_run_exports_the_reference_policy(runs):
    from safetensors.numpy import load_file

    for seed in ("seed_0", "seed_1"):
        want = load_file(str(runs / "reference" / seed / "policy" / "model.safetensors"))
        got = load_file(str(runs / "multihost" / seed / "policy" / "model.safetensors"))
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)
