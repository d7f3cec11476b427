"""Timing helper shared by the benchmark scripts."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], repeat: int = 5, warmup: bool = True) -> tuple[float, Any]:
    """``(best wall time in seconds over repeat runs, last result)``; one untimed warm-up run first
    (imports, compilation, caches) unless ``warmup=False``."""
    if warmup:
        fn()
    times, out = [], None
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def best_of_interleaved(fns: dict[str, Callable[[], Any]], repeat: int = 5, warmup: bool = True
                        ) -> dict[str, tuple[float, Any]]:
    """:func:`best_of` for several variants timed in turn (round ``r`` runs every variant once), so that a slow
    spell of a shared machine falls on all of them and their ratios stay comparable."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    out: dict[str, Any] = {}
    for _ in range(max(repeat, 1)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            out[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (min(times[k]), out[k]) for k in fns}
