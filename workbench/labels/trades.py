"""Labels of the studied trader's own trades: per-market price paths, entries from fills, round trips from
the position state, and triple-barrier labels of each entry (AFML ch. 3 applied to a wallet).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from workbench.data.ledger import DOWN, UP
from workbench.labels.barriers import (_DUST, BARRIERS, LabelingError, ReturnKind, VerticalLabel, _first_touch, _labels,
                                       _multiples, _returns_mode, _thresholds)


# ------------------------------------------------------------------------------------------------
# The studied trader's trades: price paths, entries, round trips, labels
# ------------------------------------------------------------------------------------------------
def market_paths(events: pd.DataFrame) -> pd.DataFrame:
    """Up-equivalent quote path of every market, ending at its settlement value.

    From ``price_change`` rows: ``mid = (bid + ask) / 2`` for an Up quote, ``1 - mid`` for a Down quote
    (bid and ask are mirrored likewise). A resolved market (a ``resolution`` row) gets a last point at its
    ``market_end`` (the resolution time if unknown) worth 1 if Up won, else 0; quotes at or after it are
    dropped. Two quotes of one market in the same millisecond (or the same market seen by two wallets):
    the last is kept.

    Returns
    -------
    DataFrame sorted by (slug, t): ``slug``, ``t`` (UTC ms), ``mid``, ``bid``, ``ask`` (Up-equivalent;
    bid = ask = value at settlement), ``settlement`` (bool).
    """
    q = events[events["type"] == "price_change"]
    down = (q["outcome"] == DOWN).to_numpy()
    bid, ask = q["bid"].to_numpy(dtype=np.float64), q["ask"].to_numpy(dtype=np.float64)
    quotes = pd.DataFrame({"slug": q["slug"].to_numpy(dtype=object), "t": q["t"].to_numpy(dtype=np.int64),
                           "mid": np.where(down, 1 - (bid + ask) / 2, (bid + ask) / 2),
                           "bid": np.where(down, 1 - ask, bid), "ask": np.where(down, 1 - bid, ask),
                           "settlement": False})
    r = events[events["type"] == "resolution"]
    r = r.assign(_end=r["market_end"].astype("Float64").fillna(r["t"].astype("Float64")))
    r = r.groupby("slug", sort=False).agg(winner=("outcome", "last"), t=("_end", "last")).reset_index()
    value = np.where(r["winner"].to_numpy(dtype=object) == UP, 1.0, 0.0)
    settle = pd.DataFrame({"slug": r["slug"].to_numpy(dtype=object), "t": r["t"].to_numpy(dtype=np.int64),
                           "mid": value, "bid": value, "ask": value, "settlement": True})
    at = pd.Index(settle["slug"]).get_indexer(quotes["slug"].to_numpy(dtype=object))
    st_t = settle["t"].to_numpy(dtype=np.float64)
    settle_t = np.where(at >= 0, st_t[np.maximum(at, 0)] if len(st_t) else 0.0, np.inf)
    quotes = quotes[quotes["t"].to_numpy() < settle_t]
    paths = pd.concat([quotes, settle], ignore_index=True).sort_values(["slug", "t"], kind="stable")
    paths = paths.drop_duplicates(["slug", "t"], keep="last").reset_index(drop=True)
    paths["slug"] = paths["slug"].astype("str")
    return paths


class _Segments:
    """Per-slug segments of a (slug, t)-sorted path, with vectorised as-of lookups by compound key."""

    _SHIFT = np.int64(1) << np.int64(43)  # > 2**43 ms (year 2248): slug code * 2**43 + t never collides

    def __init__(self, slugs: np.ndarray, t: np.ndarray) -> None:
        code, uniques = pd.factorize(np.asarray(slugs, dtype=object))  # rows are grouped: codes ascend
        self.names = pd.Index(uniques)
        code = code.astype(np.int64)
        self.key = code * self._SHIFT + t.astype(np.int64)
        n_codes = len(uniques)
        self.lo = np.searchsorted(code, np.arange(n_codes), side="left")
        self.hi = np.searchsorted(code, np.arange(n_codes), side="right")  # exclusive

    def code(self, slugs: np.ndarray) -> np.ndarray:
        """Segment of each slug, -1 when the path has no such market."""
        return self.names.get_indexer(np.asarray(slugs, dtype=object)).astype(np.int64)

    def asof(self, code: np.ndarray, t: np.ndarray, *, inclusive: bool = True) -> np.ndarray:
        """Index of the last point at (or strictly before) ``t`` in each segment; -1 if none."""
        k = np.maximum(code, 0) * self._SHIFT + t.astype(np.int64)
        j = np.searchsorted(self.key, k, side="right" if inclusive else "left") - 1
        lo = self.lo[np.maximum(code, 0)] if len(self.lo) else np.zeros(len(code), np.int64)
        return np.where((code >= 0) & (j >= lo), j, -1)


def fill_entries(trades: pd.DataFrame) -> pd.DataFrame:
    """The trader's fills as entries for :func:`label_trades`: ``t, slug, side, entry_price, qty``.

    ``side`` is +1 for a fill that adds Up-equivalent exposure (BUY Up, SELL Down), -1 otherwise;
    ``entry_price`` is the fill's Up-equivalent price.
    """
    q = trades["up_equiv_qty"].to_numpy(dtype=np.float64)
    return pd.DataFrame({"t": trades["t"].to_numpy(dtype=np.int64), "slug": trades["slug"].to_numpy(dtype=object),
                         "side": np.where(q > 0, 1, -1), "entry_price": trades["up_equiv_price"].to_numpy(np.float64),
                         "qty": np.abs(q)}, index=trades.index)


def round_trips(positions: pd.DataFrame) -> pd.DataFrame:
    """Round trips of the net Up-equivalent inventory, per (wallet, market), from ``positions``.

    A round trip opens when the inventory leaves 0 (or changes sign) and closes when it returns to 0
    (or changes sign) or the market settles.

    Returns
    -------
    DataFrame, one row per round trip, in order of entry time
        ``wallet, slug, t`` (entry, UTC ms), ``side`` (+1 long / -1 short Up-equivalent),
        ``entry_price`` (Up-equivalent average cost after the opening row), ``entry_qty``, ``max_qty``,
        ``n_rows`` (state changes while open), ``closed``, ``exit_t``, ``exit_price`` (the closing fill's
        Up-equivalent price; 1 or 0 at settlement), ``exit_reason`` ('trade', 'settlement', or the closing
        activity: 'merge', 'redeem'...), ``pnl`` (realised USDC over the trip, closing row included, as the
        ledger books it: per-token average cost, so a trip closed by buying the other token rather than
        selling realises nothing until the market settles), ``holding_s``.
    """
    key = positions["wallet"].astype("str") + "|" + positions["slug"].astype("str")
    order = np.lexsort((np.arange(len(positions)), pd.factorize(key)[0]))
    p = positions.iloc[order]
    k = key.to_numpy(dtype=object)[order]
    net = p["net_up_equiv"].to_numpy(dtype=np.float64)
    new_market = np.r_[True, k[1:] != k[:-1]]
    prev = np.where(new_market, 0.0, np.r_[0.0, net[:-1]])
    flat, prev_flat = np.abs(net) < _DUST, np.abs(prev) < _DUST
    flip = ~flat & ~prev_flat & (np.sign(net) != np.sign(prev))
    opens = ~flat & (prev_flat | flip)
    closes = ~prev_flat & (flat | flip)
    trip_now = np.cumsum(opens) - 1  # trip open after each row
    trip_before = trip_now - opens  # trip open before each row (the one a closing row ends)
    n = int(opens.sum())
    event = p["event"].to_numpy(dtype=object)
    outcome = p["outcome"].to_numpy(dtype=object)
    price = p["price"].to_numpy(dtype=np.float64)
    up_px = np.where(outcome == DOWN, 1 - price, price)
    exit_px = np.where(event == "settlement", np.where(outcome == UP, 1.0, 0.0),
                       np.where(event == "trade", up_px, np.nan))
    t = p["t"].to_numpy(dtype=np.int64)
    o = np.flatnonzero(opens)
    trips = pd.DataFrame({"wallet": p["wallet"].to_numpy(dtype=object)[o], "slug": p["slug"].to_numpy(dtype=object)[o],
                          "t": t[o], "side": np.sign(net[o]).astype(np.int64),
                          "entry_price": p["entry_price_up_equiv"].to_numpy(dtype=np.float64)[o],
                          "entry_qty": np.abs(net[o])})
    in_trip = ~prev_flat  # rows acting on an open trip (closing rows included)
    held = ~flat  # rows after which a trip is open
    trips["max_qty"] = pd.Series(np.abs(net[held])).groupby(trip_now[held]).max().reindex(range(n)).to_numpy()
    trips["n_rows"] = np.bincount(trip_now[held], minlength=n)[:n] + np.bincount(trip_before[closes & flat],
                                                                                minlength=n)[:n]
    c = np.flatnonzero(closes)
    closed = np.zeros(n, dtype=bool)
    closed[trip_before[c]] = True
    trips["closed"] = closed
    for name, vals in (("exit_t", t[c].astype(np.float64)), ("exit_price", exit_px[c])):
        col = np.full(n, np.nan)
        col[trip_before[c]] = vals
        trips[name] = col
    trips["exit_t"] = pd.array(trips["exit_t"], dtype="Float64").astype("Int64")
    reason = np.full(n, None, dtype=object)
    reason[trip_before[c]] = event[c]
    trips["exit_reason"] = pd.Series(reason, dtype="str")
    trips["pnl"] = np.bincount(trip_before[in_trip], weights=p["realized_delta"].to_numpy(np.float64)[in_trip],
                               minlength=n)[:n]
    trips["holding_s"] = (trips["exit_t"].astype("Float64") - trips["t"]) / 1000.0
    for col in ("wallet", "slug"):
        trips[col] = trips[col].astype("str")
    return trips.sort_values("t", kind="stable").reset_index(drop=True)


def label_trades(events: pd.DataFrame, entries: pd.DataFrame, pt_sl: Sequence[float | None] = (0.12, 0.15),
                 target: float | np.ndarray = 1.0, vertical: pd.Timedelta | str | None = None, *,
                 returns: ReturnKind = "absolute", vertical_label: VerticalLabel = "sign") -> pd.DataFrame:
    """Triple-barrier labels of the trader's fills or round-trip entries on the path of what was traded.

    Each entry is a bet of ``side`` (+1 long / -1 short Up-equivalent) at ``entry_price`` at time ``t`` in
    market ``slug``. Its path is :func:`market_paths`: the market's Up-equivalent mid quotes strictly after
    ``t``, ending at the settlement value (1 or 0) at the market's end. Barriers are on the side-adjusted
    return from the entry price, by default in absolute price units (a token price is a probability):
    with ``pt_sl=(0.12, 0.15)`` and ``target=1`` the profit-taking barrier is +0.12 per share and the stop
    loss -0.15. Labels are meta-labels (AFML snippet 3.7): 1 if the side-adjusted return at the first touch is > 0.
    ``vertical_label`` defaults to ``'sign'`` here because the natural vertical barrier is the settlement,
    whose outcome is informative.

    Parameters
    ----------
    events : DataFrame
        Ingested events (``workbench.ingest``): ``price_change`` and ``resolution`` rows are used.
    entries : DataFrame, shape (n,)
        Columns ``t`` (UTC ms), ``slug``, ``side``, ``entry_price``: :func:`fill_entries` or :func:`round_trips`.
    pt_sl, target
        Barrier multiples and width (scalar or one per entry), as in :func:`triple_barrier`.
    vertical : None or duration
        None: the market's settlement. A duration: the last quote at or before ``t + duration`` (or the
        settlement, if earlier).
    returns : 'absolute' | 'simple' | 'log'
        Return from the entry price.

    Returns
    -------
    DataFrame indexed like ``entries``
        ``t, slug, side, entry_price``, ``t1`` (UTC ms of the touch), ``barrier``, ``exit_mid`` (Up mid at
        the touch), ``ret``, ``label`` (Int64), ``target``, ``settled`` (ended at the settlement),
        ``truncated`` (the market has no resolution and its quotes end before the vertical barrier). An
        entry in a market without quotes gets barrier 'none' and missing values.
    """
    pt, sl = _multiples(pt_sl)
    paths = market_paths(events)
    seg = _Segments(paths["slug"].to_numpy(dtype=object), paths["t"].to_numpy(dtype=np.int64))
    t = entries["t"].to_numpy(dtype=np.int64)
    side = entries["side"].to_numpy(dtype=np.float64)
    if not np.isin(side, (-1.0, 1.0)).all():
        raise LabelingError("entries' side must be +1 or -1")
    entry = entries["entry_price"].to_numpy(dtype=np.float64)
    n = len(entries)
    tgt = np.full(n, float(target)) if np.ndim(target) == 0 else np.asarray(target, dtype=np.float64)
    if tgt.shape != (n,):
        raise LabelingError(f"target must be a scalar or one value per entry ({n})")
    code = seg.code(entries["slug"].to_numpy(dtype=object))
    has_path = code >= 0
    cc = np.maximum(code, 0)
    lo = seg.lo[cc] if len(seg.lo) else np.zeros(n, np.int64)
    hi = seg.hi[cc] - 1 if len(seg.hi) else np.zeros(n, np.int64)  # last point of the segment
    start = seg.asof(code, t) + 1
    start = np.where(start > 0, start, lo)  # entry before the first quote: search from the first one
    is_settle = paths["settlement"].to_numpy(dtype=bool)
    last_time = paths["t"].to_numpy(dtype=np.int64)[hi] if len(paths) else np.zeros(n, np.int64)
    if vertical is None:
        stop = hi
        truncated = has_path & ~is_settle[hi] if len(paths) else np.zeros(n, bool)
    else:
        td = pd.Timedelta(vertical)
        if td <= pd.Timedelta(0):
            raise LabelingError(f"vertical must be a positive duration, got {vertical!r}")
        tv = t + td.value // 1_000_000
        stop = np.minimum(seg.asof(code, tv), hi)
        truncated = has_path & (tv > last_time) & ~(is_settle[hi] if len(paths) else False)
    has_path &= stop >= lo
    mid = paths["mid"].to_numpy(dtype=np.float64)
    if returns != "absolute" and (entry <= 0).any() or returns == "log" and (mid <= 0).any():
        raise LabelingError("relative returns need positive entry prices (and log returns positive mids: a market "
                            "settled at 0 has none); use returns='absolute'")
    upper, lower = _thresholds(pt, sl, tgt)
    vals, base, mode = _returns_mode(returns, mid if len(mid) else np.zeros(1), entry)
    sel = np.flatnonzero(has_path)
    j = np.full(n, -1, dtype=np.int64)
    bcode = np.zeros(n, dtype=np.int8)
    if len(sel):
        j[sel], bcode[sel] = _first_touch(vals, base[sel], start[sel], stop[sel], upper[sel], lower[sel], side[sel],
                                          mode)
    jj = np.maximum(j, 0)
    ret = np.where(has_path, ((vals[jj] / base - 1.0) if mode == 0 else (vals[jj] - base)) * side, np.nan)
    label = pd.array(_labels(np.nan_to_num(ret), bcode, True, vertical_label), dtype="Int64")
    label[~has_path] = pd.NA
    out = entries[["t", "slug"]].copy()
    out["side"] = side.astype(np.int64)
    out["entry_price"] = entry
    out["t1"] = pd.array(np.where(has_path, paths["t"].to_numpy(np.int64)[jj] if len(paths) else 0, 0),
                         dtype="Int64")
    out.loc[~has_path, "t1"] = pd.NA
    barrier = np.asarray(BARRIERS, dtype=object)[bcode + 1]
    barrier[~has_path] = "none"
    out["barrier"] = pd.Series(barrier, index=out.index, dtype="str")
    out["exit_mid"] = np.where(has_path, mid[jj] if len(mid) else np.nan, np.nan)
    out["ret"] = ret
    out["label"] = label
    out["target"] = tgt
    out["settled"] = has_path & (is_settle[jj] if len(paths) else False)
    out["truncated"] = np.asarray(truncated, dtype=bool) & has_path
    return out
