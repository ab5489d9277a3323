"""Which op-by-op (eager) primitives a Trainer's steps run on arrays spread over several devices.

On a pod every eager op on a global array is a program of its own on every process, and
dozens of them in flight at once hung a 2-process run under load (the sampler sliced the
seed-stacked params with x[0] per leaf, and laid them out with a device_put per leaf; both
processes sat idle in different tiny programs). Every computation of a step on sharded arrays
must therefore be a jitted call (or a fetch). The mesh workers record with this, and the tests
assert the record is empty.

    record(trainer, path)   # before trainer.run(); the run writes the names to `path` when it returns
"""

from __future__ import annotations

import jax
from jax._src import core  # private: the one place every eager primitive passes


def record(trainer, path: str) -> None:
    """Records the names of the eager primitives on multi-device arrays (jitted calls are not
    eager) that Trainer._one_step and Trainer.evaluate run, one per line into `path` when
    trainer.run() returns."""
    names, active = [], [False]
    process_primitive, device_put = core.EvalTrace.process_primitive, jax.device_put

    def spread(args) -> bool:
        return any(isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 for x in jax.tree.leaves(args))

    def recording_process_primitive(self, primitive, args, params):
        if active[0] and spread(args) and primitive.name not in ("jit", "pjit"):
            names.append(primitive.name)
        return process_primitive(self, primitive, args, params)

    def recording_device_put(x, *a, **k):  # its own fast path, not through process_primitive
        if active[0] and spread(x):
            names.append("device_put")
        return device_put(x, *a, **k)

    def recorded(method):
        def run(*a, **k):
            active[0] = True
            try:
                return method(*a, **k)
            finally:
                active[0] = False

        return run

    core.EvalTrace.process_primitive, jax.device_put = recording_process_primitive, recording_device_put
    run = trainer.run

    def run_then_write(*a, **k):
        summaries = run(*a, **k)
        with open(path, "w") as f:
            f.writelines(f"{name}\n" for name in names)
        return summaries

    trainer._one_step, trainer.evaluate = recorded(trainer._one_step), recorded(trainer.evaluate)
    trainer.run = run_then_write
