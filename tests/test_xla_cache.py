"""The experiment scripts' persistent XLA cache: a second process loads what the first compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax

from purejax import xla_cache
from tests._simulated import ROOT

# Compiles one program after xla_cache.enable() and reports the cache directory and whether
# JAX counted a persistent-cache hit for it.
_PROGRAM = """
import json, jax, jax.numpy as jnp
from jax import monitoring
from purejax import xla_cache
hits = []
monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
where = xla_cache.enable()
print(json.dumps({"dir": where, "value": float(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).sum()),
                  "hit": bool(hits)}))
"""


def _run(env_updates: dict, with_stderr: bool = False):
    """The program's report in a fresh process (none of this session's JAX_ settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **env_updates)
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return (report, out.stderr) if with_stderr else report


def test_a_second_process_loads_the_first_ones_executable_from_the_purejax_cache(tmp_path):
    # Threshold 0: the test program compiles in milliseconds (also checks the env var is honoured).
    env = {"PUREJAX_CACHE": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    first, second = _run(env), _run(env)
    assert first["dir"] == second["dir"] == os.path.join(str(tmp_path), "xla")
    assert os.listdir(first["dir"]), "nothing was written to the cache"
    assert not first["hit"] and second["hit"]
    assert first["value"] == second["value"]


def test_jax_settings_win_over_the_purejax_default(tmp_path):
    mine = str(tmp_path / "mine")
    assert _run({"PUREJAX_CACHE": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": mine})["dir"] == mine
    off = _run({"PUREJAX_CACHE": str(tmp_path), "JAX_ENABLE_COMPILATION_CACHE": "false"})
    assert off["dir"] is None and not off["hit"]
    assert not os.path.exists(tmp_path / "xla")


def test_an_unwritable_cache_directory_warns_once_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    report, stderr = _run({"PUREJAX_CACHE": str(blocker)}, with_stderr=True)
    assert report["dir"] is None and not report["hit"]
    assert stderr.count("XLA compilation cache off: cannot write") == 1
    assert "PUREJAX_CACHE" in stderr


def test_in_this_session_enable_keeps_the_suites_cache():
    # tests/conftest.py points the whole session at one temporary cache; the scripts keep it.
    before = jax.config.jax_compilation_cache_dir
    assert before and xla_cache.enable() == before == jax.config.jax_compilation_cache_dir
