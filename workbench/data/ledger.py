"""Average-cost position accounting for binary (Up/Down) prediction markets.

One :class:`MarketPosition` per market. Each outcome token (Up, Down) is accounted separately with the
average-cost method; the *Up-equivalent* view folds them together: holding ``q`` Down shares bought at
``a`` is economically a short of ``q`` Up shares at ``1 - a`` plus ``q`` dollars of cash, so

* net Up-equivalent inventory  ``n = q_up - q_down``
* Up-equivalent entry price    ``e = (q_up * a_up - q_down * (1 - a_down)) / n``   (undefined when n = 0)
* unrealised P&L at Up mark m   ``q_up (m - a_up) + q_down ((1 - m) - a_down) = n (m - e)`` (n != 0)

Non-trade activity of the Polymarket Data-API export is accounted as follows (all in USDC):

* MERGE of ``s``: ``s`` Up + ``s`` Down are exchanged for ``s`` dollars. Booked as selling both tokens at
  the current mark (Up at m, Down at 1 - m); the split of the dollar between the tokens does not change
  the market's total P&L.
* SPLIT of ``s``: ``s`` dollars become ``s`` Up + ``s`` Down, booked as buying both at (m, 1 - m).
* REDEEM / settlement: after resolution the winning token pays 1 and the losing one 0; every share held
  is closed at that price.
* REWARD: a cash income, realised P&L at once.

Why hand-written: no maintained library does average-cost accounting of two complementary outcome
tokens with merges, splits and redemptions; the arithmetic is short and fully tested
(``tests/test_ledger.py`` checks hand-computed values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

UP = "Up"
DOWN = "Down"
_DUST = 1e-9


class LedgerError(ValueError):
    """An activity record that cannot be accounted (unknown side or outcome, negative size...)."""


def _fill(q: float, avg: float, dq: float, price: float) -> tuple[float, float, float]:
    """Apply a signed fill of ``dq`` shares at ``price`` to a position ``(q, avg)``.

    Returns ``(q_new, avg_new, realised)``. Increasing a position re-averages the cost; reducing it
    realises ``closing * (avg - price)`` on the closed quantity (sign-aware, so a short is covered
    correctly); crossing zero closes the old position and opens the remainder at ``price``.
    """
    if dq == 0.0:
        return q, avg, 0.0
    if q == 0.0 or (q > 0) == (dq > 0):
        q_new = q + dq
        return q_new, (q * avg + dq * price) / q_new, 0.0
    closing = math.copysign(min(abs(dq), abs(q)), dq)  # same sign as dq
    realised = -closing * (price - avg)
    q_new = q + dq
    if abs(q_new) < _DUST:
        return 0.0, 0.0, realised
    if (q_new > 0) != (q > 0):  # crossed zero: remainder opened at the fill price
        return q_new, price, realised
    return q_new, avg, realised


@dataclass
class MarketPosition:
    """Position of one wallet in one binary market.

    Attributes
    ----------
    q_up, q_down
        Shares held of each outcome token (negative only when the history is incomplete, e.g. a
        sale of shares bought before the data starts; Polymarket itself does not allow shorts).
    avg_up, avg_down
        Average cost per share (USDC), 0 when flat.
    realized
        Realised P&L of this market so far (USDC).
    entry_t
        Time (ms) at which the position last went from flat to non-flat; ``None`` while flat.
    settled
        True once the market was settled or redeemed.
    """

    q_up: float = 0.0
    q_down: float = 0.0
    avg_up: float = 0.0
    avg_down: float = 0.0
    realized: float = 0.0
    entry_t: int | None = None
    settled: bool = False
    _history_incomplete: bool = field(default=False, repr=False)

    # ---- views -------------------------------------------------------------------------------
    @property
    def net(self) -> float:
        """Net Up-equivalent inventory ``q_up - q_down`` (shares)."""
        return self.q_up - self.q_down

    @property
    def is_flat(self) -> bool:
        return abs(self.q_up) < _DUST and abs(self.q_down) < _DUST

    @property
    def entry_price(self) -> float:
        """Up-equivalent entry price of the net exposure; NaN when the net is zero."""
        n = self.net
        if abs(n) < _DUST:
            return math.nan
        return (self.q_up * self.avg_up - self.q_down * (1.0 - self.avg_down)) / n

    @property
    def history_incomplete(self) -> bool:
        """True if a holding ever went negative (shares sold that the data never showed bought)."""
        return self._history_incomplete

    def unrealized(self, mark_up: float) -> float:
        """Unrealised P&L (USDC) at Up mark ``mark_up`` (Down marked at ``1 - mark_up``); NaN mark -> NaN
        unless flat."""
        if self.is_flat:
            return 0.0
        if not math.isfinite(mark_up):
            return math.nan
        return self.q_up * (mark_up - self.avg_up) + self.q_down * ((1.0 - mark_up) - self.avg_down)

    # ---- activity ----------------------------------------------------------------------------
    def _touch(self, t: int, was_flat: bool) -> None:
        if self.q_up < -_DUST or self.q_down < -_DUST:
            self._history_incomplete = True
        if self.is_flat:
            self.q_up = self.q_down = 0.0
            self.avg_up = self.avg_down = 0.0
            self.entry_t = None
        elif was_flat:
            self.entry_t = t

    def _fill_token(self, outcome: str, dq: float, price: float) -> float:
        if outcome == UP:
            self.q_up, self.avg_up, r = _fill(self.q_up, self.avg_up, dq, price)
        elif outcome == DOWN:
            self.q_down, self.avg_down, r = _fill(self.q_down, self.avg_down, dq, price)
        else:
            raise LedgerError(f"outcome must be 'Up' or 'Down', got {outcome!r}")
        return r

    def trade(self, t: int, outcome: str, side: str, size: float, price: float) -> float:
        """Book a fill; returns the realised P&L of this fill (USDC)."""
        if not (size > 0 and math.isfinite(size)):
            raise LedgerError(f"trade size must be positive and finite, got {size!r}")
        if side == "BUY":
            dq = size
        elif side == "SELL":
            dq = -size
        else:
            raise LedgerError(f"side must be 'BUY' or 'SELL', got {side!r}")
        was_flat = self.is_flat
        r = self._fill_token(outcome, dq, price)
        self.realized += r
        self._touch(t, was_flat)
        return r

    def merge(self, t: int, size: float, mark_up: float) -> float:
        """Exchange ``size`` Up + ``size`` Down for ``size`` USDC; returns realised P&L."""
        m = mark_up if math.isfinite(mark_up) else 0.5
        was_flat = self.is_flat
        r = self._fill_token(UP, -size, m) + self._fill_token(DOWN, -size, 1.0 - m)
        self.realized += r
        self._touch(t, was_flat)
        return r

    def split(self, t: int, size: float, mark_up: float) -> float:
        """Exchange ``size`` USDC for ``size`` Up + ``size`` Down; returns realised P&L (normally 0)."""
        m = mark_up if math.isfinite(mark_up) else 0.5
        was_flat = self.is_flat
        r = self._fill_token(UP, size, m) + self._fill_token(DOWN, size, 1.0 - m)
        self.realized += r
        self._touch(t, was_flat)
        return r

    def settle(self, t: int, winner: str) -> float:
        """Close every share at the settlement price (winner 1, loser 0); returns realised P&L."""
        if winner not in (UP, DOWN):
            raise LedgerError(f"winner must be 'Up' or 'Down', got {winner!r}")
        was_flat = self.is_flat
        r = self._fill_token(UP, -self.q_up, 1.0 if winner == UP else 0.0)
        r += self._fill_token(DOWN, -self.q_down, 1.0 if winner == DOWN else 0.0)
        self.realized += r
        self.settled = True
        self._touch(t, was_flat)
        return r

    def reward(self, t: int, usdc: float) -> float:
        """Book a cash reward (liquidity rewards, rebates); returns it as realised P&L."""
        self.realized += usdc
        return usdc

    def infer_redeem_winner(self, payout: float) -> str:
        """Guess the winning token of a REDEEM from its payout: the holding closest to the payout."""
        return UP if abs(self.q_up - payout) <= abs(self.q_down - payout) else DOWN
