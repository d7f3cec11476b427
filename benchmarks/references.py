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


def ou_loop_exit_pnl(paths: np.ndarray, pt_grid: np.ndarray, sl_grid: np.ndarray) -> np.ndarray:
    """AFML snippet 13.2's inner loops, in plain Python over given paths: the exit P&L of every path for
    every (profit-taking, stop-loss) rule, exiting at the first touch or at the last step.

    Returns an array of shape ``(len(pt_grid), len(sl_grid), n_paths)``.
    """
    out = np.empty((len(pt_grid), len(sl_grid), len(paths)))
    rows = paths.tolist()
    for i, pt in enumerate(np.asarray(pt_grid).tolist()):
        for j, sl in enumerate(np.asarray(sl_grid).tolist()):
            for k, path in enumerate(rows):
                for t, p in enumerate(path):
                    if p >= pt or p <= -sl or t == len(path) - 1:
                        out[i, j, k] = p
                        break
    return out
