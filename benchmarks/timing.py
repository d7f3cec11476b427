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

