"""Fractional differencing with a fixed-width window (FFD) and the minimum-d search.

López de Prado, *Advances in Financial Machine Learning* (AFML), ch. 5: a series differenced with a
fractional order ``0 < d < 1`` can be stationary yet keep most of its memory (correlation with the
original). The fixed-width window drops weights below a threshold, so every output uses the same
number of past observations.

Conventions
-----------
* Weights are returned in **lag order**: ``w[0] = 1`` multiplies ``x_t``, ``w[k]`` multiplies
  ``x_{t-k}``. (AFML snippet 5.3 returns them reversed, oldest first.)
* ``ffd(x)_t = sum_k w[k] x_{t-k}`` is defined only where the whole window ``x_{t-K+1..t}`` is finite.
  Leading NaNs simply delay the first output; a gap (interior NaN) makes the ``K`` outputs whose window
  covers it NaN. **Nothing is forward-filled** (AFML's snippet and the old mlfinlab forward-fill
  missing bars, which invents prices; mlfinlab also failed on a leading NaN). ``gaps="raise"`` refuses
  interior NaNs instead.
* Only past values enter an output: appending or changing data after t never changes outputs at or
  before t (tested).

Why hand-written: the maintained ``fracdiff`` package's PyPI release does not install on Python >= 3.10
and its stationarity search uses other ADF settings than the book; the FFD itself is one convolution.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence, overload

import numpy as np
import pandas as pd
from scipy.signal import oaconvolve

from workbench import config

#: Above this many multiply-adds per column, the convolution switches from direct to FFT (overlap-add).
_FFT_ABOVE = 2_000_000


def ffd_weights(d: float, threshold: float = 1e-5, max_width: int | None = None) -> np.ndarray:
    """FFD weights ``w_k = -w_{k-1} (d - k + 1) / k``, ``w_0 = 1``, kept while ``|w_k| >= threshold``.

    Parameters
    ----------
    d : float
        Differencing order, ``d >= 0``.
    threshold : float
        Smallest absolute weight kept (AFML snippet 5.3, ``thres``).
    max_width : int, optional
        Hard cap on the number of weights (protects against ``d`` close to 0 with a tiny threshold).

    Returns
    -------
    ndarray, shape (K,)
        Weights in lag order (``w[0] = 1``). ``d = 1`` gives ``[1, -1]``; ``d = 0`` gives ``[1]``.

    References
    ----------
    AFML section 5.4.2, snippet 5.3 (``getWeights_FFD``). ``ffd_weights(0.9, 1e-3)`` has 12 weights
    (the mlfinlab reference test).
    """
    if not d >= 0:
        raise ValueError(f"d must be >= 0, got {d}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    w = [1.0]
    k = 1
    while max_width is None or k < max_width:
        w_k = -w[-1] / k * (d - k + 1)  # the book's operation order: bit-identical weights
        if abs(w_k) < threshold:
            break
        w.append(w_k)
        k += 1
    return np.asarray(w)


def _ffd_columns(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """FFD of each column of ``x`` (n, c) with weights ``w`` (K,), NaN where the window is incomplete."""
    n, _ = x.shape
    k = len(w)
    finite = np.isfinite(x)
    # window validity: no non-finite value among the K observations ending at t, and t >= K - 1
    bad = np.cumsum(~finite, axis=0)
    bad_in_window = bad - np.vstack([np.zeros((k, x.shape[1]), dtype=bad.dtype), bad[:-k]])[:n]
    valid = (bad_in_window == 0) & (np.arange(n) >= k - 1)[:, None]
    # centre each column before convolving (improves FFT precision); FFD(x - c) = FFD(x) - c * sum(w)
    first = finite.argmax(axis=0)
    centre = np.where(finite.any(axis=0), x[first, np.arange(x.shape[1])] if n else 0.0, 0.0)
    filled = np.where(finite, x - centre, 0.0)
    if n * k > _FFT_ABOVE:
        y = oaconvolve(filled, w[:, None], mode="full", axes=0)[:n]
    else:
        y = np.empty_like(filled)
        for j in range(filled.shape[1]):
            y[:, j] = np.convolve(filled[:, j], w, mode="full")[:n]
    y = y + centre * w.sum()
    return np.where(valid, y, np.nan)


@overload
def ffd(x: pd.Series, d: float, threshold: float = ..., gaps: str = ...) -> pd.Series: ...
@overload
def ffd(x: pd.DataFrame, d: float, threshold: float = ..., gaps: str = ...) -> pd.DataFrame: ...
@overload
def ffd(x: np.ndarray, d: float, threshold: float = ..., gaps: str = ...) -> np.ndarray: ...


def ffd(x: Any, d: float, threshold: float = 1e-5, gaps: str = "propagate") -> Any:
    """Fractionally difference ``x`` along its time axis with a fixed-width window.

    Parameters
    ----------
    x : Series, DataFrame or ndarray of shape (n,) or (n, c)
        Observations in time order along axis 0 (each DataFrame column is a separate series).
    d : float
        Differencing order (``d = 1`` with one weight beyond 1 is exactly the first difference).
    threshold : float
        Weight threshold of :func:`ffd_weights`.
    gaps : {"propagate", "raise"}
        Interior NaNs make the outputs whose window covers them NaN ("propagate"), or raise.

    Returns
    -------
    Same type and shape as ``x``; the first ``K - 1`` valid positions (K = number of weights) are NaN.

    References
    ----------
    AFML section 5.5, snippet 5.3 (``fracDiff_FFD``), without its forward fill.
    """
    if gaps not in ("propagate", "raise"):
        raise ValueError(f"gaps must be 'propagate' or 'raise', got {gaps!r}")
    w = ffd_weights(d, threshold)
    arr = np.asarray(x, dtype=np.float64)
    one_d = arr.ndim == 1
    cols = arr[:, None] if one_d else arr
    if cols.ndim != 2:
        raise ValueError(f"x must be 1- or 2-dimensional, got shape {arr.shape}")
    if gaps == "raise":
        finite = np.isfinite(cols)
        first = finite.argmax(axis=0)
        last = len(cols) - 1 - finite[::-1].argmax(axis=0)
        for j in range(cols.shape[1]):
            if finite[:, j].any() and not finite[first[j]: last[j] + 1, j].all():
                raise ValueError(f"column {j}: interior NaN/inf in the series (gaps='raise')")
    out = _ffd_columns(cols, w)
    out = out[:, 0] if one_d else out
    if isinstance(x, pd.Series):
        return pd.Series(out, index=x.index, name=x.name)
    if isinstance(x, pd.DataFrame):
        return pd.DataFrame(out, index=x.index, columns=x.columns)
    return out


# ------------------------------------------------------------------------------------------------
# Minimum d
# ------------------------------------------------------------------------------------------------
@dataclass
class MinDResult:
    """Result of :func:`min_d`.

    Attributes
    ----------
    d_star : float or Series
        Smallest ``d`` (at ``resolution``) whose FFD passes the ADF test; a Series per column for a
        DataFrame input; NaN where no tested ``d`` passes.
    curve : DataFrame
        One row per evaluated ``d`` (grid and refinement points; a ``column`` level for DataFrames):
        ``adf_stat``, ``p_value``, ``crit`` (the critical value at ``alpha``), ``corr`` (correlation of the
        FFD series with the original), ``n_obs``, ``n_weights``, ``stationary``, ``stage`` (grid/refine).
    interval : DataFrame or None
        Block-bootstrap percentile interval of ``d_star`` (columns ``low``, ``high``, ``replicates``).
    settings : dict
        The ADF and search settings used.
    """

    d_star: float | pd.Series
    curve: pd.DataFrame
    interval: pd.DataFrame | None
    settings: dict[str, Any]


def adf_point(x: np.ndarray, d: float, threshold: float = 1e-4, maxlag: int = 1, regression: str = "c",
              autolag: str | None = None, alpha: float = 0.05) -> dict[str, float]:
    """ADF test of ``ffd(x, d)`` (statsmodels ``adfuller``) and its correlation with ``x``.

    Parameters
    ----------
    x : ndarray, shape (n,)
        One series (typically log prices).
    maxlag, regression, autolag
        Passed to ``statsmodels.tsa.stattools.adfuller``; the defaults are the book's
        (AFML snippet 5.4: ``maxlag=1, regression='c', autolag=None``).
    alpha
        Level of the critical value used for the decision (0.05: the 95% critical value).
    """
    from statsmodels.tsa.stattools import adfuller

    w = ffd_weights(d, threshold)
    y = _ffd_columns(np.asarray(x, dtype=np.float64)[:, None], w)[:, 0]
    ok = np.isfinite(y)
    n = int(ok.sum())
    if n < max(20, 3 * (maxlag + 2)):
        return {"d": d, "adf_stat": math.nan, "p_value": math.nan, "crit": math.nan, "corr": math.nan,
                "n_obs": n, "n_weights": len(w), "stationary": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # statsmodels' announced result-object change
        stat, p, _, nobs, crit, *_ = adfuller(y[ok], maxlag=maxlag, regression=regression, autolag=autolag)
    key = f"{int(round(100 * alpha))}%"
    if key not in crit:
        raise ValueError(f"alpha must be one of 0.01, 0.05, 0.10 (statsmodels' critical values), got {alpha}")
    xs = np.asarray(x, dtype=np.float64)[ok]
    corr = float(np.corrcoef(y[ok], xs)[0, 1]) if np.std(y[ok]) > 0 and np.std(xs) > 0 else math.nan
    return {"d": d, "adf_stat": float(stat), "p_value": float(p), "crit": float(crit[key]), "corr": corr,
            "n_obs": int(nobs), "n_weights": len(w), "stationary": bool(stat < crit[key])}


def _search_one(x: np.ndarray, grid: np.ndarray, resolution: float, **adf: Any) -> tuple[float, list[dict[str, Any]]]:
    """Grid, then bisection on the ``resolution`` lattice between the last failing and first passing
    grid points. Each ADF costs O(n); the search needs ``len(grid) + log2(step / resolution)`` of them."""
    rows = []
    for d in grid:
        rows.append({**adf_point(x, float(d), **adf), "stage": "grid"})
    passed = [r["stationary"] for r in rows]
    if not any(passed):
        return math.nan, rows
    j = passed.index(True)
    if j == 0:
        return float(grid[0]), rows
    # integer lattice between the bracket ends: lo fails, hi passes
    lo = int(round(grid[j - 1] / resolution))
    hi = int(round(grid[j] / resolution))
    cache = {hi: True, lo: False}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = adf_point(x, round(mid * resolution, 10), **adf)
        rows.append({**r, "stage": "refine"})
        cache[mid] = r["stationary"]
        if r["stationary"]:
            hi = mid
        else:
            lo = mid
    return round(hi * resolution, 10), rows


def min_d(x: pd.Series | pd.DataFrame | np.ndarray, grid: Sequence[float] | None = None, resolution: float = 0.01,
          threshold: float = 1e-4, maxlag: int = 1, regression: str = "c", autolag: str | None = None,
          alpha: float = 0.05, bootstrap: int = 0, block: int | None = None, seed: int = 0) -> MinDResult:
    """Smallest fractional order ``d`` that makes ``x`` stationary by the ADF test.

    Parameters
    ----------
    x : Series, DataFrame (one search per column) or ndarray (n,)
        The series to difference, in time order; pass **log prices** to follow the book.
    grid : sequence of float, optional
        Coarse grid of ``d`` (default ``0, 0.1, ..., 1``), evaluated in full for the curve.
    resolution : float
        Step of the refinement lattice: ``d*`` is returned at this resolution, and equals a brute-force
        scan of the lattice whenever the ADF decision is monotone in ``d`` between grid points.
    threshold : float
        FFD weight threshold.
    maxlag, regression, autolag, alpha
        ADF settings (statsmodels ``adfuller``); defaults are the book's (AFML snippet 5.4).
    bootstrap : int
        Number of moving-block bootstrap replicates for a percentile interval of ``d*`` (0: none).
        Replicates resample blocks of the first differences and re-integrate them.
    block : int, optional
        Block length for the bootstrap (default ``ceil(n ** (1/3))``).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    MinDResult
    """
    grid_arr = np.round(np.asarray(grid if grid is not None else np.linspace(0.0, 1.0, 11), dtype=float), 10)
    if (np.diff(grid_arr) <= 0).any():
        raise ValueError("grid must be increasing")
    adf = {"threshold": threshold, "maxlag": maxlag, "regression": regression, "autolag": autolag, "alpha": alpha}
    frame = x.to_frame() if isinstance(x, pd.Series) else (x if isinstance(x, pd.DataFrame) else pd.DataFrame(
        np.asarray(x, dtype=float).reshape(len(x), -1)))
    d_stars: dict[Any, float] = {}
    curves, intervals = [], []
    rng = np.random.default_rng(seed)
    for col in frame.columns:
        series = frame[col].to_numpy(dtype=np.float64)
        d_star, rows = _search_one(series, grid_arr, resolution, **adf)
        d_stars[col] = d_star
        curves.append(pd.DataFrame(rows).assign(column=col))
        if bootstrap:
            intervals.append(_bootstrap(series, grid_arr, resolution, bootstrap, block, rng, adf, col))
    curve = pd.concat(curves, ignore_index=True).sort_values(["column", "d"], kind="stable")
    curve = curve.drop_duplicates(["column", "d"]).reset_index(drop=True)
    single = not isinstance(x, pd.DataFrame)
    if single:
        curve = curve.drop(columns="column")
    interval = pd.concat(intervals, ignore_index=True) if intervals else None
    d_star_out: float | pd.Series = next(iter(d_stars.values())) if single else pd.Series(d_stars, name="d_star")
    return MinDResult(d_star_out, curve, interval, {**adf, "grid": grid_arr.tolist(), "resolution": resolution,
                                                    "bootstrap": bootstrap, "block": block, "seed": seed})


def _bootstrap(series: np.ndarray, grid: np.ndarray, resolution: float, reps: int, block: int | None,
               rng: np.random.Generator, adf: dict[str, Any], col: Any) -> pd.DataFrame:
    x = series[np.isfinite(series)]
    dx = np.diff(x)
    n = len(dx)
    b = block or int(math.ceil(n ** (1 / 3)))
    stars = []
    for _ in config.progress(range(reps), "d* bootstrap"):
        starts = rng.integers(0, n - b + 1, size=int(math.ceil(n / b)))
        idx = (starts[:, None] + np.arange(b)[None, :]).ravel()[:n]
        xb = np.concatenate([[x[0]], x[0] + np.cumsum(dx[idx])])
        stars.append(_search_one(xb, grid, resolution, **adf)[0])
    s = np.asarray(stars)
    return pd.DataFrame({"column": [col], "low": [np.nanpercentile(s, 5)], "high": [np.nanpercentile(s, 95)],
                         "median": [np.nanmedian(s)], "replicates": [reps], "block": [b],
                         "failed": [int(np.isnan(s).sum())]})


def summary_table(results: dict[str, MinDResult]) -> pd.DataFrame:
    """One row per named single-series result: d*, the ADF statistic, critical value and correlation with
    the original at d*, the bootstrap interval when computed, and the book's qualitative checks
    (``0 < d* < 1`` and correlation above 0.9)."""
    rows = []
    for name, r in results.items():
        if isinstance(r.d_star, pd.Series):
            raise ValueError(f"{name}: summary_table takes single-series results")
        at = r.curve[np.isclose(r.curve["d"], r.d_star)] if np.isfinite(r.d_star) else r.curve.iloc[:0]
        row = {"series": name, "d_star": r.d_star,
               "adf_at_d_star": at["adf_stat"].iloc[0] if len(at) else math.nan,
               "crit_95": at["crit"].iloc[0] if len(at) else math.nan,
               "corr_at_d_star": at["corr"].iloc[0] if len(at) else math.nan,
               "adf_at_d0": r.curve.loc[r.curve["d"] == 0, "adf_stat"].min(),
               "n_obs": int(r.curve["n_obs"].max())}
        if r.interval is not None:
            row.update(d_star_low=r.interval["low"].iloc[0], d_star_high=r.interval["high"].iloc[0])
        row["between_0_and_1"] = bool(0 < r.d_star < 1)
        row["corr_above_0.9"] = bool(row["corr_at_d_star"] > 0.9)
        rows.append(row)
    return pd.DataFrame(rows).set_index("series")
