"""Evaluation metrics shared by notebooks 04-07: calibration, bootstrap intervals, classification."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


def brier(confidence: np.ndarray, success: np.ndarray) -> float:
    """Brier score ``mean((p - y)^2)`` of stated confidences ``p`` against outcomes ``y`` in {0, 1}."""
    p, y = np.asarray(confidence, float), np.asarray(success, float)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def reliability_table(confidence: np.ndarray, success: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins of confidence on [0, 1]: count, mean confidence, observed success rate."""
    p, y = np.asarray(confidence, float), np.asarray(success, float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = idx == b
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "count": int(sel.sum()),
                     "confidence": float(p[sel].mean()) if sel.any() else np.nan,
                     "success_rate": float(y[sel].mean()) if sel.any() else np.nan})
    return pd.DataFrame(rows)


def ece(confidence: np.ndarray, success: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: ``sum_b (n_b / n) |acc_b - conf_b|`` over equal-width bins
    (Guo et al., 2017, "On Calibration of Modern Neural Networks")."""
    t = reliability_table(confidence, success, n_bins)
    t = t[t["count"] > 0]
    n = t["count"].sum()
    return float((t["count"] / n * (t["success_rate"] - t["confidence"]).abs()).sum()) if n else float("nan")


def bootstrap_ci(values: np.ndarray, stat: Callable[[np.ndarray], float] = np.mean, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0, block: int = 1) -> tuple[float, float, float]:
    """Percentile bootstrap ``(estimate, low, high)``; ``block > 1`` resamples contiguous blocks (serial
    dependence, e.g. consecutive market outcomes)."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(x)
    b = max(1, min(block, n))
    stats = np.empty(n_boot)
    for i in range(n_boot):
        starts = rng.integers(0, n - b + 1, size=int(np.ceil(n / b)))
        idx = (starts[:, None] + np.arange(b)).ravel()[:n]
        stats[i] = stat(x[idx])
    a = (1 - level) / 2
    return float(stat(x)), float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired observations with a percentile interval."""
    return bootstrap_ci(np.asarray(a, float) - np.asarray(b, float), np.mean, n_boot, seed=seed)


def wilson_interval(hits: int, n: int, alpha: float = 0.05) -> list[float]:
    """Wilson score interval (level ``1 - alpha``) of a share of ``hits`` in ``n`` Bernoulli draws (NaNs if n = 0)."""
    from statsmodels.stats.proportion import proportion_confint

    return [float(x) for x in proportion_confint(hits, n, alpha=alpha, method="wilson")] if n else [np.nan, np.nan]


def detectable_difference(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided test at level ``alpha`` detects with probability ``power``, given
    the standard error ``se`` of the estimated difference: ``(z_{1-alpha/2} + z_power) x se`` (2.80 SE at 5 %
    and 80 %; the normal approximation behind every "smallest detectable effect" of the workbench)."""
    from scipy.stats import norm

    if not np.isfinite(se):
        return float("nan")
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def se_from_interval(lo: float, hi: float, level: float = 0.95) -> float:
    """The standard error a (normal, symmetric) ``level`` interval ``[lo, hi]`` implies: width / (2 z)."""
    from scipy.stats import norm

    return float((hi - lo) / (2 * norm.ppf((1 + level) / 2)))


def sharpe(returns: np.ndarray, periods_per_year: float | None = None) -> float:
    """Mean over standard deviation (sample), annualised by ``sqrt(periods_per_year)`` if given."""
    r = np.asarray(returns, float)
    r = r[np.isfinite(r)]
    if len(r) < 2 or r.std(ddof=1) == 0:
        return 0.0
    s = r.mean() / r.std(ddof=1)
    return float(s * np.sqrt(periods_per_year)) if periods_per_year else float(s)


def max_drawdown(path: np.ndarray) -> float:
    """Largest peak-to-trough fall of a cumulative P&L path (same units; >= 0), counting from 0."""
    x = np.r_[0.0, np.asarray(path, float)]
    return float((np.maximum.accumulate(x) - x).max())
