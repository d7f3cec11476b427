"""Design document 003's ``pipeline.py``: raw per-wallet market files to the training-ready step table, in one call.

``python -m workbench pipeline`` runs it and writes ``data/processed_trader_data.parquet`` (the document's file)
with a manifest beside it. It is the data path of notebooks 01-04 without their studies: ingestion, the
one-minute features with the fractional order *d** chosen on the training share only, the trader's exit levels
fitted on the round trips of the training share, and the per-step table of states, actions and rewards
(:func:`workbench.twin.steps.build_steps`). Everything is causal: a step's row uses data up to its start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import atomic


@dataclass
class TraderData:
    """What :func:`build_trader_data` returns: the step table and how it was made."""

    steps: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)


def build_trader_data(source: str | os.PathLike[str], *, wallet: str = "", step: str = "1min", step_offset: str = "5s",
                      notional: float = 5000.0, train_fraction: float = 0.6, feature_interval: str = "1min",
                      ffd_threshold: float = 1e-4, vol_window: int = 60, rsi_window: int = 14, bb_window: int = 20,
                      volume_window: int = 240, exit_step: str = "60s", progress: bool | None = None) -> TraderData:
    """The step table of one wallet's files.

    Parameters
    ----------
    source : a ``merged_trades`` folder (one sub-folder per wallet; ``wallet`` picks one, default the only
        one), a wallet folder of market files, or one file.
    step, step_offset : decision step of the table and its offset after each grid point (notebook 04's).
    notional : USDC the trader commits; rewards and P&L features are fractions of it.
    train_fraction : the first share of time on which *d** and the exit levels are fitted (no look-ahead).
    feature_interval, ffd_threshold, vol_window, rsi_window, bb_window, volume_window : notebook 02's features.
    exit_step : decision step of the exit-level fit (notebook 03's).

    Returns
    -------
    TraderData
        ``steps``: one row per step (index: step start, UTC) with the seed's 17 state features, the trader's
        features, the action class, flow, equity and reward; ``manifest``: inputs, counts and fitted values.
    """
    from workbench.data import ingest
    from workbench.features import fracdiff
    from workbench.features import indicators as features
    from workbench.labels import exits
    from workbench.labels.trades import round_trips
    from workbench.twin import steps as sequences

    src = Path(source)
    target: Path = src
    if src.is_dir() and not any(p.is_file() for p in src.iterdir()):
        target = ingest.find_wallet_dir(src, wallet)
    data = ingest.load_wallet(target, progress=progress)
    if data.events.empty:
        raise ingest.IngestError(f"{target}: no usable records (see the quarantine: {len(data.quarantine)} rows)")
    bars = ingest.rebar(data, feature_interval)
    ohlcv = features.ohlcv(bars)
    train_end = ohlcv.index[int(train_fraction * (len(ohlcv) - 1))]
    d_star = fracdiff.min_d(np.log(ohlcv["close"].loc[:train_end]).dropna(), threshold=ffd_threshold).d_star
    feat = features.price_features(ohlcv, d_star, ffd_threshold=ffd_threshold, vol_window=vol_window,
                                   rsi_window=rsi_window, bb_window=bb_window, volume_window=volume_window)
    trips = round_trips(data.positions)
    end_ms = pd.Timestamp(train_end).value // 10**6
    train_trips = trips[trips["closed"].astype(bool) & (trips["exit_t"] <= end_ms)] if len(trips) else trips
    levels = sequences.ExitLevels()
    fit_note = "defaults (no round trip closed in the training share)"
    if len(train_trips):
        fit = exits.fit_exit_barriers(data.events, train_trips, data.positions, step=exit_step, n_boot=0)
        levels = sequences.ExitLevels(float(fit.best["pt"]), float(fit.best["sl"]))
        fit_note = f"fitted on {len(train_trips)} training round trips"
    steps = sequences.build_steps(data.events, data.positions, ingest.rebar(data, step, step_offset), feat,
                                  notional=notional, levels=levels)
    manifest = {"source": str(target.resolve()), "wallet": str(data.events["wallet"].iloc[0]) if "wallet" in data.events else "",
                "events": int(len(data.events)), "quarantined": int(len(data.quarantine)), "steps": int(len(steps)),
                "first_step": str(steps.index[0]) if len(steps) else None,
                "last_step": str(steps.index[-1]) if len(steps) else None, "train_end": str(train_end),
                "d_star": float(d_star), "exit_levels": {"take_profit": levels.take_profit, "stop_loss": levels.stop_loss,
                                                         "how": fit_note},
                "parameters": {"step": step, "step_offset": step_offset, "notional": notional,
                               "train_fraction": train_fraction, "feature_interval": feature_interval,
                               "ffd_threshold": ffd_threshold, "vol_window": vol_window, "rsi_window": rsi_window,
                               "bb_window": bb_window, "volume_window": volume_window, "exit_step": exit_step}}
    return TraderData(steps, manifest)


def write_trader_data(result: TraderData, out: str | os.PathLike[str]) -> Path:
    """Write the step table (atomically) and ``<stem>.manifest.json`` beside it; returns the table's path."""
    path = Path(out)
    atomic.write_file(path, lambda p: result.steps.to_parquet(p))
    atomic.write_text(path.with_name(path.stem + ".manifest.json"), json.dumps(result.manifest, indent=2, default=str))
    return path
