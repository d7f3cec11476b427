"""Features of several underlyings, keyed by asset: one d* and one causal feature table per asset (AFML ch. 5).

Each asset's fractional order is chosen on that asset's own training period (the first ``train_fraction`` of its
bars) and applied to its whole series; nothing is pooled across assets, because the price levels and volatility
regimes differ (a d* that makes BTC stationary need not make XRP stationary). The stacked table carries an
``underlying`` column next to the time index, so every row is keyed by (asset, bar close).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench.data.schema import normalise_assets
from workbench.features.fracdiff import MinDResult, min_d
from workbench.features.indicators import ohlcv, price_features
from workbench.features.volatility import close_to_close, score_volatility, yang_zhang


@dataclass
class AssetFeatures:
    """What :func:`asset_features` built."""

    min_d: dict[str, MinDResult] = field(default_factory=dict)  # per asset, searched on its training period
    train_end: dict[str, pd.Timestamp] = field(default_factory=dict)  # last bar close of each training period
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # per asset, as :func:`price_features`

    @property
    def primary(self) -> str:
        """The first asset: the one whose table the later notebooks use."""
        return next(iter(self.tables))

    @property
    def d_star(self) -> dict[str, float]:
        return {a: float(r.d_star) for a, r in self.min_d.items()}

    def stacked(self) -> pd.DataFrame:
        """All assets' tables stacked, with an ``underlying`` column; index the bar close (UTC), sorted by
        (underlying, time)."""
        return pd.concat([t.assign(underlying=a) for a, t in self.tables.items()]).loc[
            :, ["underlying", *next(iter(self.tables.values())).columns]]

    def summary(self) -> pd.DataFrame:
        """One row per asset: bars, training bars, d*, the ADF statistic and correlation with the log price at
        d*, and the price level (first and last close)."""
        rows = {}
        for a, r in self.min_d.items():
            t = self.tables[a]
            ok = len(r.curve) and np.isfinite(r.d_star)  # NaN d*: no tested d passed the ADF test
            at = r.curve.loc[(r.curve["d"] - r.d_star).abs().idxmin()] if ok else pd.Series(dtype=float)
            rows[a] = {"bars": len(t), "train_end": self.train_end[a], "d_star": r.d_star,
                       "adf_stat_at_d": at.get("adf_stat", np.nan), "corr_at_d": at.get("corr", np.nan),
                       "first_close": float(np.exp(t["log_close"].dropna().iloc[0])),
                       "last_close": float(np.exp(t["log_close"].dropna().iloc[-1]))}
        return pd.DataFrame(rows).T.rename_axis("underlying")


def asset_features(bars: pd.DataFrame, assets: Sequence[str], *, train_fraction: float = 0.6,
                   threshold: float = 1e-4, resolution: float = 0.01, **windows: Any) -> AssetFeatures:
    """Per-asset d* (on each asset's training period only) and causal feature tables.

    Parameters
    ----------
    bars : DataFrame
        An ingestion ``bars`` table (any interval) holding every asset in ``assets`` (column ``underlying``).
    assets : sequence of str
        Underlyings to build, e.g. ``["btc", "eth"]``; one missing from ``bars`` raises ``ValueError``.
    train_fraction : float
        Share of each asset's bars (from its first) on which its d* is searched.
    threshold, resolution : float
        FFD weight threshold and resolution of d* (see :func:`workbench.features.fracdiff.min_d`).
    **windows
        ``vol_window``, ``rsi_window``, ``bb_window``, ``volume_window`` of :func:`price_features`.

    Returns
    -------
    AssetFeatures
        ``tables[asset]`` has one row per bar of that asset (shape (n_bars, 14)); row t uses bars up to t only.
    """
    assets = normalise_assets(assets)
    have = set(bars["underlying"].unique())
    missing = [a for a in assets if a not in have]
    if missing:
        raise ValueError(f"asset(s) {missing} are not in the bars; found {sorted(have)}")
    out = AssetFeatures()
    for a in assets:
        px = ohlcv(bars, underlying=a)
        end = px.index[int(train_fraction * (len(px) - 1))]
        res = min_d(np.log(px["close"].loc[:end]).dropna(), threshold=threshold, resolution=resolution)
        out.min_d[a], out.train_end[a] = res, end
        out.tables[a] = price_features(px, res.d_star, ffd_threshold=threshold, **windows)
    return out


def volatility_by_asset(bars: pd.DataFrame, truths: dict[str, pd.Series], window: int = 16) -> pd.DataFrame:
    """Yang-Zhang against close-to-close, scored per asset against a known volatility (evaluation only).

    Parameters
    ----------
    bars : DataFrame, an ingestion ``bars`` table at the truth's interval (15-minute markets: ``15min``).
    truths : dict asset -> Series, the true volatility per bar (fraction per bar), indexed by bar close.
    window : int, bars in both rolling estimators.

    Returns
    -------
    DataFrame indexed by (underlying, estimator) with :func:`score_volatility`'s columns.
    """
    parts = {}
    for a, truth in zip(normalise_assets(list(truths)), truths.values()):
        px = ohlcv(bars, underlying=a)
        est = {"Yang-Zhang": yang_zhang(px, window=window), "close-to-close": close_to_close(px["close"], window=window)}
        parts[a] = score_volatility(est, truth.reindex(px.index)).T
    return pd.concat(parts, names=["underlying", "estimator"])
