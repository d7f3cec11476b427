"""Ingestion throughput: validated events per second, against the reference parse and the naive baseline.

Usage: python benchmarks/ingest.py [--days 30] [--repeat 3] [--no-dask]

Simulates the default data into a temporary folder if the project's data/raw does not hold it, then times in
one run:

* ``read_events`` single-process (``workers=1``), the default: clean files parsed by Arrow's JSON reader into
  columns and validated with numpy masks (``workbench.data.columnar``), with Arrow's threads on every core and
  with one thread;
* the record path: orjson where it provably equals the stdlib parse, one dict per record read by key
  signature, the garbage collector paused (the fast path before the columnar one);
* the reference path of the same code (stdlib ``json`` with the duplicate-key hook, the collector running):
  the parser and allocation behaviour of the code before any fast path, every check identical;
* the naive baseline a user would write first: ``pd.DataFrame(json.load(f)["prices"])`` per file plus
  ``pd.concat`` (no validation, no quarantine, no derived tables);
* scaling: one process with one Arrow thread against the local process pool with 2 workers (one thread
  each), and a Dask ``LocalCluster`` (127.0.0.1) with 1 and 2 worker processes (the cluster's start-up is
  not timed; scattering the work and gathering it is).

Every parallel result is checked equal to the single-process one. Ratios are printed, not asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from timing import best_of

from workbench import config
from workbench.data import derive_tables, read, read_events
from workbench.data.simulate import SimConfig, ensure_simulation


def naive(folder: Path) -> int:
    frames = [pd.DataFrame(json.loads(f.read_text())["prices"]) for f in sorted(folder.glob("*.json"))]
    return len(pd.concat(frames, ignore_index=True))


@contextlib.contextmanager
def record_path() -> Any:
    """No columnar reading: every file parsed into one dict per record (orjson where provably exact)."""
    columnar = read._columnar_eligible
    read._columnar_eligible = lambda raw: False
    try:
        yield
    finally:
        read._columnar_eligible = columnar


@contextlib.contextmanager
def reference_path() -> Any:
    """The stdlib parser and a running garbage collector (the ingestion before any fast path)."""
    fast, bulk = read._fast_loads, read._bulk_allocation
    read._fast_loads = lambda raw: None
    read._bulk_allocation = contextlib.nullcontext
    try:
        with record_path():
            yield
    finally:
        read._fast_loads, read._bulk_allocation = fast, bulk


@contextlib.contextmanager
def arrow_threads(n: int) -> Any:
    """Arrow's CPU thread pool limited to ``n`` threads."""
    before = pa.cpu_count()
    pa.set_cpu_count(n)
    try:
        yield
    finally:
        pa.set_cpu_count(before)


def same(a: tuple[pd.DataFrame, ...], b: tuple[pd.DataFrame, ...]) -> bool:
    try:
        for x, y in zip(a, b):
            pd.testing.assert_frame_equal(x, y, check_exact=True)
    except AssertionError:
        return False
    return True


def _under(ctx: Any, folder: Path) -> Any:
    with ctx:
        return read_events(folder, progress=False, workers=1)


VARIANTS: dict[str, Any] = {  # name: what is timed, given the wallet folder
    "columnar": lambda folder: read_events(folder, progress=False, workers=1),
    "one_thread": lambda folder: _under(arrow_threads(1), folder),
    "record": lambda folder: _under(record_path(), folder),
    "reference": lambda folder: _under(reference_path(), folder),
    "naive": naive,
    "pool2": lambda folder: read_events(folder, progress=False, workers=2),
}


def _time_in_subprocesses(folder: Path, repeat: int) -> dict[str, list[float]]:
    """Wall seconds of each variant, ``repeat`` times, each in a fresh process (after one untimed warm-up run
    there: imports and lazy initialisation are not timed)."""
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(max(repeat, 1)):
        for name in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--variant", name, "--folder", str(folder)],
                                 check=True, capture_output=True, text=True).stdout
            times[name].append(float(out.strip().splitlines()[-1]))
    return times


def _child(name: str, folder: Path) -> None:
    VARIANTS[name](folder)
    t0 = time.perf_counter()
    VARIANTS[name](folder)
    print(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster rows")
    ap.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # a timed child process
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return _child(args.variant, args.folder)
    cfg = SimConfig(days=args.days)
    raw = config.paths().raw
    if not (raw / "merged_trades" / cfg.wallet).is_dir():
        raw = Path(tempfile.mkdtemp()) / "raw"
    ensure_simulation(cfg, raw)
    folder = raw / "merged_trades" / cfg.wallet
    n_files = sum(1 for _ in folder.glob("*.json"))
    # every variant once here, for the equality checks (and a warm page cache); then each timed in a fresh
    # process, the variants in turn: a variant does not inherit the heap another one left behind, and a slow
    # spell of the shared machine falls on all of them
    results = {name: fn(folder) for name, fn in VARIANTS.items()}
    best = {name: min(ts) for name, ts in _time_in_subprocesses(folder, args.repeat).items()}
    (t_fast, t_one, t_rec, t_ref, t_naive, t_pool) = (best[k] for k in VARIANTS)
    one, res_one, rec, ref, n_naive, res = results.values()
    t_derive, _ = best_of(lambda: derive_tables(one[0], "15min"), args.repeat, warmup=False)
    n = len(one[0])
    rows: list[tuple[str, float, int, bool]] = [
        ("read_events, 1 process, columnar (default)", t_fast, n, True),
        ("  the same, 1 Arrow thread", t_one, n, same(one, res_one)),
        ("read_events, 1 process, record path (orjson)", t_rec, n, same(one, rec)),
        ("read_events, 1 process, reference parse", t_ref, n, same(one, ref)),
        ("naive pd.DataFrame per file (no checks)", t_naive, n_naive, True),
        ("derive_tables (trades, positions, bars)", t_derive, n, True),
    ]
    rows.append(("local process pool, 2 workers", t_pool, n, same(one, res)))
    if not args.no_dask:
        from distributed import Client, LocalCluster

        for w in (1, 2):
            with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address=None) as cluster, Client(cluster) as client:
                t, res = best_of(lambda: read_events(folder, progress=False, scheduler=client), args.repeat)
            rows.append((f"Dask LocalCluster, {w} worker process(es)", t, n, same(one, res)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"data: {n_files:,} files, {n:,} events ({args.days:g} simulated days); best of {args.repeat} "
          f"(the 1-process and pool rows each in a fresh process, in turn); {cores} cores")
    print(f"{'stage':<46}{'seconds':>9}{'events/s':>14}  same result")
    for name, t, k, ok in rows:
        print(f"{name:<46}{t:>9.2f}{k / t:>14,.0f}  {'yes' if ok else 'NO'}")
    pool = {name: t for name, t, _, _ in rows}
    print(f"single process, columnar / reference parse: {t_ref / t_fast:.2f}x the events/s "
          f"({t_ref / t_one:.2f}x with one Arrow thread)")
    print(f"single process, columnar / record path (orjson): {t_rec / t_fast:.2f}x the events/s")
    print(f"single process, columnar / naive unvalidated: {t_naive / t_fast:.2f}x the events/s")
    print(f"local pool, 2 workers / 1 process with 1 thread: {t_one / t_pool:.2f}x")
    if not args.no_dask:
        print(f"Dask, 2 workers / 1 worker: "
              f"{pool['Dask LocalCluster, 1 worker process(es)'] / pool['Dask LocalCluster, 2 worker process(es)']:.2f}x")

if __name__ == "__main__":
    main()
