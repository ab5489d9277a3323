"""Verifier throughput on the 500 MATH500 answers: in-process vs the worker pool.

    python bench/verifier.py [--workers 2] [--repeats 2]

Each response is `... \\boxed{gold}` (half of them with the first number
perturbed, so both outcomes are timed). "single" scores in this process
(`verify_batch(workers=0)`, math-verify's SIGALRM timer only); "pool" uses
`VerifierPool` (hard per-item deadline), started and warmed before timing.
Gold parses are cached per process, so repeats after the first are
the steady state of a training run (each truth is compared with K samples).
The last line is a JSON object.
"""

import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from purejax.data import DATA_DIR  # noqa: E402
from purejax.rewards import VerifierPool, verify_batch  # noqa: E402

MATH500 = os.path.join(DATA_DIR, "math500.jsonl")


def _perturb(gold):
    number = re.search(r"\d+", gold)
    if number:
        return gold[: number.start()] + str(int(number.group()) + 1) + gold[number.end() :]
    return "(%s)+1" % gold


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    golds = [json.loads(line)["answer"] for line in open(MATH500)]
    texts = [
        "Step 1.\n\nSo the answer is $\\boxed{%s}$." % (g if i % 2 == 0 else _perturb(g))
        for i, g in enumerate(golds)
    ]
    n = len(texts)

    def timed(fn):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            scores = fn()
            times.append(time.perf_counter() - start)
        return times, scores

    single_times, single_scores = timed(lambda: verify_batch(texts, golds, workers=0))
    start = time.perf_counter()
    pool = VerifierPool(workers=args.workers)
    verify_batch(["\\boxed{1}"] * args.workers, ["1"] * args.workers, pool=pool)
    startup_s = time.perf_counter() - start
    pool_times, pool_scores = timed(lambda: verify_batch(texts, golds, pool=pool))
    pool.close()
    assert (single_scores == pool_scores).all(), "pool and in-process scores differ"

    single = n / min(single_times)
    pooled = n / min(pool_times)
    print(f"{'mode':<10}{'answers/s (best)':>18}{'first pass s':>14}")
    print(f"{'single':<10}{single:>18.1f}{single_times[0]:>14.2f}")
    print(f"{'pool x' + str(args.workers):<10}{pooled:>18.1f}{pool_times[0]:>14.2f}")
    print(
        f"pool start-up {startup_s:.2f} s; correct {int(pool_scores.sum())}/{n} "
        f"(expected {(n + 1) // 2}); cpus {os.cpu_count()}"
    )
    print(
        json.dumps(
            {
                "bench": "verifier",
                "answers": n,
                "workers": args.workers,
                "single_answers_per_s": round(single, 1),
                "pool_answers_per_s": round(pooled, 1),
                "pool_over_single": round(pooled / single, 2),
                "pool_startup_s": round(startup_s, 2),
                "correct": int(pool_scores.sum()),
            }
        )
    )


if __name__ == "__main__":
    main()
