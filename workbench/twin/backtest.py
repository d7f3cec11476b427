"""Replay a policy on recorded markets: it trades against the quotes that were there, with its own position.

A policy sees, at each step, the market part of the state (precomputed, causal) and an agent part
rebuilt from **its own** position (unrealised P&L, inventory, time since entry...), never the recorded
trader's. Orders execute at the Up quote in force ``latency_ms`` after the step's start (ask to add Up
exposure, bid to remove it; the Down token at the complement), selling a held token before buying the
other one, as the recorded trader does. Positions settle at each market's end with its winner.

Several agents run side by side (a batch: e.g. one twin per target return), each with its own book.
The cost model is the quoted spread only: no fees and no market impact (the sizes are small against
the simulated book; say so when reporting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from workbench.data.ledger import DOWN, UP, MarketPosition
from workbench.twin.steps import AGENT_FEATURES, ExitLevels, Normalizer, agent_state

_DIRECTION = np.array([1, 1, 0, -1, -1])  # per class id in ACTIONS order


class Policy(Protocol):
    """What the replay needs from a decision maker acting for ``n`` agents at once."""

    def reset(self, n_agents: int) -> None: ...

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        """``states (n, S)`` normalised -> class ids ``(n,)``."""
        ...

    def observe(self, rewards: np.ndarray) -> None:
        """Realised step returns ``(n,)`` (fraction of the notional) after acting."""
        ...


@dataclass
class ExecutionModel:
    """Order sizes per action class (shares, Up-equivalent) and the inventory cap."""

    sizes: dict[int, float]
    max_inventory: float
    latency_ms: int = 500

    @classmethod
    def fit(cls, flow: np.ndarray, actions: np.ndarray, latency_ms: int = 500) -> "ExecutionModel":
        """Median ``|flow|`` of each traded class and the largest ``|cumulative|`` inventory proxy, from the
        training period: the twin trades the trader's typical sizes."""
        sizes = {}
        for k in (0, 1, 3, 4):
            sel = np.abs(flow[actions == k])
            sizes[k] = float(np.median(sel)) if len(sel) else 0.0
        sizes[2] = 0.0
        return cls(sizes, max_inventory=float(max(sizes.values()) * 4), latency_ms=latency_ms)


class QuoteBook:
    """Up quotes per market for execution and marking, and each market's winner and end."""

    def __init__(self, events: pd.DataFrame) -> None:
        q = events[events["type"] == "price_change"]
        down = (q["outcome"] == DOWN).to_numpy()
        bid = np.where(down, 1 - q["ask"].to_numpy(), q["bid"].to_numpy())
        ask = np.where(down, 1 - q["bid"].to_numpy(), q["ask"].to_numpy())
        frame = pd.DataFrame({"slug": q["slug"].to_numpy(dtype=object), "t": q["t"].to_numpy(), "bid": bid, "ask": ask})
        self._q = {s: (g["t"].to_numpy(), g["bid"].to_numpy(), g["ask"].to_numpy())
                   for s, g in frame.groupby("slug", sort=False)}
        res = events[events["type"] == "resolution"]
        self.winner = dict(zip(res["slug"], res["outcome"]))
        ends = events.groupby("slug")["market_end"].first()
        self.end = {s: int(e) for s, e in ends.items() if pd.notna(e)}

    def mid_range(self, slug: str, start_ms: int, end_ms: int) -> tuple[float, float]:
        """Lowest and highest Up mid quoted in ``[start_ms, end_ms)`` (NaNs if none)."""
        if slug not in self._q:
            return math.nan, math.nan
        t, b, a = self._q[slug]
        sel = (t >= start_ms) & (t < end_ms)
        if not sel.any():
            return math.nan, math.nan
        mid = (b[sel] + a[sel]) / 2
        return float(mid.min()), float(mid.max())

    def quote(self, slug: str, t_ms: int, strict: bool = False) -> tuple[float, float]:
        """(bid, ask) of Up in force at ``t_ms`` (``strict``: strictly before); NaNs if none yet."""
        if slug not in self._q:
            return math.nan, math.nan
        t, b, a = self._q[slug]
        j = int(np.searchsorted(t, t_ms, side="left" if strict else "right")) - 1
        return (float(b[j]), float(a[j])) if j >= 0 else (math.nan, math.nan)


@dataclass
class BacktestResult:
    """Per agent: equity after each step (USDC), actions, fills; plus summary metrics."""

    names: list[str]
    index: pd.DatetimeIndex
    equity: np.ndarray  # (n_steps, n_agents)
    actions: np.ndarray  # (n_steps, n_agents)
    fills: pd.DataFrame
    notional: float
    slugs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def summary(self) -> pd.DataFrame:
        """P&L, return on notional, Sharpe of per-market P&L (not annualised), win rate, drawdown, fills."""
        rows = {}
        for j, name in enumerate(self.names):
            rows[name] = summarize_equity(self.equity[:, j], self.slugs, self.notional)
            rows[name]["fills"] = int((self.fills["agent"] == name).sum()) if len(self.fills) else 0
            rows[name]["trade_steps"] = float((self.actions[:, j] != 2).mean())
        return pd.DataFrame(rows).T


def summarize_equity(equity: np.ndarray, slugs: np.ndarray, notional: float) -> dict[str, float]:
    """Metrics of an equity path (USDC after each step) grouped by market for Sharpe and win rate."""
    eq = np.asarray(equity, dtype=np.float64)
    step_pnl = np.diff(np.r_[0.0, eq])
    per_market = pd.Series(step_pnl).groupby(pd.Series(slugs).to_numpy()).sum()
    traded = per_market[per_market != 0]
    sd = per_market.std(ddof=1)
    peak = np.maximum.accumulate(np.r_[0.0, eq])
    return {"pnl": float(eq[-1]) if len(eq) else 0.0, "return_on_notional": float(eq[-1] / notional) if len(eq) else 0.0,
            "sharpe_per_market": float(per_market.mean() / sd) if sd > 0 else 0.0,
            "win_rate": float((traded > 0).mean()) if len(traded) else math.nan,
            "max_drawdown": float((peak - np.r_[0.0, eq]).max()), "markets": int(len(per_market))}


def _legs(pos: MarketPosition, qty: float, bid: float, ask: float) -> list[tuple[str, str, float, float]]:
    """Fills for a signed Up-equivalent order: sell the held token first, then buy the other one."""
    legs = []
    if qty > 0:
        from_down = min(qty, max(pos.q_down, 0.0))
        if from_down > 0:
            legs.append((DOWN, "SELL", from_down, 1 - ask))
        if qty - from_down > 0:
            legs.append((UP, "BUY", qty - from_down, ask))
    elif qty < 0:
        from_up = min(-qty, max(pos.q_up, 0.0))
        if from_up > 0:
            legs.append((UP, "SELL", from_up, bid))
        if -qty - from_up > 0:
            legs.append((DOWN, "BUY", -qty - from_up, 1 - bid))
    return legs


def replay(steps: pd.DataFrame, policy: Policy, names: Sequence[str], book: QuoteBook, execution: ExecutionModel,
           normalizer: Normalizer, *, notional: float = 500.0, step_ms: int = 60_000,
           levels: ExitLevels | None = None) -> BacktestResult:
    """Run ``policy`` for ``len(names)`` agents over consecutive ``steps`` (a slice of the step table).

    Parameters
    ----------
    steps : DataFrame from :func:`workbench.twin.steps.build_steps` (market features are used as they
        are; the agent features are recomputed for each agent).
    policy : Policy acting for all agents at once.
    names : agent names (e.g. ``"twin RTG=+2"``).
    book, execution, normalizer : quotes and winners, order sizes, training normalisation (its features are
        the state; those of :data:`AGENT_FEATURES` are recomputed from each agent's own book).
    notional : USDC; rewards are fractions of it.
    levels : take-profit / stop-loss levels of the agent features (as in the step table).
    """
    levels = levels or ExitLevels()
    n = len(names)
    policy.reset(n)
    starts = (steps.index.as_unit("ms").asi8).astype(np.int64)
    slugs = steps["slug"].to_numpy(dtype=object)
    up_mid = steps["up_mid"].to_numpy(dtype=np.float64)
    base = normalizer.transform(steps)  # (n_steps, S): market part as recorded, agent part overwritten below
    agent_names = [c for c in normalizer.features if c in AGENT_FEATURES]
    agent_cols = [normalizer.features.index(c) for c in agent_names]
    mu = np.array([normalizer.mean[c] for c in agent_names])
    sd = np.array([normalizer.std[c] for c in agent_names])
    books: list[dict[str, MarketPosition]] = [{} for _ in range(n)]
    orders: list[dict[str, int]] = [{} for _ in range(n)]
    realized = np.zeros(n)
    equity = np.zeros((len(steps), n))
    actions = np.full((len(steps), n), 2, dtype=np.int64)
    fills: list[dict[str, object]] = []
    for i in range(len(steps)):
        s, slug = int(starts[i]), slugs[i]
        # settle every market that ended by now (the winner is public at the end)
        for j in range(n):
            for sl in [k for k, p in books[j].items() if book.end.get(k, np.inf) <= s and not p.settled]:
                realized[j] += books[j][sl].settle(book.end[sl], book.winner[sl])
        mark = up_mid[i] if np.isfinite(up_mid[i]) else 0.5
        pos = [books[j].get(slug, MarketPosition()) for j in range(n)]
        st = agent_state(np.array([p.q_up for p in pos]), np.array([p.q_down for p in pos]),
                         np.array([p.avg_up if p.q_up else 0.0 for p in pos]),
                         np.array([p.avg_down if p.q_down else 0.0 for p in pos]),
                         np.array([np.nan if p.entry_t is None else float(p.entry_t) for p in pos]),
                         np.array([orders[j].get(slug, 0) for j in range(n)]), np.full(n, mark), np.full(n, s),
                         notional, levels)
        agent = np.stack([st[c] for c in agent_names], axis=1) if agent_names else np.zeros((n, 0))
        x = np.repeat(base[i: i + 1], n, axis=0)
        x[:, agent_cols] = np.nan_to_num(np.clip((agent - mu) / sd, -10, 10)).astype(np.float32)
        act = np.asarray(policy.act(i, x), dtype=np.int64)
        actions[i] = act
        bid, ask = book.quote(slug, s + execution.latency_ms)
        if np.isfinite(bid) and np.isfinite(ask):
            for j in range(n):
                size = execution.sizes.get(int(act[j]), 0.0) * _DIRECTION[act[j]]
                if not size:
                    continue
                p = books[j].setdefault(slug, MarketPosition())
                qty = float(np.clip(p.net + size, -execution.max_inventory, execution.max_inventory) - p.net)
                if round(qty, 2):
                    orders[j][slug] = orders[j].get(slug, 0) + 1
                for outcome, side, sz, px in _legs(p, round(qty, 2), bid, ask):
                    if sz <= 0:
                        continue
                    realized[j] += p.trade(s + execution.latency_ms, outcome, side, sz, px)
                    fills.append({"agent": names[j], "t": s + execution.latency_ms, "slug": slug, "outcome": outcome,
                                  "side": side, "size": sz, "price": px})
        # equity at the step's end: settle markets ending inside the step, mark the rest strictly before it
        end = s + step_ms
        for j in range(n):
            for sl in [k for k, p in books[j].items() if book.end.get(k, np.inf) <= end and not p.settled]:
                realized[j] += books[j][sl].settle(book.end[sl], book.winner[sl])
            b_end, a_end = book.quote(slug, end, strict=True)
            m_end = (b_end + a_end) / 2 if np.isfinite(b_end) else mark
            equity[i, j] = realized[j] + sum(p.unrealized(m_end if sl == slug else 0.5)
                                             for sl, p in books[j].items() if not p.settled)
        policy.observe((equity[i] - (equity[i - 1] if i else np.zeros(n))) / notional)
    return BacktestResult(list(names), steps.index, equity, actions, pd.DataFrame(fills), notional, slugs)


class SequencePolicy:
    """A fixed sequence of class ids, one per step (e.g. the recorded trader's, played open loop)."""

    def __init__(self, actions: Sequence[int] | np.ndarray) -> None:
        self.actions = np.asarray(actions, dtype=np.int64)

    def reset(self, n_agents: int) -> None:
        self.n = n_agents

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        return np.full(len(states), self.actions[step % len(self.actions)])

    def observe(self, rewards: np.ndarray) -> None:
        pass


class ConstantPolicy:
    """Always the same class (HOLD by default): the do-nothing baseline."""

    def __init__(self, action: int = 2) -> None:
        self.action = action

    def reset(self, n_agents: int) -> None:
        self.n = n_agents

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        return np.full(len(states), self.action)

    def observe(self, rewards: np.ndarray) -> None:
        pass


class ClassifierPolicy:
    """A fitted scikit-learn-style classifier on the normalised state (behaviour cloning), greedy."""

    def __init__(self, model: object, classes: np.ndarray | None = None) -> None:
        self.model = model
        self.classes = classes

    def reset(self, n_agents: int) -> None:
        pass

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(states), dtype=np.int64)  # type: ignore[attr-defined]

    def observe(self, rewards: np.ndarray) -> None:
        pass
