"""Track decisions' market outcomes: open a position per decision, update it from a price source, close it.

A *price source* is anything with three methods (a live feed implements the same ones):

* ``quotes(symbol, start_ms, end_ms) -> (t, bid, ask)``: Up quotes with ``start_ms < t <= end_ms``;
* ``expiry(symbol) -> (end_ms or None, settlement value of Up or None)``;
* ``now() -> int``: the latest time the source has data for.

:class:`ReplayPriceSource` serves the project's recorded quotes and only reveals data up to its clock
(``advance(t)``), so an offline replay cannot use an outcome before it would have been known.

Position rules (Up-equivalent): a BUY is entered at the ask and marked/exited at the bid, a SELL entered
at the bid and marked/exited at the ask. It closes at the first quote that crosses the stop or the take
profit, at the market's settlement (1 or 0) when it expires, or at the quote in force ``max_hold`` after
entry, whichever comes first. P&L is per share in Up-price units.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from workbench.metrics import max_drawdown
from workbench.rlaif.store import Outcome, Store, TradingDecision

MS_PER_DAY = 86_400_000


class PriceSource(Protocol):
    def quotes(self, symbol: str, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def expiry(self, symbol: str) -> tuple[int | None, float | None]: ...

    def now(self) -> int: ...


class ReplayPriceSource:
    """Recorded quotes (a :class:`workbench.twin.backtest.QuoteBook`) behind a clock."""

    def __init__(self, book: Any, clock_ms: int | None = None) -> None:
        self.book = book
        self._now = clock_ms if clock_ms is not None else int(2**62)

    def advance(self, t_ms: int) -> None:
        if t_ms < self._now and self._now != int(2**62):
            raise ValueError("the replay clock only moves forward")
        self._now = int(t_ms)

    def now(self) -> int:
        return self._now

    def quotes(self, symbol: str, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, b, a = self.book._q.get(symbol, (np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
        sel = (t > start_ms) & (t <= min(end_ms, self._now))
        return t[sel], b[sel], a[sel]

    def quote_at(self, symbol: str, t_ms: int) -> tuple[float, float]:
        if t_ms > self._now:
            raise ValueError(f"quote at {t_ms} asked before the clock ({self._now}) reached it")
        return self.book.quote(symbol, t_ms)

    def expiry(self, symbol: str) -> tuple[int | None, float | None]:
        end = self.book.end.get(symbol)
        if end is None:
            return None, None
        if end > self._now:
            return end, None  # not settled yet as far as the clock knows
        winner = self.book.winner.get(symbol)
        return end, (1.0 if winner == "Up" else 0.0) if winner else None


def path_metrics(direction: int, entry: float, marks: np.ndarray, exit_price: float) -> tuple[float, float, float]:
    """``(ret, sharpe, max_drawdown)`` of a position from its mark path (per share, Up-price units).

    ``ret = direction * (exit - entry)``; Sharpe = mean / std of the mark-to-market P&L increments times
    sqrt(their number) (the hold's Sharpe ratio); max drawdown of the P&L path.
    """
    pnl_path = direction * (np.r_[np.asarray(marks, float), exit_price] - entry)
    ret = float(pnl_path[-1])
    inc = np.diff(np.r_[0.0, pnl_path])
    sd = inc.std(ddof=1) if len(inc) > 1 else 0.0
    sharpe = float(inc.mean() / sd * math.sqrt(len(inc))) if sd > 0 else 0.0
    return ret, sharpe, max_drawdown(pnl_path)


def evaluate(decision: TradingDecision, source: PriceSource, max_hold_ms: int) -> tuple[Outcome | None, list[float]]:
    """First-touch exit of ``decision`` on the source's data up to its clock; None while still open. The holding
    limit is ``max_hold_ms``, or the decision's own ``metadata["hold_ms"]`` when shorter."""
    d = decision
    if d.action == "HOLD":
        return Outcome(d.id, d.time, float("nan"), 0.0, 0.0, 0.0, 0.0, "hold", 0), []
    sgn = d.direction
    end_ms, settle = source.expiry(d.symbol)
    horizon = d.time + min(max_hold_ms, int(d.metadata.get("hold_ms", max_hold_ms)))  # a candidate's own limit
    t, b, a = source.quotes(d.symbol, d.time, horizon if end_ms is None else min(horizon, end_ms))
    exit_px = b if sgn > 0 else a  # what closing would get
    marks: list[float] = []
    for i in range(len(t)):
        px = float(exit_px[i])
        if np.isfinite(d.stop_loss) and sgn * (px - d.stop_loss) <= 0:
            return _close(d, int(t[i]), px, marks, "stop"), marks
        if np.isfinite(d.take_profit) and sgn * (px - d.take_profit) >= 0:
            return _close(d, int(t[i]), px, marks, "target"), marks
        marks.append(px)
    now = source.now()
    if end_ms is not None and end_ms <= horizon and settle is not None:
        return _close(d, end_ms, float(settle), marks, "expiry"), marks
    if horizon <= now and (end_ms is None or horizon < end_ms):
        last = marks[-1] if marks else (d.entry_price if np.isfinite(d.entry_price) else float("nan"))
        return _close(d, horizon, last, marks, "time"), marks
    return None, marks


def _close(d: TradingDecision, t: int, price: float, marks: list[float], reason: str) -> Outcome:
    ret, sharpe, mdd = path_metrics(d.direction, d.entry_price, np.asarray(marks), price)
    return Outcome(d.id, int(t), float(price), ret, ret * d.size, sharpe, mdd, reason, len(marks) + 1)


@dataclass(frozen=True)
class Position:
    """A tracked position (the design's ``Position``): ``position_id`` is the decision's id. Also reads as the
    dict rows of earlier versions (``position["id"]``, ``position["size"]``...)."""

    position_id: str
    symbol: str
    status: str  # open / closed
    opened_at: int  # UTC ms
    last_update: int | None  # UTC ms
    entry_price: float | None
    direction: int  # +1 long Up, -1 short Up, 0 hold
    quantity: float  # shares

    @property
    def id(self) -> str:
        return self.position_id

    @property
    def size(self) -> float:
        return self.quantity

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return ["id", *[f.name for f in dataclasses.fields(self)]]


def _position_id(position: "Position | TradingDecision | str") -> str:
    return position if isinstance(position, str) else (position.position_id if isinstance(position, Position)
                                                       else position.id)


class OutcomeTracker:
    """Opens a position per tracked decision and closes it by the rules above.

    Parameters
    ----------
    preference_generator : :class:`workbench.rlaif.PreferenceGenerator` whose store receives outcomes.
    data_client : a price source (default: none; positions then close only by :meth:`close_position`). The
        design's Alpaca client cannot be reached here; any object with the three methods above works.
    storage_path : the store when no preference generator is given (a folder holds ``rlaif.db``; the design's
        default ``./data/rlaif/positions``); with a generator its store is shared.
    update_interval_seconds : the pause between updates of :meth:`monitor`.
    auto_close_after_days : maximum holding time in days (fractions allowed: 10 minutes = 10 / 1440).
    """

    def __init__(self, preference_generator: Any, data_client: PriceSource | None = None,
                 storage_path: Any = Path("data") / "rlaif" / "positions", update_interval_seconds: float = 60,
                 auto_close_after_days: float = 5.0) -> None:
        from workbench.rlaif.preferences import store_file

        self.pg = preference_generator
        if preference_generator is not None:
            self.store: Store = preference_generator.store
        else:
            path = store_file(storage_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.store = Store(path)
        if data_client is not None and not all(callable(getattr(data_client, m, None)) for m in ("quotes", "expiry", "now")):
            raise TypeError(f"data_client {type(data_client).__name__} is not a price source: it needs quotes(symbol, "
                            "start_ms, end_ms), expiry(symbol) and now(). A broker client (the design's Alpaca) cannot "
                            "be reached here; pass ReplayPriceSource(QuoteBook(events)) for recorded quotes, or None")
        self.source = data_client
        if not update_interval_seconds > 0:
            raise ValueError(f"update_interval_seconds must be > 0, got {update_interval_seconds}")
        self.update_interval_seconds = float(update_interval_seconds)
        self.max_hold_ms = int(auto_close_after_days * MS_PER_DAY)

    def track_decision(self, decision: TradingDecision | str, quantity: float | None = None) -> Position:
        """Open a position for a recorded decision (idempotent) of ``quantity`` shares (default: the decision's
        size; P&L is ``return x quantity``). Returns the :class:`Position` (``position.position_id`` is the
        decision id)."""
        d = self.store.decision(decision) if isinstance(decision, str) else decision
        qty = float(d.size if quantity is None else quantity)
        if not (math.isfinite(qty) and qty >= 0):
            raise ValueError(f"quantity must be a finite number of shares >= 0, got {quantity!r}")
        with self.store.transaction() as c:
            c.execute("INSERT OR IGNORE INTO positions VALUES (?,?,?,?,?,?,?,?)",
                      (d.id, "open", int(d.time), int(d.time), d.entry_price if np.isfinite(d.entry_price) else None,
                       d.direction, qty, "[]"))
        return self.position(d.id)

    def position(self, position_id: "Position | str") -> Position:
        """The :class:`Position` of an id (``KeyError`` when it is not tracked)."""
        pid = _position_id(position_id)
        r = self.store.conn.execute("SELECT p.id, d.symbol, p.status, p.opened_at, p.last_update, p.entry_price, "
                                    "p.direction, p.size FROM positions p JOIN decisions d ON d.id = p.id "
                                    "WHERE p.id = ?", (pid,)).fetchone()
        if r is None:
            raise KeyError(f"{pid!r} is not a tracked position (call track_decision first)")
        return Position(*r)

    def _with_quantity(self, out: Outcome) -> Outcome:
        """The outcome with P&L for the position's quantity (which may differ from the decision's size)."""
        r = self.store.conn.execute("SELECT size FROM positions WHERE id = ?", (out.decision_id,)).fetchone()
        if r is None or r[0] is None:
            return out
        return dataclasses.replace(out, pnl=float(out.ret) * float(r[0]))

    def monitor(self, max_updates: int | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
        """Call :meth:`update_positions` every ``update_interval_seconds`` until no position is open (or
        ``max_updates`` calls). Returns how many positions closed. Without a price source it returns at once."""
        closed, n = 0, 0
        while self.source is not None and self.get_open_positions() and (max_updates is None or n < max_updates):
            if n:
                sleep(self.update_interval_seconds)
            closed += self.update_positions()
            n += 1
        return closed

    def track_decisions(self, decisions: list[TradingDecision]) -> None:
        with self.store.transaction() as c:
            c.executemany("INSERT OR IGNORE INTO positions VALUES (?,?,?,?,?,?,?,?)",
                          [(d.id, "open", int(d.time), int(d.time),
                            d.entry_price if np.isfinite(d.entry_price) else None, d.direction, float(d.size), "[]")
                           for d in decisions])

    def update_positions(self) -> int:
        """Close every open position whose exit is known by the source's clock. Returns how many closed."""
        if self.source is None:
            return 0
        open_ids = [r[0] for r in self.store.conn.execute("SELECT id FROM positions WHERE status = 'open'")]
        closed, updates = [], []
        for pid in open_ids:
            d = self.store.decision(pid)
            out, marks = evaluate(d, self.source, self.max_hold_ms)
            if out is None:
                updates.append((int(self.source.now()), json.dumps(marks[-50:]), pid))
            else:
                closed.append(self._with_quantity(out))
        if closed:
            self.store.add_outcomes(closed)
            with self.store.transaction() as c:
                c.executemany("UPDATE positions SET status = 'closed', last_update = ? WHERE id = ?",
                              [(o.exit_time, o.decision_id) for o in closed])
        if updates:
            with self.store.transaction() as c:
                c.executemany("UPDATE positions SET last_update = ?, path = ? WHERE id = ?", updates)
        return len(closed)

    def close_position(self, position_id: "Position | str", exit_price: float | None = None,
                       reason: str = "manual") -> Outcome:
        """Close an open position by hand at ``exit_price`` (e.g. a live fill), with the marks seen so far.

        Without ``exit_price`` it closes at the last known price: the last mark :meth:`update_positions` saw,
        else the source's current closing quote (bid for a long, ask for a short), else the entry price. The
        position is marked closed, so a later :meth:`update_positions` never overwrites this outcome.
        Raises ``KeyError`` for an unknown id and ``ValueError`` for a position already closed or with no price.
        """
        position_id = _position_id(position_id)
        d = self.store.decision(position_id)  # raises KeyError for an unknown id
        row = self.store.conn.execute("SELECT path, last_update, status FROM positions WHERE id = ?",
                                      (position_id,)).fetchone()
        if row is None:
            raise KeyError(f"{position_id!r} is a decision but not a tracked position (call track_decision first)")
        if row[2] != "open":
            raise ValueError(f"position {position_id!r} is already {row[2]}")
        marks = np.asarray(json.loads(row[0]) if row[0] else [], float)
        when = row[1]
        if exit_price is None:
            exit_price, when = self._last_price(d, marks, when)
        if exit_price is None or not np.isfinite(float(exit_price)):
            raise ValueError(f"position {position_id!r}: no exit price given and none known (no marks, no price "
                             "source, no entry price)")
        if self.pg is not None:
            out = self.pg.update_outcome(position_id, float(exit_price), marks, exit_time=when, reason=reason)
        else:
            ret, sharpe, mdd = (path_metrics(d.direction, d.entry_price, marks, float(exit_price)) if d.direction
                                else (0.0, 0.0, 0.0))
            out = Outcome(position_id, int(when if when is not None else d.time), float(exit_price), ret, ret * d.size,
                          sharpe, mdd, reason, len(marks) + 1)
        out = self._with_quantity(out)
        self.store.add_outcomes([out])
        with self.store.transaction() as c:
            c.execute("UPDATE positions SET status = 'closed', last_update = ? WHERE id = ?",
                      (int(out.exit_time) if out.exit_time is not None else when, position_id))
        return out

    def _last_price(self, d: TradingDecision, marks: np.ndarray, when: Any) -> tuple[float | None, Any]:
        if len(marks) and np.isfinite(marks[-1]):
            return float(marks[-1]), when
        if self.source is not None:
            now = int(self.source.now())
            t, b, a = self.source.quotes(d.symbol, d.time, now)
            if len(t):
                px = b if d.direction >= 0 else a
                return float(px[-1]), int(t[-1])
        if np.isfinite(d.entry_price):
            return float(d.entry_price), when
        return None, when

    def get_open_positions(self) -> list[Position]:
        return self._positions("open")

    def get_closed_positions(self) -> list[Position]:
        return self._positions("closed")

    def _positions(self, status: str) -> list[Position]:
        cur = self.store.conn.execute("SELECT p.id, d.symbol, p.status, p.opened_at, p.last_update, p.entry_price, "
                                      "p.direction, p.size FROM positions p JOIN decisions d ON d.id = p.id "
                                      "WHERE p.status = ? ORDER BY p.opened_at, p.id", (status,))
        return [Position(*r) for r in cur]

    def get_stats(self) -> dict[str, Any]:
        """Win rate, average return, open and closed counts, exits by reason (traded positions only)."""
        outs = [o for o in self.store.outcomes().values() if o.reason != "hold"]
        rets = np.array([o.ret for o in outs])
        reasons: dict[str, int] = {}
        for o in outs:
            reasons[o.reason] = reasons.get(o.reason, 0) + 1
        return {"open": len(self.get_open_positions()), "closed": len(self.get_closed_positions()),
                "win_rate": float((rets > 0).mean()) if len(rets) else float("nan"),
                "avg_return": float(rets.mean()) if len(rets) else float("nan"), "exits": reasons}
