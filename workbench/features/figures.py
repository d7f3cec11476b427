"""Figures of notebook 02: fractional-differencing weights and d*, the differenced series, volatility,
indicators.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR, fit_width


# ------------------------------------------------------------------------------------------------
# Notebook 02: fractional differencing and volatility
# ------------------------------------------------------------------------------------------------
def ffd_weights_figure(ds: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9), threshold: float = 1e-4,
                       n_show: int = 30) -> plt.Figure:
    """FFD weights by lag for several ``d`` (AFML fig. 5.1/5.2), with the number kept at ``threshold``."""
    from workbench.features.fracdiff import ffd_weights

    fig, ax = plt.subplots(figsize=fit_width(10, 3.6))
    for d in ds:
        w = ffd_weights(d, threshold)
        ax.plot(np.arange(min(n_show, len(w))), w[:n_show], marker="o", ms=3, lw=1, label=f"d = {d:g} ({len(w)} weights)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="lag k", ylabel="w_k", title=f"FFD weights (threshold {threshold:g}; first {n_show} lags shown)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def min_d_figure(curve: pd.DataFrame, d_star: float, title: str) -> plt.Figure:
    """ADF statistic against d with the critical value, and the correlation with the original (AFML fig. 5.5)."""
    c = curve.sort_values("d")
    fig, ax = plt.subplots(figsize=fit_width(9, 3.8))
    ax.plot(c["d"], c["adf_stat"], marker="o", ms=3, color=SELL_COLOR, label="ADF statistic")
    ax.plot(c["d"], c["crit"], ls="--", color="k", lw=1, label="95% critical value")
    ax.set(xlabel="d", ylabel="ADF statistic", title=title)
    ax2 = ax.twinx()
    ax2.plot(c["d"], c["corr"], marker="s", ms=3, color=BUY_COLOR, label="corr(FFD, original)")
    ax2.set(ylabel="correlation", ylim=(min(-0.05, c["corr"].min() - 0.05), 1.05))
    if np.isfinite(d_star):
        ax.axvline(d_star, color="#2166ac", lw=1.2)
        ax.text(d_star, ax.get_ylim()[1], f" d* = {d_star:.2f}", color="#2166ac", va="top")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def ffd_series_figure(original: pd.Series, differenced: pd.Series, d: float, title: str) -> plt.Figure:
    """The original series and its fractional difference at ``d``, on aligned time axes."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=fit_width(11, 5), sharex=True)
    a1.plot(original.index, original.to_numpy(), color=NEUTRAL, lw=0.8)
    a1.set(ylabel="original", title=title)
    a2.plot(differenced.index, differenced.to_numpy(), color="#2166ac", lw=0.6)
    a2.set(ylabel=f"FFD, d = {d:.2f}")
    fig.tight_layout()
    return fig


def volatility_figure(yz: pd.Series, cc: pd.Series, title: str, truth: pd.Series | None = None) -> plt.Figure:
    """Yang-Zhang against close-to-close volatility (and the true volatility when it is known)."""
    fig, ax = plt.subplots(figsize=fit_width(11, 3.6))
    ax.plot(cc.index, cc.to_numpy(), color="#bababa", lw=0.8, label="close-to-close")
    ax.plot(yz.index, yz.to_numpy(), color=SELL_COLOR, lw=0.9, label="Yang-Zhang")
    if truth is not None:
        ax.plot(truth.index, truth.to_numpy(), color="k", lw=0.8, ls="--", label="true (simulator)")
    ax.set(ylabel="volatility per bar", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def indicators_figure(feat: pd.DataFrame, title: str, last: int = 600) -> plt.Figure:
    """Close with the indicators of the feature table over the last ``last`` bars."""
    f = feat.iloc[-last:]
    cols = [c for c in ("rsi", "macd_hist_norm", "bb_width", "volume_z", "ffd_close") if c in f]
    fig, axes = plt.subplots(len(cols) + 1, 1, figsize=fit_width(11, 1.6 * (len(cols) + 1)), sharex=True)
    axes[0].plot(f.index, np.exp(f["log_close"]), color=NEUTRAL, lw=0.8)
    axes[0].set(ylabel="close", title=title)
    for ax, c in zip(axes[1:], cols):
        ax.plot(f.index, f[c], lw=0.8)
        ax.set_ylabel(c, fontsize=8)
    if "rsi" in cols:
        ax_rsi = axes[1 + cols.index("rsi")]
        for lvl in (30, 70):
            ax_rsi.axhline(lvl, color="k", lw=0.4, ls=":")
    fig.tight_layout()
    return fig
