"""A gymnasium environment of the recorded Up/Down markets, with the replay's rules (``workbench.twin.backtest``).

One episode is one market (``markets_per_episode`` consecutive markets if more) of one period (train / val /
test, notebook 04's split). At each step the agent sees the twin's state: the market part as recorded (causal:
the step table's features at the step's start, Up quotes strictly before it) and the agent part rebuilt from
**its own** position (unrealised P&L, inventory, time since entry...), normalised with the training period's
statistics. It picks one of the five seed classes; the order size is the trader's median size of that class
(training period), the inventory is capped (``AgentSetup``: the trader's training maximum), and orders fill at the Up quote in force
``latency_ms`` after the step's start (ask to add Up exposure, bid to remove it; Down at the complement).
Depth is not in the files, so fills are not limited by it (the sizes are small against the simulated book).
The reward is the change in marked-to-market equity over the step (USDC x ``reward_scale``): a buy marked at
the mid pays half the spread at once; a market is settled with its winner at its end.

Everything but the position is precomputed per period (:class:`EnvData`), so a step is a few array reads and
one position update; the per-market P&L of an action sequence equals :func:`workbench.twin.backtest.replay`'s
(tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from workbench.data.ledger import DOWN, UP, MarketPosition
from workbench.twin.backtest import _DIRECTION, ExecutionModel, QuoteBook, _legs
from workbench.twin.steps import AGENT_FEATURES, ExitLevels, Normalizer, agent_state

ACTION_NAMES = ("STRONG_BUY", "BUY", "HOLD", "SELL", "STRONG_SELL")


@dataclass
class EnvData:
    """Precomputed arrays of one period: ``base (n, S)`` normalised states (agent part overwritten per step),
    step starts (ms), slugs, Up mid at the start and strictly before the step's end, the quote orders fill at,
    market ends and winners, and the market segments ``(first row, last row + 1)`` in time order."""

    base: np.ndarray
    starts: np.ndarray
    slugs: np.ndarray
    mark: np.ndarray
    mark_end: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    market_end: np.ndarray
    winner: np.ndarray
    segments: np.ndarray
    agent_cols: np.ndarray
    agent_names: tuple[str, ...]
    agent_mu: np.ndarray
    agent_sd: np.ndarray
    execution: ExecutionModel
    levels: ExitLevels
    notional: float
    step_ms: int
    index: pd.DatetimeIndex

    @classmethod
    def build(cls, steps: pd.DataFrame, normalizer: Normalizer, book: QuoteBook, execution: ExecutionModel, *,
              levels: ExitLevels | None = None, notional: float = 500.0, step_ms: int = 60_000) -> "EnvData":
        """The arrays of the rows of ``steps`` (a period of the step table, in time order)."""
        starts = steps.index.as_unit("ms").asi8.astype(np.int64)
        slugs = steps["slug"].to_numpy(dtype=object)
        up_mid = steps["up_mid"].to_numpy(dtype=np.float64)
        lat = execution.latency_ms
        q = np.array([book.quote(s, int(t) + lat) for s, t in zip(slugs, starts)], dtype=np.float64).reshape(-1, 2)
        qe = np.array([book.quote(s, int(t) + step_ms, strict=True) for s, t in zip(slugs, starts)],
                      dtype=np.float64).reshape(-1, 2)
        mark = np.where(np.isfinite(up_mid), up_mid, 0.5)
        mark_end = np.where(np.isfinite(qe[:, 0]), qe.mean(axis=1), mark)
        ends = np.array([book.end.get(s, np.iinfo(np.int64).max) for s in slugs], dtype=np.int64)
        winner = np.array([book.winner.get(s, "") for s in slugs], dtype=object)
        change = np.flatnonzero(np.r_[True, slugs[1:] != slugs[:-1]])
        segments = np.stack([change, np.r_[change[1:], len(slugs)]], axis=1) if len(slugs) else np.zeros((0, 2), int)
        names = tuple(c for c in normalizer.features if c in AGENT_FEATURES)
        return cls(base=normalizer.transform(steps), starts=starts, slugs=slugs, mark=mark, mark_end=mark_end,
                   bid=q[:, 0], ask=q[:, 1], market_end=ends, winner=winner, segments=segments,
                   agent_cols=np.array([normalizer.features.index(c) for c in names], dtype=np.int64),
                   agent_names=names, agent_mu=np.array([normalizer.mean[c] for c in names]),
                   agent_sd=np.array([normalizer.std[c] for c in names]), execution=execution,
                   levels=levels or ExitLevels(), notional=float(notional), step_ms=int(step_ms), index=steps.index)

    @property
    def n_markets(self) -> int:
        return int(len(self.segments))

    @property
    def obs_dim(self) -> int:
        return int(self.base.shape[1])


class MarketEnv(gym.Env):
    """The Up/Down markets of one period as a gymnasium environment (see the module's notes).

    Parameters
    ----------
    data : the period's :class:`EnvData`.
    markets_per_episode : consecutive markets in one episode (the position of each settles at its end).
    reward_scale : multiplier of the USDC reward (default ``1 / largest order size``: one cent per share of
        the largest order is 0.01).
    sequential : reset walks the markets in order (evaluation) instead of drawing one at random.
    """

    metadata = {"render_modes": []}

    def __init__(self, data: EnvData, markets_per_episode: int = 1, reward_scale: float | None = None,
                 sequential: bool = False) -> None:
        super().__init__()
        if data.n_markets == 0:
            raise ValueError("no market in this period")
        self.data = data
        self.k = max(1, min(int(markets_per_episode), data.n_markets))
        biggest = max(data.execution.sizes.values()) or 1.0
        self.reward_scale = float(reward_scale) if reward_scale is not None else 1.0 / biggest
        self.sequential = sequential
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(data.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(ACTION_NAMES))
        self._next_market = 0
        self.i = self.stop = 0
        self.pos = MarketPosition()
        self.slug = ""
        self.orders = 0
        self.realized = self.equity = 0.0

    # ---- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        d = self.data
        if options and "market" in options:
            m = int(options["market"])
        elif self.sequential:
            m = self._next_market % d.n_markets
        else:
            m = int(self.np_random.integers(0, d.n_markets - self.k + 1))
        self._next_market = m + self.k
        m_last = min(m + self.k, d.n_markets) - 1
        self.i, self.stop = int(d.segments[m, 0]), int(d.segments[m_last, 1])
        self._new_market()
        self.realized = self.equity = 0.0
        return self._obs(), {"market": d.slugs[self.i], "step": self.i}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        d, i = self.data, self.i
        a = int(action)
        if not 0 <= a < len(ACTION_NAMES):
            raise ValueError(f"action {action!r} outside 0..4")
        s = int(d.starts[i])
        size = d.execution.sizes.get(a, 0.0) * _DIRECTION[a]
        bid, ask = d.bid[i], d.ask[i]
        if size and np.isfinite(bid) and np.isfinite(ask) and not self.pos.settled:
            p, cap = self.pos, d.execution.max_inventory
            qty = round(float(np.clip(p.net + size, -cap, cap) - p.net), 2)
            if qty:
                self.orders += 1
            for outcome, side, sz, px in _legs(p, qty, bid, ask):
                if sz > 0:
                    self.realized += p.trade(s + d.execution.latency_ms, outcome, side, sz, px)
        end = s + d.step_ms
        if not self.pos.settled and d.market_end[i] <= end and d.winner[i] in (UP, DOWN):
            self.realized += self.pos.settle(int(d.market_end[i]), str(d.winner[i]))
        equity = self.realized + (0.0 if self.pos.settled else self.pos.unrealized(float(d.mark_end[i])))
        reward = (equity - self.equity) * self.reward_scale
        self.equity = equity
        info = {"pnl": equity, "market": d.slugs[i], "step": i}
        self.i += 1
        terminated = self.i >= self.stop
        if not terminated and d.slugs[self.i] != self.slug:  # the next market of a multi-market episode
            self._new_market()
        return (np.zeros(d.obs_dim, np.float32) if terminated else self._obs()), float(reward), terminated, False, info

    # ---- internals -------------------------------------------------------------------------------
    def _new_market(self) -> None:
        self.pos = MarketPosition()
        self.slug = self.data.slugs[self.i]
        self.orders = 0

    def _obs(self) -> np.ndarray:
        d, i, p = self.data, self.i, self.pos
        x = d.base[i].copy()
        if len(d.agent_cols):
            st = agent_state(np.array([p.q_up]), np.array([p.q_down]), np.array([p.avg_up if p.q_up else 0.0]),
                             np.array([p.avg_down if p.q_down else 0.0]),
                             np.array([np.nan if p.entry_t is None else float(p.entry_t)]), np.array([self.orders]),
                             np.array([d.mark[i]]), np.array([d.starts[i]]), d.notional, d.levels)
            agent = np.array([st[c][0] for c in d.agent_names])
            x[d.agent_cols] = np.nan_to_num(np.clip((agent - d.agent_mu) / d.agent_sd, -10, 10))
        return x.astype(np.float32)


def run_actions(env: MarketEnv, market: int, actions: np.ndarray) -> np.ndarray:
    """Equity (USDC) after each step of ``market`` under a fixed action sequence (for tests and replays)."""
    env.reset(options={"market": market})
    out = []
    for a in actions:
        _, _, done, _, info = env.step(int(a))
        out.append(info["pnl"])
        if done:
            break
    return np.asarray(out)
