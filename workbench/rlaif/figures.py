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
    """Expected value and realised return per share of the candidate each scorer picks, with 95% intervals
    (``table`` from :func:`workbench.rlaif.yardsticks.judge_pickers`)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=fit_width(9.5, 0.45 * len(table) + 2), sharey=True)
    names = list(table.index)
    y = np.arange(len(names))
    for ax, col, ci, label in ((a1, "mean_ev", "ev_ci", "expected value per share (truth)"),
                               (a2, "mean_return", "return_ci", "realised return per share")):
        m = table[col].astype(float).to_numpy()
        lo = np.array([c[0] for c in table[ci]])
        hi = np.array([c[1] for c in table[ci]])
        ax.errorbar(m, y, xerr=[m - lo, hi - m], fmt="o", color=NEUTRAL, ecolor="#bbbbbb", capsize=2)
        ax.axvline(0, color="k", lw=0.6)
        ax.set(xlabel=label)
    a1.set_yticks(y, names, fontsize=8)
    a1.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def monitor_figure(table: pd.DataFrame, retrain: float = 0.3, fine: float = 0.5,
                   title: str = "Reward model vs outcomes within decision points, rolling") -> plt.Figure:
    """The rolling within-point correlation with the seed's two thresholds."""
    fig, ax = plt.subplots(figsize=fit_width(12, 3.4))
    ax.plot(table["time"], table["spearman"], color=NEUTRAL, lw=1)
    ax.axhline(fine, color=BUY_COLOR, ls="--", lw=1, label=f"fine above {fine}")
    ax.axhline(retrain, color=SELL_COLOR, ls="--", lw=1, label=f"retrain below {retrain}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel="mean within-point Spearman", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def frontier_figure(table: pd.DataFrame, title: str = "Return against drawdown over the weight on the return model"
                    ) -> plt.Figure:
    """The picks' mean realised return against mean drawdown per share for each weight, with 95 % intervals
    (``table`` from :func:`workbench.rlaif.yardsticks.objective_frontier`)."""
    fig, ax = plt.subplots(figsize=fit_width(6.5, 4))
    x, y = table["drawdown"].to_numpy(), table["return"].to_numpy()
    ax.errorbar(x, y, xerr=[x - table["drawdown_lo"], table["drawdown_hi"] - x],
                yerr=[y - table["return_lo"], table["return_hi"] - y], fmt="o-", color=NEUTRAL, ecolor="#bbbbbb",
                capsize=2)
    for xi, yi, w in zip(x, y, table["weight_on_return"]):
        ax.annotate(f"w={w:.2f}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="mean max drawdown per share of the pick", ylabel="mean realised return per share", title=title)
    fig.tight_layout()
    return fig


def replay_figure(daily: pd.DataFrame, shift_day: int, title: str = "Online learning against weekly retraining"
                  ) -> plt.Figure:
    """Each learner's accuracy on each day's pairs (before learning from them), with the regime change and the
    weekly retrainings marked (``daily`` from :func:`workbench.rlaif.replay.replay`)."""
    fig, ax = plt.subplots(figsize=fit_width(7, 3.5))
    ax.plot(daily["day"], daily["online_acc"], "o-", ms=3, label="online (daily small steps)")
    ax.plot(daily["day"], daily["weekly_acc"], "s-", ms=3, label="retrained from scratch weekly")
    for d in daily.loc[daily["weekly_retrained"].astype(bool), "day"]:
        ax.axvline(d + 0.5, color="#bbbbbb", lw=0.8)
    ax.axvline(shift_day - 0.5, color="C3", ls="--", lw=1, label="regime change")
    ax.axhline(0.5, color="k", lw=0.5)
    ax.set(xlabel="day of the replay", ylabel="pair accuracy that day", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
