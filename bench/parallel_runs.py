"""Two comparison arms one after the other, then side by side (`--jobs 2`, purejax.parallel_runs).

    python bench/parallel_runs.py [--steps 30] [--arms sum pure_prm]

Trains the arms of configs/compare_credit.py (3 seeds each, the main job's warm start from
the cache, trained first if absent) for --steps steps into a temporary directory, first with
one worker, then again from scratch with two, and prints both wall times and their ratio,
and whether the side-by-side runs logged bit for bit what the one-by-one runs logged (every
value of every seed's metrics.jsonl but the timings). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import compare_credit  # noqa: E402
from purejax import compare, metrics_log, parallel_runs, tasks, xla_cache  # noqa: E402


def logged(workdir: str, arms, num_seeds: int) -> list:
    """Every seed's records, timings left out (they differ run to run)."""
    out = []
    for arm in arms:
        for d in compare.seed_dirs(workdir, arm, num_seeds, 0):
            records = metrics_log.read_metrics(os.path.join(d, "metrics.jsonl"))
            out.append([{k: v for k, v in r.items() if "/time/" not in k} for r in records])
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--arms", nargs="+", default=["sum", "pure_prm"])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    xla_cache.enable()
    base = compare_credit.get_config()
    base.unlock()
    base.total_steps = args.steps
    base.lock()
    arms = compare.select_arms(args.arms)
    tasks.build_task(
        compare.arm_config(base, arms[0], args.seeds), show_progress=True
    )  # the warm start, once
    walls, records = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # Compile once into the persistent cache first, so neither timing pays for it.
        warmup = compare.sweep_runs(base, arms, args.seeds, os.path.join(tmp, "warmup"))
        parallel_runs.train_all(warmup, tasks.build_task, workers=1, show_progress=False)
        for workers in (1, 2):
            out = os.path.join(tmp, f"workers_{workers}")
            start = time.perf_counter()
            parallel_runs.train_all(
                compare.sweep_runs(base, arms, args.seeds, out),
                tasks.build_task,
                workers,
                show_progress=False,
            )
            walls[workers] = time.perf_counter() - start
            records[workers] = logged(out, arms, args.seeds)
    same = records[1] == records[2]
    print(f"{len(arms)} arms x {args.seeds} seeds x {args.steps} steps, {os.cpu_count()} cores")
    print(f"{'workers':>8s} {'wall s':>8s}")
    for workers, wall in walls.items():
        print(f"{workers:8d} {wall:8.1f}")
    print(f"one by one / side by side: {walls[1] / walls[2]:.2f}x; the same records: {same}")
    print(
        json.dumps(
            {
                "one_by_one_s": walls[1],
                "side_by_side_s": walls[2],
                "speedup": walls[1] / walls[2],
                "same_records": same,
            }
        )
    )


if __name__ == "__main__":
    main()
