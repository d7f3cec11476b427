"""Volatility estimators: Yang-Zhang (2000) from OHLC bars and close-to-close, causal rolling windows, and
their scores against a known volatility.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


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
