"""Labeling speed: triple barrier on 30,000 events over 400,000 one-minute bars, and the AFML ch. 13 grid.

Usage: python benchmarks/labeling.py [--bars 400000] [--events 30000] [--ref-events 1000] [--repeat 5]

* ``triple_barrier`` (numba first-touch search) against a straightforward per-event pandas implementation
  of AFML snippet 3.2 (``applyPtSlOnT1``) on the same inputs (1-day vertical barrier from snippet 3.4,
  daily-vol targets of about one daily sigma, so a third of the events run to the vertical barrier,
  pt_sl = (1, 1)). The reference runs on an evenly spaced subsample of events and is
  extrapolated linearly to all events (its cost is per event); both outputs are compared on the subsample.
* ``ou_barrier_grid``: the 21 x 21 (profit-taking, stop-loss) grid with 10,000 OU paths, against a plain
  Python loop (AFML snippet 13.2) over a few paths of the same draw, extrapolated linearly.

Numba compile (or cache load) time is reported separately: the timed calls run after a warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from references import ou_loop_exit_pnl
from timing import best_of

from workbench.labels import add_vertical_barrier, daily_vol, ou_barrier_grid, ou_paths, triple_barrier


def afml_apply_pt_sl_on_t1(close: pd.Series, events: pd.DataFrame, pt_sl: tuple[float, float]) -> pd.DataFrame:
    """AFML snippet 3.2, as printed (one pandas slice per event), with the output columns pre-typed."""
    out = events[["t1"]].copy(deep=True)
    out["sl"] = pd.Series(pd.NaT, index=out.index, dtype=close.index.dtype)
    out["pt"] = pd.Series(pd.NaT, index=out.index, dtype=close.index.dtype)
    pt = pt_sl[0] * events["trgt"] if pt_sl[0] > 0 else pd.Series(index=events.index, dtype=float)
    sl = -pt_sl[1] * events["trgt"] if pt_sl[1] > 0 else pd.Series(index=events.index, dtype=float)
    for loc, t1 in events["t1"].fillna(close.index[-1]).items():
        df0 = close[loc:t1]  # path prices
        df0 = (df0 / close[loc] - 1) * events.at[loc, "side"]  # path returns
        out.loc[loc, "sl"] = df0[df0 < sl[loc]].index.min()  # earliest stop loss
        out.loc[loc, "pt"] = df0[df0 > pt[loc]].index.min()  # earliest profit taking
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=400_000)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--ref-events", type=int, default=1_000)
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--vol-span", type=int, default=20 * 1440, help="daily_vol lookback in bars (20 days)")
    args = ap.parse_args()

    # ---- inputs: a one-minute random walk, random events, daily-vol targets, 1-day vertical barriers
    rng = np.random.default_rng(0)
    idx = pd.date_range("2024-01-01", periods=args.bars, freq="min", tz="UTC")
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.0008, args.bars))), index=idx)
    vol = daily_vol(close, lookback=args.vol_span)  # ~ the true daily sigma (3%): long first-passage scans
    pool = np.arange(len(close) - len(vol), args.bars)  # bars with a volatility estimate
    events = idx[np.sort(rng.choice(pool, args.events, replace=False))]
    vertical = add_vertical_barrier(events, close, num_days=1)
    pt_sl = (1.0, 1.0)

    t0 = time.perf_counter()
    triple_barrier(close.iloc[:2000], events[:5], pt_sl, vol, vertical=5)
    t_warm = time.perf_counter() - t0
    t_fast, out = best_of(lambda: triple_barrier(close, events, pt_sl, vol, vertical=vertical), args.repeat, warmup=False)
    n_touch = (out["barrier"] != "vertical").mean()
    scanned = (close.index.searchsorted(out["t1"]) - close.index.searchsorted(out.index)).mean()
    print(f"triple barrier: {args.events:,} events on {args.bars:,} one-minute bars, 1-day vertical barrier, "
          f"pt_sl = {pt_sl}, daily-vol targets (span {args.vol_span:,} bars, mean {out['target'].mean():.3f}); "
          f"{n_touch:.0%} end at a horizontal barrier, {scanned:.0f} bars scanned per event on average")
    print(f"  first call (numba compile or cache load + a tiny run): {t_warm:.2f} s (not in the timings below)")
    print(f"  workbench.labels.triple_barrier   best of {args.repeat}: {t_fast:.3f} s  "
          f"({'under' if t_fast < 0.25 else 'OVER'} the 0.25 s target)")

    sub = np.unique(np.linspace(0, args.events - 1, min(args.ref_events, args.events)).round().astype(int))
    ev_df = pd.DataFrame({"t1": vertical.iloc[sub], "trgt": vol.reindex(events[sub]), "side": 1.0},
                         index=events[sub])
    t_ref_sub, ref = best_of(lambda: afml_apply_pt_sl_on_t1(close, ev_df, pt_sl), 1, warmup=False)
    t_ref = t_ref_sub * args.events / len(sub)
    ref_t1 = ref[["t1", "sl", "pt"]].fillna(close.index[-1]).min(axis=1)
    agree = int((out["t1"].iloc[sub].to_numpy() == ref_t1.to_numpy()).sum())
    extrap = len(sub) < args.events
    note = f" -> {t_ref:.1f} s for all {args.events:,} (extrapolated linearly: its cost is per event)" if extrap else ""
    print(f"  AFML snippet 3.2 per-event pandas: {t_ref_sub:.2f} s on {len(sub):,} events{note}")
    print(f"  first-touch times agree on {agree:,} / {len(sub):,} reference events")
    print(f"  speed-up: {t_ref / t_fast:,.0f}x ({'at least' if t_ref / t_fast >= 50 else 'BELOW'} the 50x target)")

    # ---- AFML ch. 13
    grid = np.linspace(0.5, 10, 21)
    ou_barrier_grid(5.0, 25.0, n_paths=100)  # warm-up
    t_ou, _ = best_of(lambda: ou_barrier_grid(5.0, 25.0, n_paths=args.paths, seed=0), max(1, args.repeat // 2), warmup=False)
    n_loop = 20
    t_loop, _ = best_of(lambda: ou_loop_exit_pnl(ou_paths(5.0, 25.0, n_paths=n_loop, seed=0), grid, grid), 1, warmup=False)
    t_loop_all = t_loop * args.paths / n_loop
    t0 = time.perf_counter()
    for f in (0.0, 5.0, 10.0, -5.0, -10.0):
        for hl in (5.0, 10.0, 25.0, 50.0, 100.0):
            ou_barrier_grid(f, hl, n_paths=args.paths, seed=0)
    t_book = time.perf_counter() - t0
    print(f"AFML ch. 13 grid: 21 x 21 (pt, sl) rules, {args.paths:,} OU paths per cell, max holding 100")
    print(f"  ou_barrier_grid (forecast 5, half-life 25): {t_ou:.2f} s "
          f"({'under' if t_ou < 60 else 'OVER'} the 60 s target)")
    print(f"  plain Python loop (snippet 13.2) on the same draw: {t_loop:.2f} s for {n_loop} paths -> "
          f"{t_loop_all:.0f} s for {args.paths:,} (extrapolated linearly); speed-up {t_loop_all / t_ou:,.0f}x")
    print(f"  all 25 book combinations (forecast x half-life): {t_book:.1f} s")


if __name__ == "__main__":
    main()
