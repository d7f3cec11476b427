"""Causal price features: Yang-Zhang volatility, technical indicators (via ``ta``), the feature table.

Every function here is causal: its value at bar t uses bars up to and including t only (tested by
property tests that change or append data after t). Indicators come from the ``ta`` library with
``fillna=False`` (its ``fillna=True`` path back-fills, a look-ahead) and from pandas rolling/EWM windows,
which are trailing; nothing is centred or back-filled.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from workbench.fracdiff import ffd


def yz_k(n: int) -> float:
    """Yang-Zhang weight ``k = 0.34 / (1.34 + (n + 1) / (n - 1))`` for a window of ``n`` bars.

    ``yz_k(20) = 0.139044``, ``yz_k(252) = 0.144806`` (Yang & Zhang 2000, eq. 9 with alpha = 1.34).
    """
    if n < 2:
        raise ValueError(f"window must be >= 2, got {n}")
    return 0.34 / (1.34 + (n + 1) / (n - 1))


def yang_zhang(ohlc: pd.DataFrame, window: int = 20, periods_per_year: float | None = None) -> pd.Series:
    """Rolling Yang-Zhang volatility (drift-independent, handles opening gaps).

    ``sigma^2 = sigma_O^2 + k sigma_C^2 + (1 - k) sigma_RS^2`` over the last ``window`` bars, where
    ``sigma_O^2`` is the sample variance of the overnight/opening returns ``ln(O_t / C_{t-1})``,
    ``sigma_C^2`` the sample variance of the open-to-close returns ``ln(C_t / O_t)``, ``sigma_RS^2`` the
    mean Rogers-Satchell term ``ln(H/C) ln(H/O) + ln(L/C) ln(L/O)`` and ``k = yz_k(window)``.

    Parameters
    ----------
    ohlc : DataFrame with columns ``open, high, low, close`` (positive prices), time-ordered.
    window : int, bars in the rolling window (n >= 2).
    periods_per_year : float, optional; annualise by ``sqrt(periods_per_year)`` if given.

    Returns
    -------
    Series, volatility per bar (fraction, e.g. 0.01 = 1%), NaN until ``window`` opening returns exist.

    References
    ----------
    Yang, D. & Zhang, Q. (2000), "Drift-independent volatility estimation based on high, low, open and
    close prices", *Journal of Business* 73(3), 477-491. The old mlfinlab used the wrong open-to-close
    term and is biased (about +7%); this follows the paper.
    """
    missing = {"open", "high", "low", "close"} - set(ohlc.columns)
    if missing:
        raise ValueError(f"ohlc lacks columns {sorted(missing)}")
    o, h, lo, c = (ohlc[k].astype(float) for k in ("open", "high", "low", "close"))
    log_oc_prev = np.log(o / c.shift(1))  # opening jump
    log_co = np.log(c / o)  # open to close
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    var_o = log_oc_prev.rolling(window, min_periods=window).var(ddof=1)
    var_c = log_co.rolling(window, min_periods=window).var(ddof=1)
    var_rs = rs.rolling(window, min_periods=window).mean()
    k = yz_k(window)
    sigma = np.sqrt(var_o + k * var_c + (1 - k) * var_rs)
    if periods_per_year:
        sigma = sigma * math.sqrt(periods_per_year)
    return sigma.rename("yang_zhang")


def close_to_close(close: pd.Series, window: int = 20, periods_per_year: float | None = None) -> pd.Series:
    """Rolling sample standard deviation of log close-to-close returns (the classic estimator)."""
    sigma = np.log(close.astype(float)).diff().rolling(window, min_periods=window).std(ddof=1)
    if periods_per_year:
        sigma = sigma * math.sqrt(periods_per_year)
    return sigma.rename("close_to_close")


def score_volatility(estimates: dict[str, pd.Series], truth: pd.Series) -> pd.DataFrame:
    """Compare volatility estimators with a known truth on their common index.

    Returns one column per estimator: ``bias`` (mean estimate / mean truth - 1), ``median ratio``,
    ``RMSE / mean truth`` and ``corr with truth``. A rolling estimator lags regime changes, so the
    mean of per-bar ratios would be biased upwards; these summaries are not.
    """
    out = {}
    for name, est in estimates.items():
        both = pd.concat([est.rename("est"), truth.rename("true")], axis=1).dropna()
        out[name] = {"bias": both["est"].mean() / both["true"].mean() - 1,
                     "median ratio": (both["est"] / both["true"]).median(),
                     "RMSE / mean truth": float(np.sqrt(((both["est"] - both["true"]) ** 2).mean()) / both["true"].mean()),
                     "corr with truth": both["est"].corr(both["true"]), "bars": len(both)}
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------
# Indicators (the ``ta`` library, always with fillna=False)
# ------------------------------------------------------------------------------------------------
def rsi(close: pd.Series, window: int = 14) -> pd.Series:
    """Relative Strength Index in [0, 100] (Wilder's smoothing; ``ta.momentum.RSIIndicator``)."""
    from ta.momentum import RSIIndicator

    return RSIIndicator(close.astype(float), window=window, fillna=False).rsi().rename(f"rsi_{window}")


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """MACD line, signal line and histogram (``ta.trend.MACD``), in price units."""
    from ta.trend import MACD

    m = MACD(close.astype(float), window_slow=slow, window_fast=fast, window_sign=signal, fillna=False)
    return pd.DataFrame({"macd": m.macd(), "macd_signal": m.macd_signal(), "macd_hist": m.macd_diff()})


def bollinger(close: pd.Series, window: int = 20, n_std: float = 2.0) -> pd.DataFrame:
    """Bollinger bands (``ta.volatility.BollingerBands``): middle, upper, lower, width = (upper - lower)
    / middle, and %B = position of the close within the bands."""
    from ta.volatility import BollingerBands

    b = BollingerBands(close.astype(float), window=window, window_dev=n_std, fillna=False)
    mid = b.bollinger_mavg()
    return pd.DataFrame({"bb_mid": mid, "bb_upper": b.bollinger_hband(), "bb_lower": b.bollinger_lband(),
                         "bb_width": (b.bollinger_hband() - b.bollinger_lband()) / mid,
                         "bb_pband": b.bollinger_pband()})


def sma(close: pd.Series, window: int) -> pd.Series:
    """Simple moving average (``ta.trend.SMAIndicator``)."""
    from ta.trend import SMAIndicator

    return SMAIndicator(close.astype(float), window=window, fillna=False).sma_indicator().rename(f"sma_{window}")


def ema(close: pd.Series, window: int) -> pd.Series:
    """Exponential moving average (``ta.trend.EMAIndicator``)."""
    from ta.trend import EMAIndicator

    return EMAIndicator(close.astype(float), window=window, fillna=False).ema_indicator().rename(f"ema_{window}")


def volume_zscore(volume: pd.Series, window: int = 96) -> pd.Series:
    """``(v_t - mean) / std`` over the trailing ``window`` bars including t (NaN until full, or std 0).

    ``ta`` has no volume z-score; a trailing pandas window is the causal definition.
    """
    v = volume.astype(float)
    mean = v.rolling(window, min_periods=window).mean()
    std = v.rolling(window, min_periods=window).std(ddof=1)
    return ((v - mean) / std.where(std > 0)).rename("volume_z")


# ------------------------------------------------------------------------------------------------
# The feature table
# ------------------------------------------------------------------------------------------------
def ohlcv(bars: pd.DataFrame, underlying: str | None = None) -> pd.DataFrame:
    """The underlying's OHLCV from an ingestion ``bars`` table, indexed by bar close (UTC).

    Bars without an underlying bar record keep NaN prices (no forward fill); with several underlyings,
    pass ``underlying``.
    """
    b = bars
    if underlying is not None:
        b = b[b["underlying"] == underlying]
    elif b["underlying"].nunique() > 1:
        raise ValueError(f"bars hold several underlyings {sorted(b['underlying'].unique())}: pass underlying=")
    out = pd.DataFrame({"open": b["u_open"].to_numpy(), "high": b["u_high"].to_numpy(), "low": b["u_low"].to_numpy(),
                        "close": b["u_close"].to_numpy(), "volume": b["u_volume"].to_numpy()},
                       index=pd.DatetimeIndex(pd.to_datetime(b["bar_end"].to_numpy(), unit="ms", utc=True), name="time"))
    return out


# ------------------------------------------------------------------------------------------------
# Feature table (continued)
# ------------------------------------------------------------------------------------------------
def price_features(ohlcv: pd.DataFrame, d: float, *, ffd_threshold: float = 1e-4, vol_window: int = 32,
                   rsi_window: int = 14, bb_window: int = 20, volume_window: int = 96,
                   periods_per_year: float | None = None) -> pd.DataFrame:
    """Causal features of an OHLCV bar series, one row per bar.

    Parameters
    ----------
    ohlcv : DataFrame with ``open, high, low, close, volume``, time-ordered (index kept).
    d : float, FFD order for the log close (choose it on the training period only: see ``min_d``).
    ffd_threshold : float, FFD weight threshold.
    vol_window, rsi_window, bb_window, volume_window : int, window lengths in bars.
    periods_per_year : float, optional, annualisation of the volatilities.

    Returns
    -------
    DataFrame with ``log_close``, ``ret`` (log return), ``ffd_close`` (FFD of the log close),
    ``yz_vol``, ``cc_vol``, ``rsi``, ``macd``, ``macd_signal``, ``macd_hist``, ``macd_hist_norm``
    (histogram / close), ``bb_width``, ``bb_pband``, ``volume_z``, ``ema_ratio`` (close / EMA(4 x
    vol_window) - 1).
    """
    close = ohlcv["close"].astype(float)
    log_close = np.log(close)
    out = pd.DataFrame(index=ohlcv.index)
    out["log_close"] = log_close
    out["ret"] = log_close.diff()
    out["ffd_close"] = ffd(log_close, d, ffd_threshold)
    out["yz_vol"] = yang_zhang(ohlcv, vol_window, periods_per_year)
    out["cc_vol"] = close_to_close(close, vol_window, periods_per_year)
    out["rsi"] = rsi(close, rsi_window)
    m = macd(close)
    out[["macd", "macd_signal", "macd_hist"]] = m
    out["macd_hist_norm"] = m["macd_hist"] / close
    bb = bollinger(close, bb_window)
    out["bb_width"] = bb["bb_width"]
    out["bb_pband"] = bb["bb_pband"]
    out["volume_z"] = volume_zscore(ohlcv["volume"], volume_window)
    out["ema_ratio"] = close / ema(close, 4 * vol_window) - 1
    return out
