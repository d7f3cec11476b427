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
from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR, fit_width

BARRIER_COLORS = {"upper": BUY_COLOR, "lower": SELL_COLOR, "vertical": "#fdae61"}


def _price_level(entry: np.ndarray, r: np.ndarray, side: np.ndarray, returns: str) -> np.ndarray:
    """Price at which the side-adjusted return from ``entry`` equals ``r``."""
    if returns == "simple":
        return entry * (1 + side * r)
    if returns == "log":
        return entry * np.exp(side * r)
    return entry + side * r


def default_event(labels: pd.DataFrame) -> int:
    """The event the zoomed panel shows first: the first one that touched a horizontal barrier (else 0)."""
    hit = np.flatnonzero(labels["barrier"].to_numpy() != "vertical") if len(labels) else np.zeros(0, dtype=int)
    return int(hit[0]) if len(hit) else 0


def label_summary(labels: pd.DataFrame) -> str:
    """One line: how many events end at each barrier, and the label counts (what the slider UI prints)."""
    counts = labels["barrier"].value_counts().reindex(["upper", "lower", "vertical"], fill_value=0)
    lab = labels["label"].value_counts().sort_index()
    return (f"{len(labels):,} events · first touch: profit taking {counts['upper']:,}, stop loss {counts['lower']:,}, "
            f"vertical {counts['vertical']:,} · labels " + ", ".join(f"{int(k):+d}: {v:,}" for k, v in lab.items()))


def barrier_figure(close: pd.Series, events: Any, pt: float, sl: float, vertical: Any, target: Any, *,
                   side: Any = None, min_ret: float = 0.0, returns: ReturnKind = "simple",
                   vertical_label: VerticalLabel = "zero", event: int | None = None, labels: pd.DataFrame | None = None,
                   title: str | None = None) -> plt.Figure:
    """Triple barriers you can see: one event zoomed in, the label counts, and every event on the whole path.

    Top left: the price around one event (``event``, 0-based; default :func:`default_event`) from its entry to
    a little after its vertical barrier, with the entry, the profit-taking (green) and stop-loss (red) levels,
    the vertical barrier (orange; dashed when the data ended first) and the first touch. Top right: how many
    events end at each barrier, and the labels. Bottom: the whole price path with every event's entry coloured
    by the barrier it touched first, and the zoomed window shaded. Sized for a notebook column (9.5 in).

    Parameters are those of :func:`workbench.labels.triple_barrier` (``pt``, ``sl`` are the multiples);
    ``labels`` may pass its result when already computed.
    """
    lab = labels if labels is not None else triple_barrier(close, events, (pt, sl), target, vertical=vertical,
                                                            side=side, min_ret=min_ret, returns=returns,
                                                            vertical_label=vertical_label)
    fig = plt.figure(figsize=fit_width(9.5, 7.0))
    gs = fig.add_gridspec(2, 3, height_ratios=(1.4, 1.0))
    ax, ax_n, ax_all = fig.add_subplot(gs[0, :2]), fig.add_subplot(gs[0, 2]), fig.add_subplot(gs[1, :])
    from matplotlib.lines import Line2D

    if len(lab):
        k = int(np.clip(default_event(lab) if event is None else event, 0, len(lab) - 1))
        t0, row = lab.index[k], lab.iloc[k]
        i0 = close.index.searchsorted(t0, side="right") - 1
        entry = float(close.iloc[i0])
        sd = float(row["side"]) if "side" in lab and np.isfinite(row.get("side", np.nan)) else 1.0
        up = _price_level(np.array([entry]), np.array([float(row["upper"])]), np.array([sd]), returns)[0]
        lo = _price_level(np.array([entry]), np.array([float(row["lower"])]), np.array([sd]), returns)[0]
        tv = row["t_vertical"]
        span = max(tv - t0, close.index[min(i0 + 1, len(close) - 1)] - close.index[i0])
        win = close[(close.index >= t0 - 0.3 * span) & (close.index <= tv + 0.3 * span)]
        ax.plot(win.index, win.to_numpy(), color=NEUTRAL, lw=1.1)
        levels = [v for v in (up, lo) if np.isfinite(v)]
        if levels:
            ax.axhspan(min(levels + [entry]), max(levels + [entry]), xmin=0, xmax=1, color="#f0f0f0", zorder=0)
        if np.isfinite(up):
            ax.hlines(up, t0, tv, color=BUY_COLOR, lw=2)
        if np.isfinite(lo):
            ax.hlines(lo, t0, tv, color=SELL_COLOR, lw=2)
        ax.vlines(tv, min(levels + [entry]), max(levels + [entry]), color=BARRIER_COLORS["vertical"], lw=2,
                  linestyles="--" if row["truncated"] else "-")
        ax.plot([t0], [entry], marker="o", color="k", ms=7, ls="")
        ax.plot([row["t1"]], [close.loc[row["t1"]]], marker="X", ms=12, color=BARRIER_COLORS[row["barrier"]],
                markeredgecolor="k", ls="", zorder=4)
        ax.legend(handles=[Line2D([], [], color=BUY_COLOR, lw=2, label=f"profit taking {pt:g}×target"),
                           Line2D([], [], color=SELL_COLOR, lw=2, label=f"stop loss {sl:g}×target"),
                           Line2D([], [], color=BARRIER_COLORS["vertical"], lw=2, label=f"vertical ({vertical} bars)"),
                           Line2D([], [], marker="o", color="k", ls="", label="entry"),
                           Line2D([], [], marker="X", color="k", ls="", label="first touch")],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
        name = {"upper": "profit taking", "lower": "stop loss", "vertical": "vertical barrier"}[row["barrier"]]
        ax.set(ylabel="price", title=f"Event {k + 1} of {len(lab):,}: {name} after "
                                     f"{(row['t1'] - t0).total_seconds() / 60:.0f} min, return {row['ret']:+.2%}")
        ax.tick_params(axis="x", labelsize=8)
        ax_all.axvspan(win.index[0], win.index[-1], color="#fdae61", alpha=0.35, lw=0)
    counts = lab["barrier"].value_counts().reindex(["upper", "lower", "vertical"], fill_value=0)
    ax_n.barh([2, 1, 0], counts.to_numpy(), color=[BARRIER_COLORS[b] for b in counts.index])
    ax_n.set_yticks([2, 1, 0], ["profit\ntaking", "stop\nloss", "vertical"], fontsize=8)
    labels_count = lab["label"].value_counts().sort_index()
    ax_n.set(title="First touch", xlabel="events\n\nlabels  " + "  ".join(f"{int(v):+d}: {c:,}"
                                                                       for v, c in labels_count.items()))
    ax_all.plot(close.index, close.to_numpy(), color=NEUTRAL, lw=0.6)
    if len(lab):
        i_all = close.index.searchsorted(lab.index, side="right") - 1
        ax_all.scatter(lab.index, close.to_numpy()[i_all], s=9, c=[BARRIER_COLORS[b] for b in lab["barrier"]], zorder=3)
    ax_all.set(ylabel="price", title=f"All {len(lab):,} events, coloured by first touch; shaded: the zoomed window")
    ax_all.tick_params(axis="x", labelsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def barrier_sliders(close: pd.Series, events: Any, target: Any, *, pt: float = 1.0, sl: float = 1.0,
                    vertical: int = 50, side: Any = None, returns: ReturnKind = "simple",
                    vertical_label: VerticalLabel = "zero", pt_max: float = 5.0, sl_max: float = 5.0,
                    vertical_max: int | None = None) -> Any:
    """ipywidgets sliders for pt, sl, the vertical barrier (in bars) and the zoomed event, driving
    :func:`barrier_figure`; a "next event" button steps through the events, and a line above the figure
    gives the label counts.

    Sliders use ``continuous_update=False`` (the figure is redrawn on release) and are wired with
    ``ipywidgets.interactive_output``. Returns a ``VBox`` for ``display()``; no frontend is needed to build
    it. A multiple of 0 disables that barrier.
    """
    import ipywidgets as widgets
    from IPython.display import display

    lab0 = triple_barrier(close, events, (pt, sl), target, vertical=vertical, side=side, returns=returns,
                          vertical_label=vertical_label)
    vmax = int(vertical_max or max(4 * vertical, 10))
    style = {"description_width": "initial"}
    layout = widgets.Layout(width="33%")
    w_pt = widgets.FloatSlider(value=pt, min=0.0, max=pt_max, step=0.05, description="profit taking ×target",
                               continuous_update=False, style=style, layout=layout)
    w_sl = widgets.FloatSlider(value=sl, min=0.0, max=sl_max, step=0.05, description="stop loss ×target",
                               continuous_update=False, style=style, layout=layout)
    w_v = widgets.IntSlider(value=vertical, min=1, max=vmax, step=1, description="vertical (bars)",
                            continuous_update=False, style=style, layout=layout)
    w_e = widgets.IntSlider(value=default_event(lab0) + 1, min=1, max=max(len(lab0), 1), step=1, description="event",
                            continuous_update=False, style=style, layout=widgets.Layout(width="66%"))
    w_next = widgets.Button(description="next event", tooltip="zoom in on the next event")
    summary = widgets.HTML()

    def on_next(_: Any) -> None:
        w_e.value = w_e.min if w_e.value >= w_e.max else w_e.value + 1

    w_next.on_click(on_next)

    def draw(pt: float, sl: float, vertical: int, event: int) -> None:
        lab = triple_barrier(close, events, (pt, sl), target, vertical=int(vertical), side=side, returns=returns,
                             vertical_label=vertical_label)
        summary.value = f"<b>{label_summary(lab)}</b>"
        fig = barrier_figure(close, events, pt, sl, int(vertical), target, side=side, returns=returns,
                             vertical_label=vertical_label, event=int(event) - 1, labels=lab)
        display(fig)
        plt.close(fig)

    out = widgets.interactive_output(draw, {"pt": w_pt, "sl": w_sl, "vertical": w_v, "event": w_e})
    return widgets.VBox([widgets.HBox([w_pt, w_sl, w_v]), widgets.HBox([w_e, w_next]), summary, out])


def ou_heatmap(grid: pd.DataFrame, title: str | None = None, ax: plt.Axes | None = None) -> plt.Figure:
    """Heat-map of the Sharpe ratio of each (profit-taking, stop-loss) rule (AFML figures 13.1-13.25).

    ``grid`` is :func:`workbench.labels.ou_barrier_grid` (index pt, columns sl); the best cell is
    marked with a star.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=fit_width(6.2, 5))
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


def ou_heatmap_panel(grids: Sequence[pd.DataFrame], ncols: int = 2) -> plt.Figure:
    """Several :func:`ou_heatmap` side by side (one per forecast / half-life pair)."""
    n = len(grids)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, min(ncols, max(n, 1)), figsize=fit_width(4.75 * min(ncols, max(n, 1)), 4.0 * nrows),
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
    fig = plt.figure(figsize=fit_width(9.5, 8.4 if pnl is not None else 4.4))
    gs = fig.add_gridspec(2 if pnl is not None else 1, 2)
    axes = [fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])] + ([fig.add_subplot(gs[1, :])] if pnl is not None
                                                                    else [])
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
               title=f"{label}\n(max holding {'∞' if not np.isfinite(hold) else f'{hold / 60:g} min'})")
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
