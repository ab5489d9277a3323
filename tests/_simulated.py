"""Running a module in a subprocess with N simulated CPU devices.

jax fixes its device count (and its process group) when it starts, so multi-device tests run
their multi-device side as `python -m <module>` with XLA_FLAGS set, from the repository root.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA:CPU's cheap pipeline: ~40% less compile time, which is what the tests spend. The whole
# suite runs with it (tests/conftest.py), so both sides of a comparison do (it changes rounding).
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def env(devices: int) -> dict:
    """The environment of a subprocess with `devices` CPU devices and the fast pipeline."""
    flags = f"--xla_force_host_platform_device_count={devices} {FAST_XLA}"
    out = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    out["PYTHONPATH"] = ROOT + os.pathsep + out.get("PYTHONPATH", "")
    return out


def run_module(module: str, *args: str, devices: int = 8, timeout: int = 900):
    """`python -m module args...` on `devices` simulated devices; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# experiments.plan on the 7B PRM+VR config shrunk to tiny architectures and shapes, on a
# (2, 2, 2) mesh: every program compiles in seconds.
TINY_PLAN = (
    "--config=configs/qwen25_math_7b_prm_vr.py",
    "--mesh=data=2,fsdp=2,tensor=2",
    "--config.policy.arch=tiny",
    "--config.prm.arch=tiny",
    "--config.rollout.prompts_per_step=2",
    "--config.rollout.samples_per_prompt=4",
    "--config.rollout.max_prompt_len=8",
    "--config.rollout.max_new_tokens=8",
    "--config.ppo.micro_batches=2",
    "--config.ppo.logit_chunk=4",
    "--config.rollout.sample_batch=8",
    "--config.prm.batch_size=4",
)
