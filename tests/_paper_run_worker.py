"""A paper config (configs/qwen25_math_7b_prm_vr.py) trained end to end on tiny HF checkpoints,
for tests/test_real_configs.py: the real-model path (HF policy + HF PRM + the PURE data files,
loaded through `trainer.build_task`), shrunk by overrides only.

    python -m tests._paper_run_worker ROOT WORKDIR [--mesh D,F,T] [--record-eager FILE]

ROOT holds policy/, prm/ and train.json (written by the test). With --mesh the run is sharded
over that mesh (run it with simulated devices); --record-eager writes to FILE the op-by-op
primitives its steps ran on sharded arrays (tests/_eager_ops.py; there should be none).
"""

from __future__ import annotations

import argparse
import os

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def overrides(root: str, mesh=(1, -1, 1)) -> list[str]:
    from purejax.data import DATA_DIR

    data, fsdp, tensor = mesh
    return [
        f"policy.path={root}/policy",
        f"prm.path={root}/prm",
        "policy.dtype=float32",
        "prm.dtype=float32",
        f"data.train_path={root}/train.json",
        "data.eval_names=('math500',)",
        f"data.eval_paths=('{os.path.join(DATA_DIR, 'math500.jsonl')}',)",
        "eval.num_prompts=2",
        "eval.batch_size=2",
        "eval.max_new_tokens=8",
        "rollout.prompts_per_step=2",
        "rollout.samples_per_prompt=2",
        "rollout.max_prompt_len=640",
        "rollout.max_new_tokens=8",
        "rollout.sample_batch=2",
        "prm.batch_size=2",
        "ppo.micro_batches=2",
        "ppo.logit_chunk=4",
        "total_steps=2",
        "eval_every=2",
        "checkpoint_every=2",
        "logging.tensorboard=False",
        f"mesh.data={data}",
        f"mesh.fsdp={fsdp}",
        f"mesh.tensor={tensor}",
    ]


def run(
    root: str, workdir: str, mesh=(1, -1, 1), config_file: str = "qwen25_math_7b_prm_vr.py", record_eager=None
) -> None:
    from purejax import config as config_lib
    from purejax import tasks
    from purejax import trainer as trainer_lib

    path = os.path.join(ROOT_DIR, "configs", config_file)
    config = config_lib.load(path, overrides(root, mesh))
    task = tasks.build_task(config)
    trainer = trainer_lib.Trainer(config, task, workdir, show_progress=False)
    if record_eager:
        from tests import _eager_ops

        _eager_ops.record(trainer, record_eager)
    trainer.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("workdir")
    parser.add_argument("--mesh", default="1,-1,1")
    parser.add_argument("--record-eager")
    args = parser.parse_args()
    run(args.root, args.workdir, tuple(int(v) for v in args.mesh.split(",")), record_eager=args.record_eager)
