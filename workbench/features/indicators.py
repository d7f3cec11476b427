"""Causal price features: Yang-Zhang volatility, technical indicators (via ``ta``), the feature table.

Every function here is causal: its value at bar t uses bars up to and including t only (tested by
property tests that change or append data after t). Indicators come from the ``ta`` library with
``fillna=False`` (its ``fillna=True`` path back-fills, a look-ahead) and from pandas rolling/EWM windows,
which are trailing; nothing is centred or back-filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.features.fracdiff import ffd
from workbench.features.volatility import close_to_close, yang_zhang


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
