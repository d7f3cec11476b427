"""Figures of notebook 04: training curves, confusion matrices, RTG steering, equity curves.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR, fit_width


# ------------------------------------------------------------------------------------------------
# Notebook 04: the trader twin
# ------------------------------------------------------------------------------------------------
def training_curves(history: pd.DataFrame, title: str = "Trader twin: training") -> plt.Figure:
    """Loss (train/validation), validation accuracy and macro-F1, and RTG error per epoch."""
    h = history
    fig, axes = plt.subplots(1, 3, figsize=fit_width(14, 3.6))
    axes[0].plot(h["epoch"], h["train_loss"], marker="o", ms=3, label="train")
    axes[0].plot(h["epoch"], h["val_loss"], marker="o", ms=3, label="validation")
    axes[0].set(xlabel="epoch", ylabel="1.0 CE + 0.1 MSE(RTG)", title="loss")
    axes[0].legend()
    axes[1].plot(h["epoch"], h["val_accuracy"], marker="o", ms=3, label="accuracy")
    axes[1].plot(h["epoch"], h["val_macro_f1"], marker="o", ms=3, label="macro-F1")
    axes[1].set(xlabel="epoch", title="validation actions")
    axes[1].legend()
    axes[2].plot(h["epoch"], h["val_rtg_mse"], marker="o", ms=3, color=SELL_COLOR)
    axes[2].set(xlabel="epoch", ylabel="MSE", title="validation RTG error")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: dict[str, np.ndarray], labels: tuple[str, ...]) -> plt.Figure:
    """Row-normalised confusion matrices side by side (rows: true class, columns: predicted)."""
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=fit_width(4.2 * n, 4))
    axes = np.atleast_1d(axes)
    for ax, (name, m) in zip(axes, matrices.items()):
        norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), [lab.replace("STRONG_", "S_") for lab in labels], rotation=45, fontsize=7)
        ax.set_yticks(range(len(labels)), [lab.replace("STRONG_", "S_") for lab in labels], fontsize=7)
        ax.set(title=name, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig


def equity_curves(curves: dict[str, pd.Series], title: str) -> plt.Figure:
    """Cumulative P&L (USDC) of several agents over the same steps."""
    fig, ax = plt.subplots(figsize=fit_width(12, 4))
    for name, s in curves.items():
        ax.plot(s.index, s.to_numpy(), lw=1, label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel="USDC", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def steering_figure(realised: pd.DataFrame, title: str = "Steering: realised return against the target") -> plt.Figure:
    """Realised return on notional per target with its market-bootstrap interval, and the share of steps traded.

    ``realised``: one row per target with ``target``, ``return``, ``ci_low``, ``ci_high``, ``trade_share``.
    """
    fig, ax = plt.subplots(figsize=fit_width(9.5, 4.0))
    r = realised.sort_values("target")
    ax.errorbar(r["target"], r["return"], yerr=[r["return"] - r["ci_low"], r["ci_high"] - r["return"]], fmt="o",
                color=NEUTRAL, ecolor="#bbbbbb", capsize=2, label="realised return (95% CI over markets)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="target return (window, scaled RTG)", ylabel="return on notional, test period", title=title)
    ax2 = ax.twinx()
    ax2.plot(r["target"], r["trade_share"], color=BUY_COLOR, lw=1.2, label="share of steps traded")
    ax2.set_ylabel("share of steps traded", color=BUY_COLOR)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
