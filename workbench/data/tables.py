"""From clean events to the causal tables: Up-token marks, the wallet's trades, resolutions, position
state after every state-changing record, and bars built only from events strictly before each close.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from workbench.data.ledger import DOWN, UP, LedgerError, MarketPosition
from workbench.data.schema import _TYPE_ORDER, WALLET_ACTIVITY, IngestError


# ------------------------------------------------------------------------------------------------
# Marks, trades, positions, bars
# ------------------------------------------------------------------------------------------------
def up_marks(events: pd.DataFrame) -> pd.DataFrame:
    """Up-token marks per (wallet, slug) over time: quote mid, or trade prices when a market has no quotes.

    Returns columns ``wallet, slug, t, mark_up, bid_up, ask_up`` sorted by ``t``. Down quotes and
    Down trades are folded in as ``1 - price``. Quotes mark a market from its first quote on (fills are
    noisier); before it, and in markets without quotes (Data-API exports), fills of any wallet do.
    """
    q = events[events["type"] == "price_change"]
    down = (q["outcome"] == DOWN).to_numpy()
    bid = np.where(down, 1 - q["ask"].to_numpy(), q["bid"].to_numpy())
    ask = np.where(down, 1 - q["bid"].to_numpy(), q["ask"].to_numpy())
    quotes = pd.DataFrame({"wallet": q["wallet"].to_numpy(), "slug": q["slug"].to_numpy(), "t": q["t"].to_numpy(),
                           "mark_up": (bid + ask) / 2, "bid_up": bid, "ask_up": ask})
    # fills mark a market only before its first quote (so the rule never depends on later data)
    first_quote = q.groupby(["wallet", "slug"])["t"].min().rename("first_quote")
    fills = events[events["type"].isin(["trade", "last_trade_price"])]
    fq = fills.join(first_quote, on=["wallet", "slug"])["first_quote"].to_numpy(dtype=np.float64, na_value=np.inf)
    fills = fills[fills["t"].to_numpy() < fq]
    px = np.where(fills["outcome"].to_numpy() == DOWN, 1 - fills["price"].to_numpy(), fills["price"].to_numpy())
    trade_marks = pd.DataFrame({"wallet": fills["wallet"].to_numpy(), "slug": fills["slug"].to_numpy(),
                                "t": fills["t"].to_numpy(), "mark_up": px, "bid_up": np.nan, "ask_up": np.nan})
    marks = pd.concat([quotes, trade_marks], ignore_index=True)
    return marks.sort_values("t", kind="stable").reset_index(drop=True)


def _asof(left: pd.DataFrame, right: pd.DataFrame, cols: list[str], *, by: list[str],
          exact: bool) -> pd.DataFrame:
    """Backward as-of join on ``t`` (``exact=False``: strictly before). Keeps ``left``'s row order."""
    left = left.reset_index(drop=True)
    lk = left[by + ["t"]].assign(_row=np.arange(len(left))).sort_values("t", kind="stable")
    rk = right[by + ["t"] + cols].sort_values("t", kind="stable")
    for c in by:  # merge_asof needs identical key dtypes
        lk[c] = lk[c].astype("string")
        rk[c] = rk[c].astype("string")
    m = pd.merge_asof(lk, rk, on="t", by=by, direction="backward", allow_exact_matches=exact)
    m = m.sort_values("_row")
    for c in cols:
        left[c] = m[c].to_numpy()
    return left


def build_trades(events: pd.DataFrame, marks: pd.DataFrame) -> pd.DataFrame:
    """The studied wallet's fills, normalised to Up-equivalent exposure.

    Added columns: ``up_equiv_qty`` (signed shares: +size for BUY Up or SELL Down, -size for SELL Up
    or BUY Down), ``up_equiv_price`` (price for Up, 1 - price for Down), ``cash_flow`` (USDC, -usdc on
    a buy), the Up quote in force at the fill (``bid_up, ask_up, mark_up``, as of ``t`` inclusive)
    and ``time_left_s`` to the market's end.
    """
    tr = events[events["type"] == "trade"].copy()
    buy = (tr["side"] == "BUY").to_numpy()
    up = (tr["outcome"] == UP).to_numpy()
    size = tr["size"].to_numpy()
    tr["up_equiv_qty"] = np.where(buy == up, size, -size)
    tr["up_equiv_price"] = np.where(up, tr["price"].to_numpy(), 1 - tr["price"].to_numpy())
    tr["cash_flow"] = np.where(buy, -tr["usdc"].to_numpy(), tr["usdc"].to_numpy())
    tr = _asof(tr, marks, ["mark_up", "bid_up", "ask_up"], by=["wallet", "slug"], exact=True)
    tr["time_left_s"] = (tr["market_end"].astype("Float64") - tr["t"]) / 1000.0
    return tr.drop(columns=["bid", "ask", "open", "high", "low", "close", "volume", "price_start", "price_end"])


_RESOLUTION_BAND = 0.9  # last Up-equivalent fill price >= 0.9 (<= 0.1) implies Up (Down) won


def infer_resolutions(events: pd.DataFrame) -> pd.DataFrame:
    """How each (wallet, slug) market resolved, from evidence available at its settlement time.

    Returns columns ``wallet, slug, winner, resolution_source, settle_t``:

    * ``event``: a resolution record; settled at its time with its winner.
    * ``last price``: no record, but the last fill at or before the market's end priced one side at
      >= 0.9; settled at the market's end (uses fills up to the end only).
    * ``unknown``: neither; the position stays open, marked at the last price, until a REDEEM (whose
      payout tells the winner) closes it in :func:`build_positions`.
    """
    key = ["wallet", "slug"]
    base = events.groupby(key, sort=False).agg(market_end=("market_end", "first")).reset_index()
    res = events[events["type"] == "resolution"].groupby(key).agg(res_winner=("outcome", "last"), res_t=("t", "last"))
    end = events["market_end"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.inf)
    fills = events[events["type"].isin(["trade", "last_trade_price"]) & (events["t"].to_numpy() <= end)]
    up_px = np.where(fills["outcome"] == UP, fills["price"], 1 - fills["price"])
    last_px = fills.assign(up_px=up_px).groupby(key)["up_px"].last().rename("last_up_px")
    df = base.join(res, on=key).join(last_px, on=key)
    has_res = df["res_winner"].notna().to_numpy()
    px = df["last_up_px"].to_numpy(dtype=np.float64, na_value=np.nan)
    end_ms = df["market_end"].to_numpy(dtype=np.float64, na_value=np.nan)
    by_price = ~has_res & np.isfinite(end_ms) & ((px >= _RESOLUTION_BAND) | (px <= 1 - _RESOLUTION_BAND))
    source = np.select([has_res, by_price], ["event", "last price"], "unknown")
    winner = np.where(has_res, df["res_winner"].to_numpy(dtype=object),
                      np.where(by_price, np.where(px >= _RESOLUTION_BAND, UP, DOWN), None))
    settle = np.where(has_res, df["res_t"].to_numpy(dtype=np.float64, na_value=np.nan),
                      np.where(by_price, end_ms, np.nan))
    return pd.DataFrame({"wallet": df["wallet"], "slug": df["slug"], "winner": winner,
                         "resolution_source": source, "settle_t": pd.array(settle, dtype="Float64").astype("Int64")})


POSITION_COLUMNS = ("t", "wallet", "slug", "event", "outcome", "side", "size", "price", "q_up", "q_down",
                    "net_up_equiv", "avg_up", "avg_down", "entry_price_up_equiv", "mark_up", "realized_delta",
                    "realized_pnl", "unrealized_pnl", "total_pnl", "cum_realized_wallet", "time_since_entry_s",
                    "resolution_source", "history_incomplete", "source_file", "record")


def build_positions(events: pd.DataFrame, marks: pd.DataFrame, resolutions: pd.DataFrame) -> pd.DataFrame:
    """Position state after each state-changing record, per (wallet, market), in time order.

    Each row carries the state *after* the record: holdings per token, net Up-equivalent inventory,
    average costs, Up-equivalent entry price, the mark in force at ``t`` (inclusive), realised P&L of
    the market and cumulated over the wallet, unrealised P&L at the mark, and seconds since the
    position was opened. Settlement rows (``event == 'settlement'``) close markets at their resolution.
    See :mod:`workbench.data.ledger` for the accounting rules.
    """
    act = events[events["type"].isin(WALLET_ACTIVITY)][
        ["t", "wallet", "slug", "type", "outcome", "side", "size", "price", "usdc", "source_file", "record"]].copy()
    # a market gets a settlement row only if the wallet was active in it at or before the settlement
    first_activity = act.groupby(["wallet", "slug"])["t"].min()
    settle = resolutions[resolutions["settle_t"].notna()]
    first = settle.join(first_activity.rename("first_t"), on=["wallet", "slug"])["first_t"]
    settle = settle[(first.notna() & (first <= settle["settle_t"].astype("Float64"))).to_numpy(dtype=bool)]
    srows = pd.DataFrame({"t": settle["settle_t"].astype(np.int64).to_numpy(), "wallet": settle["wallet"].to_numpy(),
                          "slug": settle["slug"].to_numpy(), "type": "settlement", "outcome": settle["winner"].to_numpy(),
                          "side": None, "size": np.nan, "price": np.nan, "usdc": np.nan, "source_file": None,
                          "record": -1})
    rows = pd.concat([act, srows], ignore_index=True) if len(srows) else act.reset_index(drop=True)
    order = rows["type"].map({**_TYPE_ORDER, "settlement": 99}).astype(int)
    rows = rows.assign(_o=order).sort_values(["wallet", "t", "_o"], kind="stable").drop(columns="_o")
    rows = _asof(rows, marks, ["mark_up"], by=["wallet", "slug"], exact=True)
    src = dict(zip(zip(resolutions["wallet"], resolutions["slug"]), resolutions["resolution_source"]))

    books: dict[tuple[str, str], MarketPosition] = {}
    winners: dict[tuple[str, str], str] = {}  # markets settled so far, and their winner
    cum: dict[str, float] = {}
    out: dict[str, list[Any]] = {c: [] for c in POSITION_COLUMNS}
    for r in rows.itertuples(index=False):
        key = (r.wallet, r.slug)
        pos = books.setdefault(key, MarketPosition())
        t, mark = int(r.t), float(r.mark_up) if pd.notna(r.mark_up) else math.nan
        source = None
        try:
            if r.type == "settlement":
                delta = pos.settle(t, r.outcome)
                winners[key], source = r.outcome, src.get(key)
            elif r.type == "redeem" and key not in winners:
                winners[key] = pos.infer_redeem_winner(float(r.usdc))
                delta, source = pos.settle(t, winners[key]), "redeem"
            elif r.type in ("redeem", "merge") and key in winners and pos.is_flat:
                delta, source = 0.0, "after settlement"  # shares were already valued at settlement
            else:
                if r.type == "trade":
                    delta = pos.trade(t, r.outcome, r.side, float(r.size), float(r.price))
                elif r.type == "merge":
                    delta = pos.merge(t, float(r.size), mark)
                elif r.type == "split":
                    delta = pos.split(t, float(r.size), mark)
                elif r.type == "reward":
                    delta = pos.reward(t, float(r.usdc))
                else:
                    raise LedgerError(f"unexpected activity type {r.type!r}")
                if key in winners and not pos.is_flat:  # activity after resolution settles at once
                    delta += pos.settle(t, winners[key])
                    source = "after settlement"
        except LedgerError as exc:  # validated upstream: reaching here is a bug, not bad input
            raise IngestError(f"{r.source_file} record {r.record}: {exc}") from exc
        cum[r.wallet] = cum.get(r.wallet, 0.0) + delta
        unreal = pos.unrealized(mark)
        vals = (t, r.wallet, r.slug, r.type, r.outcome, r.side, r.size, r.price, pos.q_up, pos.q_down, pos.net,
                pos.avg_up if pos.q_up else math.nan, pos.avg_down if pos.q_down else math.nan, pos.entry_price,
                mark, delta, pos.realized, unreal, pos.realized + unreal, cum[r.wallet],
                (t - pos.entry_t) / 1000.0 if pos.entry_t is not None else math.nan,
                source, pos.history_incomplete, r.source_file, r.record)
        for c, v in zip(POSITION_COLUMNS, vals):
            out[c].append(v)
    pos_df = pd.DataFrame(out)
    for c in ("wallet", "slug", "event", "outcome", "side", "resolution_source", "source_file"):
        pos_df[c] = pos_df[c].astype("str").where(pos_df[c].notna())  # one text dtype, even when all missing
    pos_df.insert(1, "ts", pd.to_datetime(pos_df["t"].astype(np.int64), unit="ms", utc=True))
    return pos_df


BAR_COLUMNS = ("wallet", "underlying", "ts", "bar_start", "bar_end", "u_open", "u_high", "u_low", "u_close",
               "u_volume", "u_bars", "slug", "mid_open", "mid_high", "mid_low", "mid_close", "bid_close", "ask_close",
               "quotes", "market_trades", "market_usdc", "wallet_trades", "wallet_flow", "wallet_buy_usdc",
               "wallet_sell_usdc", "inventory", "realized_pnl_cum", "unrealized_pnl")


def build_bars(events: pd.DataFrame, positions: pd.DataFrame, marks: pd.DataFrame,
               interval: str = "15min", offset: str = "0s") -> pd.DataFrame:
    """Bars per (wallet, underlying) at ``interval``, built only from events strictly before each close.

    A bar covers ``[bar_start, bar_end)``; a record at exactly ``bar_end`` belongs to the next bar. Bar
    boundaries are multiples of ``interval`` shifted by ``offset`` (e.g. ``"5s"`` to start one-minute
    steps at the simulated trader's decision times).
    Empty bars are kept (NaN prices, zero counts): nothing is forward-filled.

    Columns: underlying OHLCV from ``bar`` records (``u_open ... u_volume``, ``u_bars``); the Up-token
    mid OHLC, closing bid/ask and quote count of the market quoted last in the bar (``slug``); fills by
    other wallets (``market_trades``, ``market_usdc``); the studied wallet's fills (``wallet_trades``,
    ``wallet_flow`` in signed Up-equivalent shares, ``wallet_buy_usdc``, ``wallet_sell_usdc``); and its
    state at the close from records strictly before it: ``inventory`` (net Up-equivalent shares over
    open markets), ``realized_pnl_cum`` and ``unrealized_pnl`` (open markets at their last mark).
    """
    step = int(pd.Timedelta(interval).total_seconds() * 1000)
    off = int(pd.Timedelta(offset).total_seconds() * 1000)
    if step <= 0:
        raise ValueError(f"bar interval must be positive, got {interval!r}")
    if not 0 <= off < step:
        raise ValueError(f"bar offset must be in [0, interval), got {offset!r}")
    ev = events.assign(bar_end=((events["t"] - off) // step + 1) * step + off)
    frames = []
    for (wallet, und), g in ev.groupby(["wallet", "underlying"], sort=True):
        grid = np.arange(int(g["bar_end"].min()), int(g["bar_end"].max()) + step, step, dtype=np.int64)
        bars = pd.DataFrame({"wallet": wallet, "underlying": und, "bar_start": grid - step, "bar_end": grid})
        ub = g[g["type"] == "bar"].groupby("bar_end").agg(
            u_open=("open", "first"), u_high=("high", "max"), u_low=("low", "min"), u_close=("close", "last"),
            u_volume=("volume", "sum"), u_bars=("open", "size"))
        q = g[g["type"] == "price_change"]
        q = q.assign(mid=np.where(q["outcome"] == DOWN, 1 - (q["bid"] + q["ask"]) / 2, (q["bid"] + q["ask"]) / 2),
                     bid_up=np.where(q["outcome"] == DOWN, 1 - q["ask"], q["bid"]),
                     ask_up=np.where(q["outcome"] == DOWN, 1 - q["bid"], q["ask"]))
        last_slug = q.groupby("bar_end")["slug"].last()
        q = q[q["slug"].to_numpy() == q["bar_end"].map(last_slug).to_numpy()]
        qb = q.groupby("bar_end").agg(slug=("slug", "last"), mid_open=("mid", "first"), mid_high=("mid", "max"),
                                      mid_low=("mid", "min"), mid_close=("mid", "last"), bid_close=("bid_up", "last"),
                                      ask_close=("ask_up", "last"), quotes=("mid", "size"))
        mt = g[g["type"] == "last_trade_price"].groupby("bar_end").agg(market_trades=("usdc", "size"),
                                                                      market_usdc=("usdc", "sum"))
        wt = g[g["type"] == "trade"]
        buy = wt["side"] == "BUY"
        flow = np.where((buy == (wt["outcome"] == UP)).to_numpy(), wt["size"].to_numpy(), -wt["size"].to_numpy())
        wt = wt.assign(flow=flow, buy_usdc=np.where(buy, wt["usdc"], 0.0), sell_usdc=np.where(buy, 0.0, wt["usdc"]))
        wf = wt.groupby("bar_end").agg(wallet_trades=("flow", "size"), wallet_flow=("flow", "sum"),
                                       wallet_buy_usdc=("buy_usdc", "sum"), wallet_sell_usdc=("sell_usdc", "sum"))
        bars = bars.join(ub, on="bar_end").join(qb, on="bar_end").join(mt, on="bar_end").join(wf, on="bar_end")
        for c in ("u_bars", "quotes", "market_trades", "wallet_trades"):
            bars[c] = bars[c].fillna(0).astype(int)  # counts: an empty bar has zero, not NaN
        for c in ("market_usdc", "wallet_flow", "wallet_buy_usdc", "wallet_sell_usdc"):
            bars[c] = bars[c].fillna(0.0)
        bars = _bar_state(bars, positions[(positions["wallet"] == wallet)],
                          marks[marks["wallet"] == wallet], set(g["slug"].unique()))
        frames.append(bars)
    if not frames:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    out.insert(2, "ts", pd.to_datetime(out["bar_end"], unit="ms", utc=True))
    return out


def _groups(keys: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(key, row indices) per distinct key, first-appearance order; row order kept within a group."""
    order = np.argsort(pd.factorize(keys)[0], kind="stable")
    k_sorted = keys[order]
    cuts = np.flatnonzero(k_sorted[1:] != k_sorted[:-1]) + 1
    return [(k_sorted[idx[0]], order[idx]) for idx in np.split(np.arange(len(keys)), cuts) if len(idx)] \
        if len(keys) else []


def _bar_state(bars: pd.DataFrame, pos: pd.DataFrame, marks: pd.DataFrame, slugs: set[str]) -> pd.DataFrame:
    """Inventory, cumulative realised and unrealised P&L at each bar close, from records strictly before."""
    ends = bars["bar_end"].to_numpy()
    pos = pos[pos["slug"].isin(slugs)]
    cum = np.zeros(len(ends))
    if len(pos):
        idx = np.searchsorted(pos["t"].to_numpy(), ends, side="left") - 1  # rows strictly before the close
        cum = np.where(idx >= 0, pos["cum_realized_wallet"].to_numpy()[np.maximum(idx, 0)], 0.0)
    inventory = np.zeros(len(ends))
    unreal = np.zeros(len(ends))
    marks = marks[marks["slug"].isin(pos["slug"].unique())]
    m_t, m_v = marks["t"].to_numpy(), marks["mark_up"].to_numpy()
    mark_rows = dict(_groups(marks["slug"].to_numpy(dtype=object)))
    p_t, p_event = pos["t"].to_numpy(), pos["event"].to_numpy(dtype=object)
    p_qu, p_qd = pos["q_up"].to_numpy(), pos["q_down"].to_numpy()
    p_au, p_ad = np.nan_to_num(pos["avg_up"].to_numpy()), np.nan_to_num(pos["avg_down"].to_numpy())
    for slug, rows in _groups(pos["slug"].to_numpy(dtype=object)):
        ts = p_t[rows]
        last = rows[-1]
        closed = p_event[last] in ("settlement", "redeem") and p_qu[last] == 0 and p_qd[last] == 0
        lo = np.searchsorted(ends, ts[0], side="right")  # first close strictly after the first record
        hi = np.searchsorted(ends, ts[-1], side="right") if closed else len(ends)
        if hi <= lo:
            continue
        sel = np.arange(lo, hi)
        j = rows[np.searchsorted(ts, ends[sel], side="left") - 1]
        q_up, q_dn, a_up, a_dn = p_qu[j], p_qd[j], p_au[j], p_ad[j]
        mrows = mark_rows.get(slug, np.zeros(0, dtype=np.int64))
        k = np.searchsorted(m_t[mrows], ends[sel], side="left") - 1
        mark = np.where(k >= 0, m_v[mrows][np.maximum(k, 0)], np.nan) if len(mrows) else np.full(len(sel), np.nan)
        u = q_up * (mark - a_up) + q_dn * ((1 - mark) - a_dn)
        inventory[sel] += q_up - q_dn
        unreal[sel] += np.where((q_up == 0) & (q_dn == 0), 0.0, u)
    return bars.assign(inventory=inventory, realized_pnl_cum=cum, unrealized_pnl=unreal)
