"""Suite-wide set-up: one XLA compilation cache for the whole test session.

Many tests build a fresh Trainer, sampler or train step over the same tiny config, and each
instance jits its own closures, so without a persistent cache XLA compiles the same programs
again and again (tests/test_trainer.py: 143 s without it, 88 s with it). The cache is a
fresh temporary directory per session, shared with the subprocesses the multi-device tests
start (they inherit the environment), and removed at the end: nothing leaks between sessions.
A cached executable is the one XLA compiled, so no result depends on a cache hit.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from purejax.xla_cache import MIN_COMPILE_SECONDS  # JAX's default, 1 s, would skip most programs here
from tests._simulated import FAST_XLA


def pytest_configure(config):
    # Nothing in the suite downloads: the paper configs name Hub ids (Qwen/Qwen2.5-Math-7B, 15 GB)
    # that purejax.hub would fetch when online. Offline, they resolve from the cache or fail fast.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # XLA:CPU's cheap pipeline for the whole session, in this process and every subprocess a
    # test starts (they inherit the environment): the suite's time is mostly compile time, and
    # this cuts it by ~40%. Both sides of every in-suite comparison run with it.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_XLA}".strip()
    cache_dir = tempfile.mkdtemp(prefix="purejax_test_xla_cache_")
    config._purejax_xla_cache = cache_dir
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(MIN_COMPILE_SECONDS)
    import jax  # after the environment is set (a first import reads it); update() if already imported

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)


def pytest_unconfigure(config):
    cache_dir = getattr(config, "_purejax_xla_cache", None)
    if cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)


# ---------------------------------------------------------------- the smoke run, shared
# Several files compare against one uninterrupted run of configs/smoke.py; it is built once per
# session (its task and its 4 steps), not once per file.

import pytest  # noqa: E402

SMOKE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "smoke.py")


@pytest.fixture(scope="session")
def smoke_config():
    from purejax import config as config_lib

    return config_lib.load(SMOKE)


@pytest.fixture(scope="session")
def task(smoke_config):
    from purejax import tasks

    return tasks.build_task(smoke_config)


@pytest.fixture(scope="session")
def uninterrupted(smoke_config, task, tmp_path_factory):
    """(workdir, Trainer) of the smoke run trained to the end without interruption."""
    from purejax import trainer as trainer_lib

    workdir = tmp_path_factory.mktemp("uninterrupted")
    trainer = trainer_lib.Trainer(smoke_config, task, str(workdir), show_progress=False)
    trainer.run()
    return workdir, trainer
