"""Figures and the slider UI for :mod:`workbench.labels`.

Pure functions: tables and parameters in, a matplotlib figure out (save with ``workbench.plots.save``).
:func:`barrier_sliders` wraps :func:`barrier_figure` in ipywidgets sliders; building it needs no live
frontend, and every figure can be produced and saved without widgets.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.labels.barriers import ReturnKind, VerticalLabel, triple_barrier
from workbench.labels.exits import ExitFit
from workbench.labels.ou import ou_optimum
from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR

BARRIER_COLORS = {"upper": BUY_COLOR, "lower": SELL_COLOR, "vertical": "#fdae61"}


def _price_level(entry: np.ndarray, r: np.ndarray, side: np.ndarray, returns: str) -> np.ndarray:
    """Price at which the side-adjusted return from ``entry`` equals ``r``."""
    if returns == "simple":
        return entry * (1 + side * r)
    if returns == "log":
        return entry * np.exp(side * r)
    return entry + side * r


def _show_idx(n: int, n_show: int) -> np.ndarray:
    """Evenly spaced positions of ``n_show`` events among ``n`` (the first and last included)."""
    if n == 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n - 1, min(n_show, n)).round().astype(int))


def barrier_figure(close: pd.Series, events: Any, pt: float, sl: float, vertical: Any, target: Any, *,
                   side: Any = None, min_ret: float = 0.0, returns: ReturnKind = "simple",
                   vertical_label: VerticalLabel = "zero", n_show: int = 4, title: str | None = None) -> plt.Figure:
    """Triple barriers drawn on the price path, the label distribution and the P&L of the barrier exits.

    Top: the price around ``n_show`` evenly spaced events with their profit-taking (green), stop-loss (red)
    and vertical (orange) barriers, from the entry to the vertical barrier, and the first touch marked.
    Bottom left: how many events end at each barrier and the label counts. Bottom right: cumulative
    side-adjusted return at the touch over all events (the P&L of entering every event and exiting at its
    first barrier, in return units).

    Parameters are those of :func:`workbench.labels.triple_barrier` (``pt``, ``sl`` are the multiples).
    """
    lab = triple_barrier(close, events, (pt, sl), target, vertical=vertical, side=side, min_ret=min_ret,
                         returns=returns, vertical_label=vertical_label)
    fig = plt.figure(figsize=(13, 7.5))
    gs = fig.add_gridspec(2, 2, height_ratios=(1.6, 1.0))
    ax = fig.add_subplot(gs[0, :])
    ax_lab = fig.add_subplot(gs[1, 0])
    ax_pnl = fig.add_subplot(gs[1, 1])
    show = lab.iloc[_show_idx(len(lab), n_show)]
    if len(show):
        lo_t, hi_t = show.index[0], show["t_vertical"].max()
        span = max(hi_t - lo_t, pd.Timedelta(0))
        window = close[(close.index >= lo_t - 0.05 * span) & (close.index <= hi_t + 0.05 * span)]
    else:
        window = close
    ax.plot(window.index, window.to_numpy(), color=NEUTRAL, lw=0.9, label="price")
    i0 = close.index.searchsorted(show.index, side="right") - 1
    entry = close.to_numpy()[i0]
    sd = show["side"].to_numpy(float) if "side" in show else np.ones(len(show))
    upper = _price_level(entry, show["upper"].to_numpy(float), sd, returns)
    lower = _price_level(entry, show["lower"].to_numpy(float), sd, returns)
    for k, (t0, row) in enumerate(show.iterrows()):
        tv = row["t_vertical"]
        kw = dict(lw=1.4, label=None)
        if np.isfinite(upper[k]):
            ax.hlines(upper[k], t0, tv, color=BUY_COLOR, **kw)
        if np.isfinite(lower[k]):
            ax.hlines(lower[k], t0, tv, color=SELL_COLOR, **kw)
        lims = [v for v in (upper[k], lower[k]) if np.isfinite(v)] or [entry[k]]
        ax.vlines(tv, min(lims + [entry[k]]), max(lims + [entry[k]]), color=BARRIER_COLORS["vertical"], lw=1.4,
                  linestyles="--" if row["truncated"] else "-")
        ax.plot([t0], [entry[k]], marker="o", color="k", ms=5)
        ax.plot([row["t1"]], [close.loc[row["t1"]]], marker="X", ms=10, color=BARRIER_COLORS[row["barrier"]],
                markeredgecolor="k", zorder=4)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color=NEUTRAL, label="price"),
                       Line2D([], [], color=BUY_COLOR, label="profit taking"),
                       Line2D([], [], color=SELL_COLOR, label="stop loss"),
                       Line2D([], [], color=BARRIER_COLORS["vertical"], label="vertical (dashed: truncated)"),
                       Line2D([], [], marker="o", color="k", ls="", label="entry"),
                       Line2D([], [], marker="X", color="k", ls="", label="first touch")], loc="upper left", fontsize=8)
    ax.set(ylabel="price", title=f"Barriers of {len(show)} of {len(lab)} events (pt = {pt:g}, sl = {sl:g}, "
                                   f"vertical = {vertical})")
    counts = lab["barrier"].value_counts().reindex(["upper", "lower", "vertical"], fill_value=0)
    labels = lab["label"].value_counts().sort_index()
    x = np.arange(len(counts))
    ax_lab.bar(x, counts.to_numpy(), color=[BARRIER_COLORS[b] for b in counts.index])
    ax_lab.set_xticks(x, ["profit taking", "stop loss", "vertical"])
    ax_lab.set(ylabel="events", title="First touch  |  labels " + ", ".join(f"{k:+d}: {v}" for k, v in labels.items()))
    pnl = lab["ret"].cumsum()
    ax_pnl.plot(lab.index, pnl.to_numpy(), color=BUY_COLOR if len(pnl) and pnl.iloc[-1] >= 0 else SELL_COLOR)
    ax_pnl.axhline(0, color="k", lw=0.6)
    hit = (lab["ret"] > 0).mean() if len(lab) else np.nan
    total = pnl.iloc[-1] if len(pnl) else 0.0
    ax_pnl.set(ylabel="cumulative return at the touch",
               title=f"Following the barriers: total {total:.3g}, hit rate {hit:.0%}")
    fig.autofmt_xdate()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def barrier_sliders(close: pd.Series, events: Any, target: Any, *, pt: float = 1.0, sl: float = 1.0,
                    vertical: int = 50, side: Any = None, returns: ReturnKind = "simple",
                    vertical_label: VerticalLabel = "zero", pt_max: float = 5.0, sl_max: float = 5.0,
                    vertical_max: int | None = None, n_show: int = 4) -> Any:
    """ipywidgets sliders for pt, sl and the vertical barrier (in bars) driving :func:`barrier_figure`.

    Sliders use ``continuous_update=False`` (the figure is redrawn on release) and are wired with
    ``ipywidgets.interactive_output``. Returns a ``VBox`` (sliders above the figure) for ``display()``.
    No frontend is needed to build it. A multiple of 0 disables that barrier.
    """
    import ipywidgets as widgets
    from IPython.display import display

    vmax = int(vertical_max or max(4 * vertical, 10))
    style = {"description_width": "initial"}
    w_pt = widgets.FloatSlider(value=pt, min=0.0, max=pt_max, step=0.05, description="profit taking ×target",
                               continuous_update=False, style=style)
    w_sl = widgets.FloatSlider(value=sl, min=0.0, max=sl_max, step=0.05, description="stop loss ×target",
                               continuous_update=False, style=style)
    w_v = widgets.IntSlider(value=vertical, min=1, max=vmax, step=1, description="vertical (bars)",
                            continuous_update=False, style=style)

    def draw(pt: float, sl: float, vertical: int) -> None:
        fig = barrier_figure(close, events, pt, sl, int(vertical), target, side=side, returns=returns,
                             vertical_label=vertical_label, n_show=n_show)
        display(fig)
        plt.close(fig)

    out = widgets.interactive_output(draw, {"pt": w_pt, "sl": w_sl, "vertical": w_v})
    return widgets.VBox([widgets.HBox([w_pt, w_sl, w_v]), out])


def ou_heatmap(grid: pd.DataFrame, title: str | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """Heat-map of the Sharpe ratio of each (profit-taking, stop-loss) rule (AFML figures 13.1-13.25).

    ``grid`` is :func:`workbench.labels.ou_barrier_grid` (index pt, columns sl); the best cell is
    marked with a star.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.2, 5))
    ax = ax or fig.add_subplot(1, 1, 1)
    pt, sl = grid.index.to_numpy(float), grid.columns.to_numpy(float)
    im = ax.pcolormesh(pt, sl, grid.to_numpy().T, shading="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax, label="Sharpe ratio")
    best = ou_optimum(grid)
    ax.plot(best["pt"], best["sl"], marker="*", ms=16, color="w", markeredgecolor="k")
    a = grid.attrs
    default = (f"forecast {a.get('forecast', '?')}, half-life {a.get('half_life', '?')}: best pt {best['pt']:.2f}, "
               f"sl {best['sl']:.2f}, SR {best['sharpe']:.2f}")
    ax.set(xlabel="profit taking", ylabel="stop loss", title=title or default)
    return fig


def ou_heatmap_panel(grids: Sequence[pd.DataFrame], ncols: int = 3) -> plt.Figure:
    """Several :func:`ou_heatmap` side by side (one per forecast / half-life pair)."""
    n = len(grids)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, min(ncols, max(n, 1)), figsize=(5.6 * min(ncols, max(n, 1)), 4.6 * nrows),
                             squeeze=False)
    for g, ax in zip(grids, axes.ravel()):
        ou_heatmap(g, ax=ax, title=f"E0 = {g.attrs.get('forecast')}, τ = {g.attrs.get('half_life')}: "
                                   f"pt* {ou_optimum(g)['pt']:.2f}, sl* {ou_optimum(g)['sl']:.2f}")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def exit_fit_figure(fit: ExitFit, truth: tuple[float, float] | None = None, pnl: pd.DataFrame | None = None
                    ) -> plt.Figure:
    """The exit-barrier fit: log-likelihood over (pt, sl) at the best holding time with the confidence
    region and the bootstrap argmaxes, the share of exits explained, and optionally the trader's realised
    P&L against the fitted rule's on the same entries (``pnl`` from :func:`workbench.labels.barrier_pnl`).
    """
    n = 3 if pnl is not None else 2
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.8))
    g = fit.grid[fit.grid["holding_s"] == fit.best["holding_s"]]
    for ax, col, label in ((axes[0], "loglik", "log-likelihood"), (axes[1], "explained", "share of exits explained")):
        piv = g.pivot(index="pt", columns="sl", values=col)
        im = ax.pcolormesh(piv.index, piv.columns, piv.to_numpy().T, shading="nearest", cmap="viridis")
        fig.colorbar(im, ax=ax, label=label)
        if col == "loglik":
            reg = fit.region[fit.region["holding_s"] == fit.best["holding_s"]]
            ax.scatter(reg["pt"], reg["sl"], s=8, color="w", label="confidence region")
            bc = fit.bootstrap.groupby(["pt", "sl"]).size()
            if len(bc):
                ax.scatter([p for p, _ in bc.index], [s for _, s in bc.index], s=10 + 200 * bc.to_numpy() / bc.sum(),
                           facecolor="none", edgecolor="#fdae61", label="bootstrap best")
        ax.plot(fit.best["pt"], fit.best["sl"], marker="*", ms=15, color="w", markeredgecolor="k", ls="", label="best")
        if truth is not None:
            ax.plot(*truth, marker="P", ms=12, color=SELL_COLOR, markeredgecolor="k", ls="", label="truth")
        hold = fit.best["holding_s"]
        ax.set(xlabel="take profit (per share)", ylabel="stop loss (per share)",
               title=f"{label} (max holding {'∞' if not np.isfinite(hold) else f'{hold / 60:g} min'})")
        ax.legend(loc="upper right", fontsize=7)
    if pnl is not None:
        ax = axes[2]
        p = pnl.sort_values("t")
        ts = pd.to_datetime(p["t"], unit="ms", utc=True)
        ax.plot(ts, p["trader_pnl"].cumsum(), color=NEUTRAL, label=f"trader: {p['trader_pnl'].sum():,.0f}")
        ax.plot(ts, p["rule_pnl"].cumsum(), color=BUY_COLOR, label=f"fitted barriers: {p['rule_pnl'].sum():,.0f}")
        ax.axhline(0, color="k", lw=0.6)
        ax.set(ylabel="USDC", title="Realised P&L on the same entries")
        ax.legend(loc="upper left", fontsize=8)
        fig.autofmt_xdate()
    fig.tight_layout()
    return fig
