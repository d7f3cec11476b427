"""Figures of notebook 05: reward-model training, reliability, best-of-n pickers, monitoring.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR, fit_width


# ------------------------------------------------------------------------------------------------
# Notebook 05: RLAIF
# ------------------------------------------------------------------------------------------------
def reward_training(histories: dict[str, list[dict[str, float]]], title: str = "Reward models: training") -> plt.Figure:
    """Per-epoch curves of each reward model (loss and validation pair accuracy, or step AUC)."""
    fig, axes = plt.subplots(1, len(histories), figsize=fit_width(6.5 * len(histories), 3.6))
    for ax, (name, hist) in zip(np.atleast_1d(axes), histories.items()):
        h = pd.DataFrame(hist)
        for col in [c for c in h.columns if c not in ("epoch", "seconds")]:
            ax.plot(h["epoch"], h[col], marker="o", ms=3, label=col)
        ax.set(xlabel="epoch", title=name)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reliability_diagram(tables: dict[str, pd.DataFrame], title: str = "Stated confidence vs realised success"
                        ) -> plt.Figure:
    """Reliability curves (mean confidence vs success rate per bin) with the diagonal."""
    fig, ax = plt.subplots(figsize=fit_width(5.5, 5))
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="perfect calibration")
    for name, t in tables.items():
        t = t[t["count"] > 0]
        ax.plot(t["confidence"], t["success_rate"], marker="o", ms=4, label=name)
    ax.set(xlabel="stated confidence", ylabel="share of trades that made money", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pickers(table: pd.DataFrame, title: str = "Best-of-n by each scorer on the test period") -> plt.Figure:
    """True-step share and mean return of the candidate each scorer picks."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=fit_width(13, 0.5 * len(table) + 2))
    names = list(table.index)
    a1.barh(names, table["true_step_share"].astype(float), color=BUY_COLOR)
    a1.set(xlabel="share of true steps", xlim=(0, 1))
    a2.barh(names, table["mean_return"].astype(float), color=NEUTRAL)
    a2.axvline(0, color="k", lw=0.6)
    a2.set(xlabel="mean return per share (Up-price units)")
    a2.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def monitor_figure(table: pd.DataFrame, threshold: float, title: str = "Reward model vs outcomes, rolling") -> plt.Figure:
    fig, ax = plt.subplots(figsize=fit_width(12, 3.4))
    ax.plot(table["time"], table["spearman"], color=NEUTRAL, lw=1)
    ax.axhline(threshold, color=SELL_COLOR, ls="--", lw=1, label=f"alert threshold {threshold}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel="Spearman(score, return)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
