"""What a run writes besides checkpoints: metrics.jsonl (one whole JSON object per step),
TensorBoard, optional W&B, sample responses, and where each seed's files go.

Lines are written whole and fsynced, so a crash never leaves a torn record that
a reader would choke on; on resume, records after the restored step (written
after the last checkpoint by the interrupted run) and any torn tail are
dropped, so the resumed file equals the file of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any, Mapping

import jax

from purejax import atomic


def _plain(value: Any):
    """JSON-safe scalar: floats stay floats, non-finite become null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str) -> list[dict]:
    """All whole records of a metrics.jsonl file (a torn last line is skipped)."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn tail from a killed run; nothing valid follows it
    return records


class MetricsWriter:
    """Appends `{"step": s, ...}` records; only process 0 should create one."""

    def __init__(
        self,
        workdir: str,
        resume_step: int = 0,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        config: Mapping | None = None,
    ):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        atomic.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)
            if config is not None:  # the resolved config, next to the curves it produced
                text = json.dumps(_plain_tree(config), indent=2, sort_keys=True)
                self._tb.add_text("config", f"```\n{text}\n```", 0)
        self._wandb = _wandb_run(workdir, wandb_project, config) if wandb_project else None

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
        record = {"step": int(step)}
        record.update({k: _plain(v) for k, v in sorted(metrics.items())})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(record, step=step)
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def seed_dirs(workdir: str, seeds) -> list[str]:
    """Each seed's output directory: `workdir` for one seed, else workdir/seed_<seed>."""
    seeds = list(seeds)
    return [workdir] if len(seeds) == 1 else [os.path.join(workdir, f"seed_{seed}") for seed in seeds]


def seed_writers(run_dirs, seeds, config, resume_step: int) -> list:
    """One writer per seed (process 0 writes; `resume_step` -1 starts the files afresh)."""
    return [
        process_writer(
            run_dir,
            resume_step=resume_step,
            tensorboard=bool(config.logging.tensorboard),
            wandb_project=config.logging.wandb_project or None,
            config=dict(config.to_dict(), seed=seed, num_seeds=1),
        )
        for run_dir, seed in zip(run_dirs, seeds)
    ]


def write_samples(run_dir: str, step: int, rows: list[dict]) -> None:
    """run_dir/samples/step_<step>.jsonl, written atomically by process 0 only."""
    if jax.process_index() != 0:  # multi-host: one process writes
        return
    path = os.path.join(run_dir, "samples", f"step_{step:06d}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _plain_tree(value):
    if isinstance(value, Mapping):
        return {str(k): _plain_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_tree(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _wandb_run(workdir: str, project: str, config):
    """A W&B run that a resumed run continues (its id is kept in workdir/wandb_run_id); None,
    with a warning, when wandb is not installed."""
    try:
        import wandb
    except ImportError:
        warnings.warn(
            f"logging.wandb_project={project!r} is set but wandb is not installed; logging to "
            "metrics.jsonl and TensorBoard only. Install it with: pip install 'purejax[wandb]'",
            stacklevel=3,
        )
        return None
    id_file = os.path.join(workdir, "wandb_run_id")
    if os.path.exists(id_file):
        with open(id_file, encoding="utf-8") as f:
            run_id = f.read().strip()
    else:
        run_id = wandb.util.generate_id()
        atomic.write_text(id_file, run_id + "\n")
    return wandb.init(project=project, id=run_id, resume="allow", config=_plain_tree(dict(config or {})))


class NullWriter:
    """What processes other than 0 of a multi-host run log: nothing (records are still returned)."""

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
        record = {"step": int(step)}
        record.update({k: _plain(v) for k, v in sorted(metrics.items())})
        return record

    def close(self) -> None:
        pass


def process_writer(workdir: str, **kwargs) -> MetricsWriter | NullWriter:
    """A MetricsWriter on process 0 (jax.process_index() == 0), a NullWriter on the others."""
    return MetricsWriter(workdir, **kwargs) if jax.process_index() == 0 else NullWriter()
