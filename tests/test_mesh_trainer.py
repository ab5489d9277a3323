"""The whole Trainer on a device mesh and across processes equals the single-device run.

configs/smoke.py with two vmapped seeds (every array of the state carries a leading seed axis)
runs in subprocesses (tests/_mesh_trainer_worker.py), since jax fixes its devices and process
group at start-up, all with the same XLA flags:
  reference   one device, no mesh;
  mesh        8 simulated devices: 3 steps on mesh (data 2, fsdp 2, tensor 2), then a new
              Trainer resumes from the step-2 checkpoint on mesh (1, 4, 2) and finishes; its
              sampler runs in the decode layout (rollout.mesh_tensor=2: weights laid out once
              per step, replicated over 4 groups, tensor-parallel over 2 inside one);
  multi-host  2 processes x 4 simulated devices joined by jax.distributed over localhost,
              one (1, 4, 2) mesh across both, sharing one workdir as hosts of a pod share one.

Every metric of every step and seed (rewards, losses, greedy accuracy; sampled tokens decide
them all) must match the reference to |a - b| <= 1e-4 |a| + 1e-6 (float32 reductions reorder
across devices), the multi-host run must write each record once, and the exported policy
must equal the reference's.

Run just these: python -m pytest -k "shard or mesh" -q
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from purejax.metrics_log import read_metrics
from tests import _simulated as simulated
from tests._simulated import ROOT



def _launch(workdir, mesh, devices, then=None, process=None, port=0, rollout_tensor=0):
    command = [sys.executable, "-m", "tests._mesh_trainer_worker", str(workdir), "--mesh", mesh]
    if then:
        command += ["--then", then]
    if rollout_tensor:
        command += ["--rollout-tensor", str(rollout_tensor)]
    if process:
        command += ["--process", process, "--port", str(port)]
    env = simulated.env(devices, fast=True)
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
            pytest.fail("mesh trainer worker timed out")
        if proc.returncode:
            tail = "\n".join(line for line in out.splitlines() if "spmd_partitioner" not in line)[-3000:]
            pytest.fail(f"worker exit code {proc.returncode}:\n{tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mesh_trainer")
    _finish([_launch(root / "reference", "1,1,1", devices=1)])
    _finish([_launch(root / "mesh", "2,2,2", devices=8, then="1,4,2", rollout_tensor=2)])
    port = _free_port()
    _finish([_launch(root / "multihost", "1,4,2", 4, process=f"{i}/2", port=port) for i in range(2)])
    return root


def _assert_same_records(got_dir, want_dir):
    for seed in ("seed_0", "seed_1"):
        got = read_metrics(str(got_dir / seed / "metrics.jsonl"))
        want = read_metrics(str(want_dir / seed / "metrics.jsonl"))
        assert [r["step"] for r in got] == [r["step"] for r in want] == [0, 1, 2, 3, 4]
        for g, w in zip(got, want):
            assert g.keys() == w.keys()
            for key, value in w.items():
                if "/time/" in key:
                    continue
                if isinstance(value, float):
                    np.testing.assert_allclose(g[key], value, rtol=1e-4, atol=1e-6, err_msg=f"{seed} {key}")
                else:
                    assert g[key] == value, (seed, key)


def test_trainer_on_a_mesh_equals_single_device_and_resumes_on_another_mesh(runs):
    _assert_same_records(runs / "mesh", runs / "reference")


def test_multihost_trainer_on_one_mesh_across_processes_equals_single_device(runs):
    """Each record written once (only process 0 writes), the values those of one device."""
    _assert_same_records(runs / "multihost", runs / "reference")
    assert sorted(os.listdir(runs / "multihost" / "checkpoints")) == ["2", "4"]


def test_mesh_runs_export_the_same_policy(runs):
    from safetensors.numpy import load_file

    for seed in ("seed_0", "seed_1"):
        want = load_file(str(runs / "reference" / seed / "policy" / "model.safetensors"))
        for name in ("mesh", "multihost"):
            got = load_file(str(runs / name / seed / "policy" / "model.safetensors"))
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=f"{name} {key}")
