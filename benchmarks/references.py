"""Straightforward reference implementations, as printed in the book, for correctness tests and as the
baseline of the speed benchmarks. Only the pandas API is modernised (``fillna(method="ffill")`` is
``ffill()`` in pandas 3); the logic, loops included, is the book's.

López de Prado, *Advances in Financial Machine Learning* (AFML), Wiley 2018.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def get_weights_ffd(d: float, thres: float) -> np.ndarray:
    """AFML snippet 5.3, ``getWeights_FFD``: weights oldest first, as a column vector."""
    w, k = [1.0], 1
    while True:
        w_ = -w[-1] / k * (d - k + 1)
        if abs(w_) < thres:
            break
        w.append(w_)
        k += 1
    return np.array(w[::-1]).reshape(-1, 1)


def frac_diff_ffd(series: pd.DataFrame, d: float, thres: float = 1e-5) -> pd.DataFrame:
    """AFML snippet 5.3, ``fracDiff_FFD``: a Python loop over observations, with its ``isfinite`` skip."""
    w = get_weights_ffd(d, thres)
    width = len(w) - 1
    df = {}
    for name in series.columns:
        series_f = series[[name]].ffill().dropna()
        df_ = {}
        for iloc1 in range(width, series_f.shape[0]):
            loc0, loc1 = series_f.index[iloc1 - width], series_f.index[iloc1]
            if not np.isfinite(series.loc[loc1, name]):
                continue  # exclude NAs
            df_[loc1] = np.dot(w.T, series_f.loc[loc0:loc1])[0, 0]
        df[name] = pd.Series(df_, dtype=float)
    return pd.concat(df, axis=1)
