"""Figures of notebook 01: the trader's activity, inventory and P&L, one market in detail, the quarantine.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR, fit_width, utc_times


def activity(trades: pd.DataFrame, title: str = "Trader activity") -> plt.Figure:
    """Fills per hour of day (UTC), signed Up-equivalent size, and the outcome/side mix."""
    fig, axes = plt.subplots(1, 3, figsize=fit_width(14, 3.6))
    hours = utc_times(trades["t"]).hour
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
    ts = utc_times(b["bar_end"])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=fit_width(14, 6), sharex=True)
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
    fig, ax = plt.subplots(figsize=fit_width(12, 4.2))
    ts = utc_times(q["t"])
    ax.step(ts, q["bid"], where="post", color=SELL_COLOR, lw=0.8, label="Up bid")
    ax.step(ts, q["ask"], where="post", color=BUY_COLOR, lw=0.8, label="Up ask")
    for sign, marker, color, label in ((1, "^", BUY_COLOR, "buys Up exposure"), (-1, "v", SELL_COLOR, "sells Up exposure")):
        s = tr[np.sign(tr["up_equiv_qty"]) == sign]
        ax.scatter(utc_times(s["t"]), s["up_equiv_price"], marker=marker, s=10 + s["size"].abs() / 4, color=color,
                   edgecolor="k", lw=0.4, zorder=3, label=f"wallet {label}")
    ax.set(ylabel="Up price (probability)", ylim=(0, 1))
    bars = ev[ev["type"] == "bar"]
    if len(bars):
        ax2 = ax.twinx()
        ax2.plot(utc_times(bars["t"]), bars["close"], color="#2166ac", lw=1, alpha=0.7, label="BTC/USD (1 min close)")
        ax2.set_ylabel("BTC/USD")
        start = ev["market_start"].iloc[0]
        first = bars["open"].iloc[0]
        ax2.axhline(first, color="#2166ac", lw=0.6, ls="--")
        ax.axvline(utc_times([start])[0], color="k", lw=0.5)
    res = ev[ev["type"] == "resolution"]
    won = f" - resolved {res['outcome'].iloc[0]}" if len(res) else ""
    ax.set_title(f"{slug}{won}")
    handles, names = ax.get_legend_handles_labels()
    if len(bars):  # the BTC line lives on the twin axis: one legend for both
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    ax.legend(handles, names, loc="upper left", fontsize=8)
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
    fig.add_trace(go.Scatter(x=utc_times(q["t"]), y=q["bid"], line_shape="hv", name="Up bid", line_color=SELL_COLOR))
    fig.add_trace(go.Scatter(x=utc_times(q["t"]), y=q["ask"], line_shape="hv", name="Up ask", line_color=BUY_COLOR))
    fig.add_trace(go.Scatter(x=utc_times(tr["t"]), y=tr["up_equiv_price"], mode="markers", name="wallet fills",
                             marker=dict(symbol=np.where(tr["up_equiv_qty"] > 0, "triangle-up", "triangle-down"),
                                         color=np.where(tr["up_equiv_qty"] > 0, BUY_COLOR, SELL_COLOR), size=9),
                             text=[f"{o} {s} {z:g} @ {p:.2f}" for o, s, z, p in
                                   zip(tr["outcome"], tr["side"], tr["size"], tr["price"])]))
    bars = ev[ev["type"] == "bar"]
    if len(bars):
        fig.add_trace(go.Scatter(x=utc_times(bars["t"]), y=bars["close"], name="BTC/USD", line_color="#2166ac"),
                      secondary_y=True)
    fig.update_layout(title=slug, height=420, template="plotly_white")
    fig.update_yaxes(title_text="Up price", range=[0, 1], secondary_y=False)
    return fig


def quarantine_reasons(quarantine: pd.DataFrame, title: str = "Quarantined input by reason") -> plt.Figure:
    """Horizontal bar chart of quarantine reasons (generic part of the message)."""
    fig, ax = plt.subplots(figsize=fit_width(10, 0.4 * max(3, quarantine["reason"].nunique()) + 1))
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
    fig, ax = plt.subplots(figsize=fit_width(10, 0.28 * len(last) + 1.5))
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


def leaderboard(board: pd.DataFrame, truth: pd.DataFrame | None = None, n: int = 40,
                title: str = "Wallet leaderboard: mean P&L per market, 95% bootstrap interval") -> plt.Figure:
    """The top ``n`` wallets of both rankings: the FDR-aware rank (left) and the naive rank by total P&L
    (right), each wallet's mean P&L per market with its interval; ``truth`` (simulated kinds, evaluation
    only) colours the points."""
    kinds = dict(zip(truth["wallet"], truth["kind"])) if truth is not None else {}
    palette = {"skilled": BUY_COLOR, "latency_arb": "#2a9d8f", "copy": "#e9c46a", "favourite": "#8d99ae",
               "noise": SELL_COLOR}
    fig, axes = plt.subplots(1, 2, figsize=fit_width(14, 5), sharey=True)
    for ax, col, name in ((axes[0], "rank", "FDR-aware rank (discoveries first, by lower bound)"),
                          (axes[1], "naive_rank", "naive rank (total P&L)")):
        top = board.nsmallest(n, col)
        x = np.arange(len(top))
        colors = [palette.get(kinds.get(w, ""), NEUTRAL) for w in top["wallet"]]
        ax.errorbar(x, top["pnl_per_market"], yerr=[top["pnl_per_market"] - top["pnl_per_market_lo"],
                                                     top["pnl_per_market_hi"] - top["pnl_per_market"]],
                    fmt="none", ecolor="0.6", lw=1)
        ax.scatter(x, top["pnl_per_market"], c=colors, s=22, zorder=3,
                   edgecolors=["k" if d else "none" for d in top["discovery"]])
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel=f"{col.replace('_', ' ')} (black edge: FDR discovery)", title=name)
    axes[0].set_ylabel("mean P&L per market traded ($)")
    if kinds:
        for k, c in palette.items():
            axes[1].scatter([], [], c=c, label=k)
        axes[1].legend(title="simulated kind (truth)", fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
