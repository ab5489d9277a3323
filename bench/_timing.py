"""Timing shared by the benchmarks: best-of wall times, ours and a reference run alternately."""

from __future__ import annotations

import time


def best_time(fn, repeats: int) -> float:
    """Best wall time of fn() over `repeats` calls (fn blocks until its result is ready)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved_best(ours, theirs, repeats: int):
    """([best time of ours, of theirs], [their last outputs]), the two run alternately so that
    load from other processes hits both sides alike."""
    times, outputs = [float("inf")] * 2, [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((ours, theirs)):
            t0 = time.perf_counter()
            outputs[i] = fn()
            times[i] = min(times[i], time.perf_counter() - t0)
    return times, outputs
