"""Running a module in a subprocess with N simulated CPU devices.

jax fixes its device count (and its process group) when it starts, so multi-device tests run
their multi-device side as `python -m <module>` with XLA_FLAGS set, from the repository root.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA:CPU's cheap pipeline: ~40% less compile time, which is what these tests spend. Use it on
# both sides of a comparison (it changes float rounding).
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def env(devices: int, fast: bool = False) -> dict:
    """The environment of a subprocess with `devices` CPU devices (and the fast pipeline)."""
    flags = f"--xla_force_host_platform_device_count={devices}" + (f" {FAST_XLA}" if fast else "")
    out = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    out["PYTHONPATH"] = ROOT + os.pathsep + out.get("PYTHONPATH", "")
    return out


def run_module(module: str, *args: str, devices: int = 8, fast: bool = False, timeout: int = 900):
    """`python -m module args...` on `devices` simulated devices; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env(devices, fast),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
