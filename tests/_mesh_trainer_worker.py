"""One Trainer run of configs/smoke.py (two vmapped seeds) for tests/test_mesh_trainer.py, in a
subprocess, because jax fixes its device count (and its process group) when it starts.

    python -m tests._mesh_trainer_worker WORKDIR --mesh D,F,T [--stop-after N] [--rollout-tensor T]
        [--process I/N --port P]

--mesh        the mesh of the run (1,1,1 with one device: the unsharded reference); a workdir
              holding a checkpoint resumes from it, whatever mesh wrote it;
--stop-after  stop after N steps (as a preempted run stops);
--rollout-tensor T  sample in the decode layout (config.rollout.mesh_tensor = T; 0: training layout);
--process     this is process I of N (multi-host on one machine: jax.distributed over localhost,
              each process with its own simulated CPU devices);
--skew-rewards  process 1 scores every step 0.5 higher than process 0 does (a host whose
              host-side rewards differ, as a verifier deadline missed under load makes them);
--record-eager FILE  write to FILE the op-by-op primitives the steps ran on sharded arrays
              (tests/_eager_ops.py; there should be none).
"""

from __future__ import annotations

import argparse
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mesh(text: str) -> tuple[int, int, int]:
    data, fsdp, tensor = (int(v) for v in text.split(","))
    return data, fsdp, tensor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--mesh", type=_mesh, required=True)
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--rollout-tensor", type=int, default=0)
    parser.add_argument("--process", default="0/1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--skew-rewards", action="store_true")
    parser.add_argument("--record-eager")
    args = parser.parse_args()
    process_id, num_processes = (int(v) for v in args.process.split("/"))

    from purejax import config as config_lib
    from purejax import distributed

    config = config_lib.load(os.path.join(ROOT, "configs", "smoke.py"))
    with config.unlocked():
        config.num_seeds = 2
        config.rollout.mesh_tensor = args.rollout_tensor
        if num_processes > 1:
            address = f"localhost:{args.port}"
            config.distributed.update(
                coordinator_address=address, num_processes=num_processes, process_id=process_id
            )
    distributed.initialize(config)

    from purejax import tasks
    from purejax import trainer as trainer_lib
    from tests import _eager_ops

    if args.skew_rewards and process_id == 1:
        from purejax import scoring

        score_rollout = scoring.score_rollout

        def skewed(*a, **k):
            scored = score_rollout(*a, **k)
            composed = scored.composed._replace(step_r_bt=scored.composed.step_r_bt + 0.5)
            return scored._replace(composed=composed)

        scoring.score_rollout = skewed

    with config.unlocked():
        config.mesh.update(data=args.mesh[0], fsdp=args.mesh[1], tensor=args.mesh[2])
    task = tasks.build_task(config)
    trainer = trainer_lib.Trainer(config, task, args.workdir, show_progress=False)
    if args.record_eager:
        _eager_ops.record(trainer, args.record_eager)
    trainer.run(stop_after=args.stop_after)


if __name__ == "__main__":
    main()
