"""Figures. Pure functions: tables in, a matplotlib or plotly figure out; :func:`save` writes it.

PNG (matplotlib) for papers, HTML (plotly) for interactive views, both under ``figures/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench import config

BUY_COLOR, SELL_COLOR, NEUTRAL = "#1a9850", "#d73027", "#4d4d4d"


def save(fig: Any, name: str, folder: Path | None = None) -> Path:
    """Save a matplotlib figure as ``<name>.png`` or a plotly figure as ``<name>.html`` under ``figures/``."""
    folder = Path(folder or config.paths().figures)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(fig, "write_html"):
        path = folder / f"{name}.html"
        fig.write_html(path, include_plotlyjs="directory")  # one plotly.min.js beside the figures, works offline
    else:
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _utc(ms: pd.Series | np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ms, dtype=np.int64), unit="ms", utc=True)


def activity(trades: pd.DataFrame, title: str = "Trader activity") -> plt.Figure:
    """Fills per hour of day (UTC), signed Up-equivalent size, and the outcome/side mix."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    hours = _utc(trades["t"]).hour
    axes[0].bar(range(24), np.bincount(hours, minlength=24), color=NEUTRAL)
    axes[0].set(xlabel="hour of day (UTC)", ylabel="fills", title="When the wallet trades")
    q = trades["up_equiv_qty"]
    lim = np.nanpercentile(np.abs(q), 99) if len(q) else 1
    axes[1].hist(q.clip(-lim, lim), bins=60, color=NEUTRAL)
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set(xlabel="Up-equivalent shares per fill (+ buys Up exposure)", ylabel="fills", title="Fill size")
    mix = trades.groupby(["outcome", "side"]).size().unstack(fill_value=0)
    mix.plot.bar(ax=axes[2], color=[BUY_COLOR, SELL_COLOR][: mix.shape[1]], rot=0)
    axes[2].set(xlabel="token", ylabel="fills", title="Outcome and side")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def inventory_pnl(bars: pd.DataFrame, title: str = "Inventory and P&L at each bar close") -> plt.Figure:
    """Net Up-equivalent inventory and cumulative P&L (realised, and realised + unrealised) per bar."""
    b = bars.sort_values("bar_end")
    ts = _utc(b["bar_end"])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(14, 6), sharex=True)
    ax1.fill_between(ts, b["inventory"], step="pre", color=NEUTRAL, alpha=0.6)
    ax1.axhline(0, color="k", lw=0.6)
    ax1.set(ylabel="Up-equiv. shares", title="Inventory at bar close (open markets)")
    ax2.plot(ts, b["realized_pnl_cum"], color=NEUTRAL, lw=1.2, label="realised")
    ax2.plot(ts, b["realized_pnl_cum"] + b["unrealized_pnl"], color=BUY_COLOR, lw=0.8, alpha=0.8,
             label="realised + unrealised (marked at the last mid)")
    ax2.set(ylabel="USDC", title="Cumulative P&L")
    ax2.legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def market_view(events: pd.DataFrame, trades: pd.DataFrame, slug: str) -> plt.Figure:
    """One market: Up bid/ask, the wallet's fills in Up-equivalent prices, BTC on a second axis."""
    ev = events[events["slug"] == slug]
    q = ev[ev["type"] == "price_change"]
    tr = trades[trades["slug"] == slug]
    fig, ax = plt.subplots(figsize=(12, 4.2))
    ts = _utc(q["t"])
    ax.step(ts, q["bid"], where="post", color=SELL_COLOR, lw=0.8, label="Up bid")
    ax.step(ts, q["ask"], where="post", color=BUY_COLOR, lw=0.8, label="Up ask")
    for sign, marker, color, label in ((1, "^", BUY_COLOR, "buys Up exposure"), (-1, "v", SELL_COLOR, "sells Up exposure")):
        s = tr[np.sign(tr["up_equiv_qty"]) == sign]
        ax.scatter(_utc(s["t"]), s["up_equiv_price"], marker=marker, s=10 + s["size"].abs() / 4, color=color,
                   edgecolor="k", lw=0.4, zorder=3, label=f"wallet {label}")
    ax.set(ylabel="Up price (probability)", ylim=(0, 1))
    bars = ev[ev["type"] == "bar"]
    if len(bars):
        ax2 = ax.twinx()
        ax2.plot(_utc(bars["t"]), bars["close"], color="#2166ac", lw=1, alpha=0.7, label="BTC/USD (1 min close)")
        ax2.set_ylabel("BTC/USD")
        start = ev["market_start"].iloc[0]
        first = bars["open"].iloc[0]
        ax2.axhline(first, color="#2166ac", lw=0.6, ls="--")
        ax.axvline(_utc([start])[0], color="k", lw=0.5)
    res = ev[ev["type"] == "resolution"]
    won = f" - resolved {res['outcome'].iloc[0]}" if len(res) else ""
    ax.set_title(f"{slug}{won}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def market_view_interactive(events: pd.DataFrame, trades: pd.DataFrame, slug: str) -> Any:
    """Plotly version of :func:`market_view` (zoomable; hover shows each fill)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ev = events[events["slug"] == slug]
    q = ev[ev["type"] == "price_change"]
    tr = trades[trades["slug"] == slug]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=_utc(q["t"]), y=q["bid"], line_shape="hv", name="Up bid", line_color=SELL_COLOR))
    fig.add_trace(go.Scatter(x=_utc(q["t"]), y=q["ask"], line_shape="hv", name="Up ask", line_color=BUY_COLOR))
    fig.add_trace(go.Scatter(x=_utc(tr["t"]), y=tr["up_equiv_price"], mode="markers", name="wallet fills",
                             marker=dict(symbol=np.where(tr["up_equiv_qty"] > 0, "triangle-up", "triangle-down"),
                                         color=np.where(tr["up_equiv_qty"] > 0, BUY_COLOR, SELL_COLOR), size=9),
                             text=[f"{o} {s} {z:g} @ {p:.2f}" for o, s, z, p in
                                   zip(tr["outcome"], tr["side"], tr["size"], tr["price"])]))
    bars = ev[ev["type"] == "bar"]
    if len(bars):
        fig.add_trace(go.Scatter(x=_utc(bars["t"]), y=bars["close"], name="BTC/USD", line_color="#2166ac"),
                      secondary_y=True)
    fig.update_layout(title=slug, height=420, template="plotly_white")
    fig.update_yaxes(title_text="Up price", range=[0, 1], secondary_y=False)
    return fig


def quarantine_reasons(quarantine: pd.DataFrame, title: str = "Quarantined input by reason") -> plt.Figure:
    """Horizontal bar chart of quarantine reasons (generic part of the message)."""
    fig, ax = plt.subplots(figsize=(10, 0.4 * max(3, quarantine["reason"].nunique()) + 1))
    if len(quarantine):
        counts = quarantine["reason"].str.replace(r"[-\d.e]+|'[^']*'|\"[^\"]*\"", "…", regex=True).value_counts()
        counts.sort_values().plot.barh(ax=ax, color=SELL_COLOR)
    else:
        ax.text(0.5, 0.5, "nothing quarantined", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="records or files", title=title)
    fig.tight_layout()
    return fig


def wallets_pnl(positions: pd.DataFrame, resolutions: pd.DataFrame,
                title: str = "Per-market P&L of the real wallets") -> plt.Figure:
    """Final total P&L per market and wallet, coloured by how the market's resolution is known."""
    last = positions.groupby(["wallet", "slug"]).last().reset_index().drop(columns="resolution_source")
    last = last.merge(resolutions[["wallet", "slug", "resolution_source"]], on=["wallet", "slug"], how="left")
    redeemed = positions.loc[positions["resolution_source"] == "redeem", ["wallet", "slug"]]
    is_redeemed = last.set_index(["wallet", "slug"]).index.isin(redeemed.set_index(["wallet", "slug"]).index)
    last.loc[is_redeemed, "resolution_source"] = "redeem"
    last = last.sort_values(["wallet", "total_pnl"])
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(last) + 1.5))
    colors = last["resolution_source"].map({"event": NEUTRAL, "redeem": BUY_COLOR, "last price": "#fdae61",
                                            "unknown": "#bababa"}).fillna("#bababa")
    labels = [f"{w[:8]}… {s}" for w, s in zip(last["wallet"], last["slug"])]
    ax.barh(labels, last["total_pnl"], color=colors)
    ax.axvline(0, color="k", lw=0.6)
    ax.set(xlabel="USDC (realised + unrealised)", title=title)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=k) for k, c in (("redeem", BUY_COLOR), ("last price ≥ 0.9", "#fdae61"),
                                                            ("unknown: marked at last fill", "#bababa"))],
              loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Notebook 02: fractional differencing and volatility
# ------------------------------------------------------------------------------------------------
def ffd_weights_figure(ds: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9), threshold: float = 1e-4,
                       n_show: int = 30) -> plt.Figure:
    """FFD weights by lag for several ``d`` (AFML fig. 5.1/5.2), with the number kept at ``threshold``."""
    from workbench.fracdiff import ffd_weights

    fig, ax = plt.subplots(figsize=(10, 3.6))
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
    fig, ax = plt.subplots(figsize=(9, 3.8))
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
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
    a1.plot(original.index, original.to_numpy(), color=NEUTRAL, lw=0.8)
    a1.set(ylabel="original", title=title)
    a2.plot(differenced.index, differenced.to_numpy(), color="#2166ac", lw=0.6)
    a2.set(ylabel=f"FFD, d = {d:.2f}")
    fig.tight_layout()
    return fig


def volatility_figure(yz: pd.Series, cc: pd.Series, title: str, truth: pd.Series | None = None) -> plt.Figure:
    """Yang-Zhang against close-to-close volatility (and the true volatility when it is known)."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
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
    fig, axes = plt.subplots(len(cols) + 1, 1, figsize=(11, 1.6 * (len(cols) + 1)), sharex=True)
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


# ------------------------------------------------------------------------------------------------
# Notebook 04: the trader twin
# ------------------------------------------------------------------------------------------------
def training_curves(history: pd.DataFrame, title: str = "Trader twin: training") -> plt.Figure:
    """Loss (train/validation), validation accuracy and macro-F1, and RTG error per epoch."""
    h = history
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
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
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4))
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


def rtg_steering(distribution: pd.DataFrame, realised: pd.DataFrame, spearman: float) -> plt.Figure:
    """Predicted action mix and the return the twin realises, against the target return-to-go."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4))
    distribution.plot.bar(stacked=True, ax=a1, rot=0, colormap="RdYlGn_r")
    a1.set(xlabel="target RTG (x100 % of notional per window)", ylabel="share of steps", title="Action mix vs target")
    a1.legend(fontsize=7, loc="upper right")
    a2.plot(realised["target_rtg"], realised["realised"], marker="o", color=NEUTRAL)
    a2.set(xlabel="target RTG", ylabel="realised return per window (same units)",
           title=f"Realised return vs target (Spearman {spearman:+.2f})")
    fig.tight_layout()
    return fig


def equity_curves(curves: dict[str, pd.Series], title: str) -> plt.Figure:
    """Cumulative P&L (USDC) of several agents over the same steps."""
    fig, ax = plt.subplots(figsize=(12, 4))
    for name, s in curves.items():
        ax.plot(s.index, s.to_numpy(), lw=1, label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel="USDC", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Notebook 05: RLAIF
# ------------------------------------------------------------------------------------------------
def reward_training(histories: dict[str, list[dict[str, float]]], title: str = "Reward models: training") -> plt.Figure:
    """Per-epoch curves of each reward model (loss and validation pair accuracy, or step AUC)."""
    fig, axes = plt.subplots(1, len(histories), figsize=(6.5 * len(histories), 3.6))
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
    fig, ax = plt.subplots(figsize=(5.5, 5))
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
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 0.5 * len(table) + 2))
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
    fig, ax = plt.subplots(figsize=(12, 3.4))
    ax.plot(table["time"], table["spearman"], color=NEUTRAL, lw=1)
    ax.axhline(threshold, color=SELL_COLOR, ls="--", lw=1, label=f"alert threshold {threshold}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel="Spearman(score, return)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
