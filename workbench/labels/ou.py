"""AFML ch. 13, optimal trading rules: Ornstein-Uhlenbeck paths and the Sharpe ratio of every
profit-taking / stop-loss pair on a grid (snippets 13.1-13.2, vectorised).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from workbench.labels.barriers import LabelingError

# ------------------------------------------------------------------------------------------------
# AFML ch. 13: optimal trading rules on Ornstein-Uhlenbeck paths
# ------------------------------------------------------------------------------------------------
OU_GRID = np.linspace(0.5, 10.0, 21)


def ou_paths(forecast: float, half_life: float, sigma: float = 1.0, max_hp: int = 100, n_paths: int = 10_000,
             seed: int = 0) -> np.ndarray:
    """Discrete Ornstein-Uhlenbeck paths, AFML snippet 13.2.

    ``P_t = (1 - phi) * forecast + phi * P_{t-1} + sigma * eps_t`` with ``phi = 2 ** (-1 / half_life)``,
    ``P_0 = 0``, ``eps_t ~ N(0, 1)``.

    Returns
    -------
    ndarray, shape (n_paths, max_hp)
        ``P_1 ... P_max_hp`` (price units; the P&L of a long position opened at ``P_0 = 0``).
    """
    if not (half_life > 0 and sigma > 0 and max_hp >= 1 and n_paths >= 1):
        raise LabelingError("half_life and sigma must be positive, max_hp and n_paths >= 1")
    phi = 2.0 ** (-1.0 / half_life)
    eps = np.random.default_rng(seed).standard_normal((max_hp, n_paths))
    out = np.empty((max_hp, n_paths))
    p = np.zeros(n_paths)
    for t in range(max_hp):  # max_hp vector steps over all paths (the recursion is sequential in time)
        p = (1 - phi) * forecast + phi * p + sigma * eps[t]
        out[t] = p
    return np.ascontiguousarray(out.T)


def ou_exit_pnl(paths: np.ndarray, pt_grid: Sequence[float] = OU_GRID, sl_grid: Sequence[float] = OU_GRID
                ) -> np.ndarray:
    """Exit P&L of every path under every (pt, sl) rule, vectorised across paths and cells.

    A path exits at the first step with ``P - P_0 >= pt`` or ``<= -sl``, else at its last step (the
    maximum holding period). First passages come from running maxima/minima: the first step with
    ``max_{s<=t} P_s >= pt`` is the number of steps whose running maximum is below ``pt``.

    Returns
    -------
    ndarray, shape (n_pt, n_sl, n_paths)
    """
    paths = np.asarray(paths, dtype=np.float64)
    n, T = paths.shape
    pt_g, sl_g = np.asarray(pt_grid, np.float64), np.asarray(sl_grid, np.float64)
    run_max = np.maximum.accumulate(paths, axis=1)
    run_min = np.minimum.accumulate(paths, axis=1)
    # (n, n_pt): first step reaching each level; T when never (searchsorted on the monotone running max)
    up = np.stack([(run_max < p).sum(axis=1) for p in pt_g], axis=1)
    dn = np.stack([(run_min > -s).sum(axis=1) for s in sl_g], axis=1)
    tau = np.minimum(np.minimum(up[:, :, None], dn[:, None, :]), T - 1)  # (n, n_pt, n_sl)
    pnl = np.take_along_axis(paths, tau.reshape(n, -1), axis=1).reshape(n, len(pt_g), len(sl_g))
    return np.moveaxis(pnl, 0, -1)


def ou_barrier_grid(forecast: float, half_life: float, sigma: float = 1.0, max_hp: int = 100, n_paths: int = 10_000,
                    pt_grid: Sequence[float] = OU_GRID, sl_grid: Sequence[float] = OU_GRID, seed: int = 0
                    ) -> pd.DataFrame:
    """Sharpe ratio of every (profit-taking, stop-loss) rule on one set of OU paths, AFML snippets 13.1-13.2.

    All rules are evaluated on the same ``n_paths`` simulated paths (:func:`ou_paths`), as in the book's
    heat-maps (figures 13.1-13.25): Sharpe = mean / std (ddof 0) of the exit P&L across paths.

    Parameters
    ----------
    forecast : E0, the level the price reverts to (price units, P_0 = 0).
    half_life : tau, in steps; phi = 2 ** (-1 / tau).
    sigma : shock standard deviation. max_hp : maximum holding period (steps).
    pt_grid, sl_grid : profit-taking and stop-loss distances (price units), 21 values from 0.5 to 10 by default.

    Returns
    -------
    DataFrame, shape (n_pt, n_sl)
        Sharpe ratios, index ``pt``, columns ``sl``. ``attrs`` hold the mean and std arrays.
    """
    pnl = ou_exit_pnl(ou_paths(forecast, half_life, sigma, max_hp, n_paths, seed), pt_grid, sl_grid)
    mean, std = pnl.mean(axis=-1), pnl.std(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sharpe = mean / std
    out = pd.DataFrame(sharpe, index=pd.Index(np.asarray(pt_grid, float), name="pt"),
                       columns=pd.Index(np.asarray(sl_grid, float), name="sl"))
    out.attrs.update(forecast=forecast, half_life=half_life, sigma=sigma, max_hp=max_hp, n_paths=n_paths,
                     mean=mean, std=std)
    return out


def ou_optimum(grid: pd.DataFrame) -> pd.Series:
    """The (pt, sl) cell with the highest Sharpe ratio of an :func:`ou_barrier_grid` result."""
    s = grid.stack()
    (pt, sl), best = s.idxmax(), s.max()
    return pd.Series({"pt": float(pt), "sl": float(sl), "sharpe": float(best)})
