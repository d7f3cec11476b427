"""Ingestion throughput: events parsed per second on the default data (30 simulated days).

Usage: python benchmarks/ingest.py [--days 30] [--repeat 3]

Simulates the default data into a temporary folder if the project's data/raw does not hold it, then
times `load_wallet` end to end (parse + validate + trades/positions/bars) and its parsing stage alone,
and compares with the naive baseline a user would write first: `pd.DataFrame(json.load(f)["prices"])`
per file plus `pd.concat` (no validation, no derived tables), in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from timing import best_of

from workbench import config
from workbench.data import derive_tables, load_wallet, read_events
from workbench.data.simulate import SimConfig, ensure_simulation


def naive(folder: Path) -> int:
    frames = [pd.DataFrame(json.loads(f.read_text())["prices"]) for f in sorted(folder.glob("*.json"))]
    return len(pd.concat(frames, ignore_index=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = SimConfig(days=args.days)
    raw = config.paths().raw
    if not (raw / "merged_trades" / cfg.wallet).is_dir():
        raw = Path(tempfile.mkdtemp()) / "raw"
    ensure_simulation(cfg, raw)
    folder = raw / "merged_trades" / cfg.wallet
    n_files = sum(1 for _ in folder.glob("*.json"))
    t_parse, (events, _, _) = best_of(lambda: read_events(folder), args.repeat, warmup=False)
    t_derive, _ = best_of(lambda: derive_tables(events, "15min"), args.repeat, warmup=False)
    t_full, data = best_of(lambda: load_wallet(folder), args.repeat, warmup=False)
    t_naive, n_naive = best_of(lambda: naive(folder), args.repeat, warmup=False)
    n = len(data.events)
    print(f"data: {n_files:,} files, {n:,} events ({args.days:g} simulated days); best of {args.repeat}")
    print(f"{'stage':<42}{'seconds':>9}{'events/s':>14}")
    print(f"{'read + validate (read_events)':<42}{t_parse:>9.2f}{n / t_parse:>14,.0f}")
    print(f"{'trades, positions, bars (derive_tables)':<42}{t_derive:>9.2f}{n / t_derive:>14,.0f}")
    print(f"{'end to end (load_wallet)':<42}{t_full:>9.2f}{n / t_full:>14,.0f}")
    print(f"{'naive pd.DataFrame per file (no checks)':<42}{t_naive:>9.2f}{n_naive / t_naive:>14,.0f}")
    print(f"ratio read+validate / naive parse: {t_parse / t_naive:.2f}x the naive time "
          f"({t_naive / t_parse:.2f}x its speed) while validating every record")


if __name__ == "__main__":
    main()
