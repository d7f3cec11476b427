"""Replay P&L with intervals over markets, and a steering test with the power to be believed.

A replay (:func:`workbench.twin.backtest.replay`) gives each agent an equity path over the test period. Its P&L
is split by market (the independent unit: one 15-minute market's path is shared by all its steps), and every
return is a fraction of the notional with a percentile interval from a bootstrap over markets. Steering is
tested on many targets at once: the Spearman correlation between the target return and the realised return,
with its interval from the same market bootstrap (resampling markets, recomputing every target's return).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def market_pnl(equity: np.ndarray, slugs: np.ndarray) -> pd.DataFrame:
    """P&L per market ``(n_markets, n_agents)`` from equity paths ``(n_steps, n_agents)`` (USDC)."""
    eq = np.asarray(equity, dtype=np.float64)
    eq = eq[:, None] if eq.ndim == 1 else eq
    step = np.diff(np.vstack([np.zeros((1, eq.shape[1])), eq]), axis=0)
    return pd.DataFrame(step).groupby(np.asarray(slugs), sort=False).sum()


def _draws(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def returns_with_ci(pnl: pd.DataFrame, notional: float, names: Sequence[str], *, n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> pd.DataFrame:
    """Total return on notional of each agent (column of ``pnl``) with a bootstrap interval over markets."""
    x = pnl.to_numpy() / notional  # (markets, agents)
    idx = _draws(len(x), n_boot, seed)
    boot = x[idx].sum(axis=1)  # (n_boot, agents)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return pd.DataFrame({"return": x.sum(axis=0), "ci_low": lo, "ci_high": hi,
                         "per_market_mean": x.mean(axis=0), "markets": len(x)}, index=list(names))


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two sequences."""
    return float(spearmanr(x, y).statistic)


def steering(pnl: pd.DataFrame, targets: Sequence[float], notional: float, *, n_boot: int = 1000, seed: int = 0,
             level: float = 0.95) -> dict[str, Any]:
    """Spearman correlation of target and realised return over the agents of one replay (one per target), with
    a bootstrap interval over markets, and the probability that it is this high with no steering at all (a
    permutation of the targets)."""
    x = pnl.to_numpy() / notional  # (markets, targets)
    t = np.asarray(targets, dtype=np.float64)
    realised = x.sum(axis=0)
    rho = float(spearmanr(t, realised).statistic)
    idx = _draws(len(x), n_boot, seed)
    boot = np.array([spearmanr(t, x[i].sum(axis=0)).statistic for i in idx])
    rng = np.random.default_rng(seed + 1)
    null = np.array([spearmanr(rng.permutation(t), realised).statistic for _ in range(2000)])
    lo, hi = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"n_targets": int(len(t)), "spearman": rho, "spearman_ci": [float(lo), float(hi)],
            "p_no_steering": float((null >= rho).mean()), "realised": realised.tolist(), "targets": t.tolist()}
