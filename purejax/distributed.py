"""Multi-process (multi-host) start-up: jax.distributed.initialize from the config or the environment.

    purejax.distributed.initialize(config)   # first thing, before any JAX computation

One process per host (TPU VM worker, or GPU node / GPU under SLURM). With
`config.distributed` set, its fields are passed on (empty fields: JAX fills them from the
environment). Otherwise initialize() is called without arguments only when the environment
is a multi-process launch (SLURM with several tasks, a multi-host TPU slice, Open MPI, or
JAX_COORDINATOR_ADDRESS set); JAX's cluster auto-detection then finds the coordinator, the
process count and this process's index. A plain single-process run (one CPU, one GPU, one
TPU host) does nothing here.
"""

from __future__ import annotations

import os

import jax
import numpy as np


def multiprocess_environment(environ=None) -> str | None:
    """The name of the multi-process launcher detected in the environment, or None."""
    env = os.environ if environ is None else environ
    if int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1:
        return "slurm"
    if "," in env.get("TPU_WORKER_HOSTNAMES", "") or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "openmpi"
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "env"
    return None


def initialize(config, environ=None) -> bool:
    """Calls jax.distributed.initialize when configured or in a multi-process launch; True if it did."""
    d = config.distributed
    explicit = bool(d.coordinator_address) or int(d.num_processes) > 0 or int(d.process_id) >= 0
    if not explicit and multiprocess_environment(environ) is None:
        return False
    if explicit and int(d.num_processes) > 0 and int(d.process_id) >= int(d.num_processes):
        raise ValueError(
            f"config.distributed.process_id={d.process_id} must be < num_processes={d.num_processes} "
            "(process ids are 0 .. num_processes - 1), or -1 to read it from the environment."
        )
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address or None,
        num_processes=int(d.num_processes) or None,
        process_id=int(d.process_id) if int(d.process_id) >= 0 else None,
    )
    return True


def same_on_every_process(tree):
    """`tree` of host arrays as process 0 holds it, on every process (as is on one process).

    Each process scores the whole rollout on its own host, and a host-side reward can differ
    between processes: a verifier item that misses its deadline on a loaded host scores `wrong`
    there only. Each process then fills its own devices' slices of the global batch
    (`Partitioner.put`), so differing values would silently train on a mix of two batches.
    Taking process 0's values costs one small collective per step.
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))
