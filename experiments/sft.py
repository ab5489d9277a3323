"""Warm-start SFT for the arithmetic miniature (or reuse the cached result).

    python -m experiments.sft [--config=configs/arith_sft.py] [--set train.steps=300 ...] [--force]

Prints the checkpoint directory, the wall time and the held-out greedy accuracy
(purejax.sampling.sample at temperature 0, scored by purejax.rewards.verify_batch);
the last line is one JSON object with those numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from purejax import xla_cache
from purejax.tasks import warmstart

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "arith_sft.py"
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. train.steps=300 model.num_layers=3",
    )
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = warmstart.load_sft_config(args.config, args.set)
    xla_cache.enable()
    start = time.perf_counter()
    result = warmstart.warm_start(config, progress=not args.no_progress, force=args.force)
    wall = time.perf_counter() - start
    m = result.metrics
    print(f"checkpoint: {result.path} ({'trained' if result.trained else 'reused from cache'})")
    print(
        f"wall time {wall:.1f} s (when trained: tokenizer + data + SFT {m['train_seconds']:.1f} s, "
        f"held-out evaluation {m.get('eval_seconds', 0.0):.1f} s)"
    )
    print(
        f"held-out greedy accuracy {m['accuracy']:.3f} over {m['eval_problems']} problems "
        f"(oracle {m['oracle_accuracy']:.3f}); by number of ops {m['accuracy_by_ops']}"
    )
    print(f"step labels {m['step_label_share']}; responses with filler {m['responses_with_filler']:.3f}")
    for text in m["examples"]:
        print("  example:", repr(text))
    print(
        json.dumps(
            dict(
                path=result.path,
                trained=result.trained,
                wall_seconds=round(wall, 2),
                train_seconds=round(m["train_seconds"], 2),
                accuracy=m["accuracy"],
                oracle_accuracy=m["oracle_accuracy"],
            )
        )
    )


if __name__ == "__main__":
    main()
