"""The barrier levels that best explain the trader's exits: a profit-taking / stop-loss / holding-time rule
fitted by maximum likelihood to the exit decisions, with bootstrap intervals, and its P&L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from workbench.labels.barriers import _EPS, LabelingError
from workbench.labels.trades import _Segments, market_paths

# ------------------------------------------------------------------------------------------------
# Barrier levels that explain the trader's exits
# ------------------------------------------------------------------------------------------------
DEFAULT_PT_GRID = np.round(np.arange(0.01, 0.4001, 0.01), 4)  # Up-equivalent price units per share
DEFAULT_SL_GRID = np.round(np.arange(0.01, 0.4001, 0.01), 4)
DEFAULT_HOLDING_GRID = (120.0, 240.0, 360.0, 480.0, 600.0, math.inf)  # seconds; inf = until settlement


@dataclass
class ExitFit:
    """Result of :func:`fit_exit_barriers`.

    Attributes
    ----------
    grid : DataFrame, one row per (pt, sl, holding_s)
        ``loglik`` of the two-rate exit-hazard model, ``delta_loglik`` (best minus this), ``pseudo_r2``
        (McFadden, against one constant exit rate), ``rate_triggered`` / ``rate_base`` (exit probability per
        decision step with a barrier reached / not), ``explained`` (share of round trips whose exit the
        deterministic barrier rule predicts within the tolerance), ``n_trips``.
    best : Series
        The row with the highest log-likelihood.
    best_explained : Series
        The row with the highest ``explained`` share.
    region : DataFrame
        Rows inside the likelihood-ratio confidence region (``2 * delta_loglik <= chi2(level, 3)``).
    bootstrap : DataFrame, shape (n_boot, 3)
        Best (pt, sl, holding_s) on resamples of the round trips.
    intervals : DataFrame
        Per parameter: the best value, the region's range, and bootstrap percentiles.
    steps : DataFrame
        The per-step table the fit used: trip, k, time, mid, entry, pnl (per share), exit.
    """

    grid: pd.DataFrame
    best: pd.Series
    best_explained: pd.Series
    region: pd.DataFrame
    bootstrap: pd.DataFrame
    intervals: pd.DataFrame
    steps: pd.DataFrame

    def summary(self) -> str:
        b = self.best
        hold = "until settlement" if not np.isfinite(b["holding_s"]) else f"{b['holding_s'] / 60:g} min"
        return (f"best: take profit +{b['pt']:.2f}, stop loss -{b['sl']:.2f}, max holding {hold}; "
                f"log-lik {b['loglik']:.1f}, pseudo-R2 {b['pseudo_r2']:.3f}, exits explained {b['explained']:.0%} "
                f"({int(b['n_trips'])} round trips); exit rate per step {b['rate_triggered']:.2f} when a "
                f"barrier is reached vs {b['rate_base']:.2f} otherwise")


def _ms(step: Any) -> int:
    ms = int(pd.Timedelta(step).value // 1_000_000)
    if ms <= 0:
        raise LabelingError(f"step must be a positive duration, got {step!r}")
    return ms


def exit_steps(events: pd.DataFrame, trips: pd.DataFrame, positions: pd.DataFrame | None = None, *,
               step: Any = "60s", entry: Literal["average", "first"] = "average") -> pd.DataFrame:
    """Decision steps of each closed round trip with its unrealised P&L per share, for the exit fit.

    Step ``k = 1, 2, ...`` of a trip is at ``t + k * step``. A trip closed by a trade is at risk up to the
    step nearest its exit, ``K = max(1, round((exit_t - t) / step))``, and exits there (``exit = 1``); a
    trip closed by settlement is at risk at every step strictly before it and never exits by trade.
    Information at a step: the Up mid at or before ``min(t + k * step, exit_t)`` (nothing after the exit)
    and the entry price: the trader's running average cost from ``positions`` strictly before that time
    (``entry='average'``, what a P&L-per-share rule sees) or the trip's first price (``'first'``).

    Returns
    -------
    DataFrame: ``trip`` (row label in ``trips``), ``k``, ``time`` (ms), ``holding_s``, ``mid``, ``entry``,
    ``pnl`` (side * (mid - entry), Up-equivalent price units per share), ``exit`` (0/1).
    """
    step_ms = _ms(step)
    tr = trips[trips["closed"] & trips["exit_reason"].isin(["trade", "settlement"])]
    t0 = tr["t"].to_numpy(dtype=np.int64)
    t_exit = tr["exit_t"].to_numpy(dtype=np.int64)
    by_trade = (tr["exit_reason"] == "trade").to_numpy()
    k_exit = np.where(by_trade, np.maximum(1, np.rint((t_exit - t0) / step_ms)).astype(np.int64),
                      np.maximum(0, (t_exit - t0 - 1) // step_ms))
    rows = np.repeat(np.arange(len(tr)), k_exit)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(k_exit) - k_exit, k_exit) + 1
    time = np.minimum(t0[rows] + k * step_ms, t_exit[rows])
    paths = market_paths(events)
    paths = paths[~paths["settlement"]]
    seg = _Segments(paths["slug"].to_numpy(dtype=object), paths["t"].to_numpy(dtype=np.int64))
    jm = seg.asof(seg.code(tr["slug"].to_numpy(dtype=object)[rows]), time)
    if len(rows) and (jm < 0).all():
        raise LabelingError("no price_change quotes for these round trips' markets: the unrealised P&L per share "
                            "needs the Up-equivalent mid (Data-API exports carry no quotes)")
    mid = np.where(jm >= 0, paths["mid"].to_numpy(np.float64)[np.maximum(jm, 0)] if len(paths) else np.nan, np.nan)
    if entry == "average":
        if positions is None:
            raise LabelingError("entry='average' needs the positions table")
        pk = (positions["wallet"].astype("str") + "|" + positions["slug"].astype("str")).to_numpy(dtype=object)
        order = np.lexsort((positions["t"].to_numpy(np.int64), pd.factorize(pk)[0]))
        pseg = _Segments(pk[order], positions["t"].to_numpy(np.int64)[order])
        tk = (tr["wallet"].astype("str") + "|" + tr["slug"].astype("str")).to_numpy(dtype=object)[rows]
        jp = pseg.asof(pseg.code(tk), time, inclusive=False)
        avg = positions["entry_price_up_equiv"].to_numpy(np.float64)[order]
        ent = np.where(jp >= 0, avg[np.maximum(jp, 0)] if len(avg) else np.nan, np.nan)
    elif entry == "first":
        ent = tr["entry_price"].to_numpy(np.float64)[rows]
    else:
        raise LabelingError(f"entry must be 'average' or 'first', got {entry!r}")
    side = tr["side"].to_numpy(np.float64)[rows]
    last = np.r_[rows[1:] != rows[:-1], True] if len(rows) else np.zeros(0, bool)
    return pd.DataFrame({"trip": tr.index.to_numpy()[rows], "k": k, "time": time, "holding_s": k * step_ms / 1000.0,
                         "mid": mid, "entry": ent, "pnl": side * (mid - ent),
                         "exit": (last & by_trade[rows]).astype(np.int64)})


def _bernoulli_ll(y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Maximised Bernoulli log-likelihood of y successes in n trials (0 log 0 = 0), elementwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, y / np.where(n > 0, n, 1), 0.0)
        a = np.where(y > 0, y * np.log(np.where(p > 0, p, 1.0)), 0.0)
        b = np.where(n - y > 0, (n - y) * np.log(np.where(p < 1, 1 - p, 1.0)), 0.0)
    return a + b


def _orthant_bins(pnl: np.ndarray, hold: np.ndarray, pt_g: np.ndarray, sl_g: np.ndarray, h_g: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step, the number of grid levels it triggers: ``pnl >= pt_i`` for ``i < ia``, ``pnl <= -sl_j`` for
    ``j < jb``, ``holding >= H_h`` for ``h < hc`` (grids ascending). A step leaves cell (i, j, h) untriggered
    iff ``i >= ia and j >= jb and h >= hc``: an orthant, so counts over the whole grid are cumulative sums
    of a histogram of (ia, jb, hc). NaN P&L (no quote yet) triggers no price barrier."""
    nan = np.isnan(pnl)
    p = np.where(nan, 0.0, pnl)
    ia = np.where(nan, 0, np.searchsorted(pt_g, p + _EPS, side="right"))
    jb = np.where(nan, 0, np.searchsorted(sl_g, -p + _EPS, side="right"))
    hc = np.searchsorted(h_g, hold + 1e-9, side="right")
    return ia, jb, hc


def fit_exit_barriers(events: pd.DataFrame, trips: pd.DataFrame, positions: pd.DataFrame | None = None, *,
                      pt_grid: Sequence[float] = DEFAULT_PT_GRID, sl_grid: Sequence[float] = DEFAULT_SL_GRID,
                      holding_grid: Sequence[float] = DEFAULT_HOLDING_GRID, step: Any = "60s",
                      tolerance_steps: int = 1, entry: Literal["average", "first"] = "average",
                      n_boot: int = 200, level: float = 0.95, seed: int = 0) -> ExitFit:
    """Profit-taking, stop-loss and max-holding levels that best explain when the trader exited.

    Model: at each decision step of an open round trip (:func:`exit_steps`), the trader closes with
    probability ``rate_triggered`` if a barrier is reached (``pnl >= pt``, ``pnl <= -sl`` or holding
    ``>= holding_s``) and ``rate_base`` otherwise. For every cell of the grid both rates have closed-form
    maximum-likelihood estimates; the counts they need, over the whole grid, are cumulative sums of one
    histogram (see :func:`_orthant_bins`), so the grid costs no loop over cells. Exits are probabilistic,
    which a deterministic rule cannot score; the deterministic view is reported too: ``explained`` is the
    share of round trips whose actual exit step is at most ``tolerance_steps`` after the first step at which
    the rule fires (the rule is evaluated while the trip is open), and, for trips held to settlement, where
    the rule never fires.

    Uncertainty: the likelihood-ratio region (cells with ``2 * (LL_best - LL) <= chi2_3(level)``) and a
    bootstrap over round trips (multinomial weights on sparse per-trip histograms: no refit loop).

    Parameters
    ----------
    events, trips, positions
        Ingested events, :func:`round_trips`, and positions (for ``entry='average'``).
    pt_grid, sl_grid : Up-equivalent price units per share (> 0). holding_grid : seconds (inf allowed).
    step : duration between the trader's decisions (the simulated trader decides every 60 s).

    Returns
    -------
    ExitFit
    """
    from scipy import sparse

    pt_g = np.unique(np.asarray(pt_grid, dtype=np.float64))
    sl_g = np.unique(np.asarray(sl_grid, dtype=np.float64))
    h_g = np.unique(np.asarray(holding_grid, dtype=np.float64))
    if (pt_g <= 0).any() or (sl_g <= 0).any() or (h_g <= 0).any():
        raise LabelingError("grid values must be positive")
    st = exit_steps(events, trips, positions, step=step, entry=entry)
    if not len(st):
        raise LabelingError("no closed round trips with decision steps to fit")
    trip = st["trip"].to_numpy()
    new = np.r_[True, trip[1:] != trip[:-1]]  # steps come grouped by trip
    starts = np.flatnonzero(new)
    r = np.cumsum(new) - 1
    n_trips = len(starts)
    y = st["exit"].to_numpy(np.float64)
    k = st["k"].to_numpy(np.int64)
    ia, jb, hc = _orthant_bins(st["pnl"].to_numpy(np.float64), st["holding_s"].to_numpy(np.float64), pt_g, sl_g, h_g)
    dims = (len(pt_g) + 1, len(sl_g) + 1, len(h_g) + 1)
    b = np.ravel_multi_index((ia, jb, hc), dims)
    n_bins = int(np.prod(dims))
    steps_hist = sparse.csr_matrix((np.ones(len(b)), (r, b)), shape=(n_trips, n_bins))  # per-trip statistics
    exits_hist = sparse.csr_matrix((y, (r, b)), shape=(n_trips, n_bins))
    n_all = np.bincount(r, minlength=n_trips).astype(np.float64)
    y_all = np.bincount(r, weights=y, minlength=n_trips)
    cells = (slice(None), slice(0, len(pt_g)), slice(0, len(sl_g)), slice(0, len(h_g)))

    def loglik(w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Log-likelihood per cell, shape (B, n_pt, n_sl, n_h), for trip weights w of shape (B, n_trips)."""
        def untriggered(hist: sparse.csr_matrix) -> np.ndarray:
            h = np.asarray((hist.T @ w.T).T).reshape((len(w),) + dims)
            return h.cumsum(1).cumsum(2).cumsum(3)[cells]

        N0, Y0 = untriggered(steps_hist), untriggered(exits_hist)
        N, Y = (w @ n_all)[:, None, None, None], (w @ y_all)[:, None, None, None]
        N1, Y1 = N - N0, Y - Y0
        return _bernoulli_ll(Y0, N0) + _bernoulli_ll(Y1, N1), N0, Y0, N1, Y1, N, Y

    ll, N0, Y0, N1, Y1, N, Y = (a[0] for a in loglik(np.ones((1, n_trips))))
    ll0 = _bernoulli_ll(Y, N)

    # deterministic rule: first firing step per trip and level, then per cell the earliest of the three
    big = np.iinfo(np.int64).max // 4
    first = lambda hit: np.minimum.reduceat(np.where(hit, k[:, None], big), starts, axis=0)  # noqa: E731
    fa = first(ia[:, None] > np.arange(len(pt_g))[None, :])  # (n_trips, n_pt)
    fb = first(jb[:, None] > np.arange(len(sl_g))[None, :])
    fc = first(hc[:, None] > np.arange(len(h_g))[None, :])
    k_last = k[np.r_[starts[1:], len(k)] - 1]  # exit step (trade) or last step at risk (settlement)
    by_trade = np.add.reduceat(y, starts) > 0
    matched = np.zeros((len(pt_g), len(sl_g), len(h_g)))
    for h in range(len(h_g)):  # chunks keep (trips, n_pt, n_sl) small
        for c in range(0, n_trips, 2048):
            s = slice(c, c + 2048)
            fire = np.minimum(np.minimum(fa[s, :, None], fb[s, None, :]), fc[s, h, None, None])
            kl = k_last[s, None, None]
            ok = np.where(by_trade[s, None, None], (fire <= kl) & (kl - fire <= tolerance_steps), fire > kl)
            matched[:, :, h] += ok.sum(axis=0)
    explained = matched / n_trips

    P, S, H = np.meshgrid(pt_g, sl_g, h_g, indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = pd.DataFrame({"pt": P.ravel(), "sl": S.ravel(), "holding_s": H.ravel(), "loglik": ll.ravel(),
                             "pseudo_r2": (1 - ll / ll0).ravel(),
                             "rate_triggered": np.where(N1 > 0, Y1 / np.where(N1 > 0, N1, 1), np.nan).ravel(),
                             "rate_base": np.where(N0 > 0, Y0 / np.where(N0 > 0, N0, 1), np.nan).ravel(),
                             "triggered_steps": N1.ravel(), "explained": explained.ravel(), "n_trips": n_trips})
    grid.insert(4, "delta_loglik", grid["loglik"].max() - grid["loglik"])
    best = grid.loc[grid["loglik"].idxmax()]
    region = grid[grid["delta_loglik"] <= stats.chi2.ppf(level, df=3) / 2]

    rng = np.random.default_rng(seed)
    boots = []
    for lo in range(0, n_boot, 100):  # chunks keep the (B, cells) arrays small
        w = rng.multinomial(n_trips, np.full(n_trips, 1.0 / n_trips), size=min(100, n_boot - lo)).astype(np.float64)
        a = np.argmax(loglik(w)[0].reshape(len(w), -1), axis=1)
        boots.append(np.column_stack([P.ravel()[a], S.ravel()[a], H.ravel()[a]]))
    boot = pd.DataFrame(np.vstack(boots) if boots else np.zeros((0, 3)), columns=["pt", "sl", "holding_s"])
    q = ((1 - level) / 2, (1 + level) / 2)
    names = ["pt", "sl", "holding_s"]
    intervals = pd.DataFrame({
        "best": best[names].astype(float), "region_min": region[names].min(), "region_max": region[names].max(),
        # order statistics, not interpolation: the holding grid holds inf
        "boot_lo": boot.quantile(q[0], interpolation="lower") if len(boot) else np.nan,
        "boot_median": boot.quantile(0.5, interpolation="nearest") if len(boot) else np.nan,
        "boot_hi": boot.quantile(q[1], interpolation="higher") if len(boot) else np.nan,
    })
    return ExitFit(grid, best, grid.loc[grid["explained"].idxmax()], region, boot, intervals, st)


def barrier_pnl(events: pd.DataFrame, trips: pd.DataFrame, pt: float, sl: float, holding_s: float = math.inf, *,
                step: Any = "60s") -> pd.DataFrame:
    """What a fixed barrier rule would have earned on the trader's own entries, next to what it did earn.

    The rule enters each closed round trip as the trader did (time, Up-equivalent price, side, first
    quantity) and checks at every ``step`` after entry (as the trader decides every minute): exit when the
    mid-marked P&L per share reaches ``+pt`` or ``-sl``, or the holding time reaches ``holding_s``, at the
    Up-equivalent bid (long) or ask (short) in force; otherwise it holds to settlement (1 or 0). Uses no
    price after its exit.

    Returns
    -------
    DataFrame indexed like the closed trips: ``trader_pnl`` (realised USDC, with every add and partial exit),
    ``rule_pnl`` (USDC on ``entry_qty``), per-share versions, ``rule_exit_t``, ``rule_exit_price``,
    ``rule_exit_reason`` ('pt', 'sl', 'holding', 'settlement', 'open').
    """
    step_ms = _ms(step)
    tr = trips[trips["closed"]]
    paths = market_paths(events)
    if len(tr) and not len(paths):
        raise LabelingError("no price_change quotes: the barrier rule needs the Up-equivalent quotes")
    seg = _Segments(paths["slug"].to_numpy(dtype=object), paths["t"].to_numpy(dtype=np.int64))
    code = seg.code(tr["slug"].to_numpy(dtype=object))
    is_settle = paths["settlement"].to_numpy(bool)
    hi = np.where(code >= 0, seg.hi[np.maximum(code, 0)] - 1, -1)
    end_t = np.where((code >= 0) & (hi >= 0), paths["t"].to_numpy(np.int64)[np.maximum(hi, 0)], 0)
    settled = (code >= 0) & is_settle[np.maximum(hi, 0)]
    t0 = tr["t"].to_numpy(np.int64)
    n_steps = np.maximum(0, (end_t - t0 - 1) // step_ms)  # decision steps strictly before the market's end
    rows = np.repeat(np.arange(len(tr)), n_steps)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps) + 1
    time = t0[rows] + k * step_ms
    j = seg.asof(code[rows], time)
    ok = j >= 0
    jj = np.maximum(j, 0)
    mid, bid, ask = (paths[c].to_numpy(np.float64) for c in ("mid", "bid", "ask"))
    side = tr["side"].to_numpy(np.float64)
    entry = tr["entry_price"].to_numpy(np.float64)
    pnl = np.where(ok, side[rows] * (mid[jj] - entry[rows]) if len(mid) else np.nan, np.nan)
    with np.errstate(invalid="ignore"):
        hit_pt = pnl >= pt - _EPS
        hit_sl = pnl <= -sl + _EPS
    hit_h = k * step_ms / 1000.0 >= holding_s - 1e-9
    fire = hit_pt | hit_sl | hit_h
    first = pd.Series(np.flatnonzero(fire)).groupby(rows[fire]).first() if fire.any() else pd.Series(dtype=np.int64)
    exit_row = np.full(len(tr), -1, dtype=np.int64)
    exit_row[first.index.to_numpy()] = first.to_numpy()
    fired = exit_row >= 0
    er = np.maximum(exit_row, 0)
    px_fire = np.where(side > 0, bid[jj[er]], ask[jj[er]]) if len(rows) else np.full(len(tr), np.nan)
    reason = np.where(fired, np.where(hit_pt[er], "pt", np.where(hit_sl[er], "sl", "holding")) if len(rows) else "",
                      np.where(settled, "settlement", "open"))
    settle_px = np.where(settled, mid[np.maximum(hi, 0)] if len(mid) else np.nan, np.nan)
    exit_px = np.where(fired, px_fire, settle_px)
    exit_t = np.where(fired, time[er] if len(rows) else 0, end_t)
    qty = tr["entry_qty"].to_numpy(np.float64)
    per_share = side * (exit_px - entry)
    return pd.DataFrame({"slug": tr["slug"].to_numpy(), "t": t0, "side": side.astype(np.int64), "entry_price": entry,
                         "entry_qty": qty, "trader_pnl": tr["pnl"].to_numpy(np.float64),
                         "trader_pnl_per_share": tr["pnl"].to_numpy(np.float64) / qty,
                         "trader_exit_reason": tr["exit_reason"].to_numpy(), "rule_exit_t": exit_t,
                         "rule_exit_price": exit_px, "rule_exit_reason": reason, "rule_pnl_per_share": per_share,
                         "rule_pnl": per_share * qty}, index=tr.index)
