"""What the simulator knows about a candidate decision: evaluation only, never a training input of the production
path (notebook 05 trains its main reward model on realised outcomes, as a user with real trades must).

* :func:`expected_values`: the expected P&L per share of each candidate under the simulator's true probability
  that the market ends Up (``fair_true``): BUY ``p - entry``, SELL ``entry - p``, HOLD 0. By optional stopping
  (the fair value is a martingale), stops and take profits change this only by the spread paid on an early exit.
* :func:`realised_label_ceiling`: the best accuracy any model can reach on *realised* preference labels. From the
  true state at the decision (BTC price, true volatility, the market maker's current quote noise), Monte Carlo
  paths of BTC and of the market maker's quotes (the simulator's own rules: a lagged fair value plus AR(1) noise,
  a spread widening into expiry, one-cent ticks) are run through the tracker's exit rules for every candidate;
  for a pair the Bayes classifier picks the candidate more likely to come out ahead by the margin, and its
  expected accuracy is ``max(P, 1 - P)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.special import ndtr

from workbench.data.simulate import _WARMUP_S, MARKET_SECONDS, SimConfig, simulate_path
from workbench.rlaif.store import PreferencePair, TradingDecision


class TruePath:
    """The simulator's one-second BTC path and volatility, regenerated from its configuration (evaluation only)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.price, self.sigma, _ = simulate_path(cfg)

    def index(self, t_ms: int) -> tuple[int, int, int]:
        """``(i, i_open, seconds_left)``: path index of the second ``t_ms``, of its market's open, time left."""
        t_s = int(t_ms) // 1000
        i = int(t_s - (self.cfg.start_unix - _WARMUP_S))
        k = int((t_s - self.cfg.start_unix) // MARKET_SECONDS)
        i0 = _WARMUP_S + k * MARKET_SECONDS
        return i, i0, MARKET_SECONDS - (i - i0)

    def p_up(self, t_ms: int) -> float:
        """The true probability that the market ends Up, given the price and volatility at ``t_ms``."""
        i, i0, left = self.index(t_ms)
        return float(ndtr(math.log(self.price[i] / self.price[i0]) / (self.sigma[i] * math.sqrt(max(left, 1)))))


def expected_values(decisions: Sequence[TradingDecision], path: TruePath) -> dict[str, float]:
    """Expected P&L per share of each decision at the true probability of Up (see the module docstring)."""
    return {d.id: 0.0 if d.action == "HOLD" else float(d.direction * (path.p_up(d.time) - d.entry_price))
            for d in decisions}


def ev_pairs(decisions: Sequence[TradingDecision], ev: dict[str, float], margin: float = 0.01
             ) -> list[tuple[TradingDecision, TradingDecision, float]]:
    """Pairs within each decision point labelled by expected value: ``(better, worse, weight)`` for candidates
    whose EVs differ by at least ``margin``; each (point, action pair) has total weight 1, so a comparison of
    two actions counts once however many texts and sizes carry it."""
    by_point: dict[int, list[TradingDecision]] = {}
    for d in decisions:
        if d.id in ev:
            by_point.setdefault(int(d.metadata["decision_point"]), []).append(d)
    out = []
    for ds in by_point.values():
        groups: dict[tuple[str, str], list[tuple[TradingDecision, TradingDecision]]] = {}
        for i in range(len(ds)):
            for j in range(i + 1, len(ds)):
                a, b = ds[i], ds[j]
                if abs(ev[a.id] - ev[b.id]) < margin:
                    continue
                hi, lo = (a, b) if ev[a.id] > ev[b.id] else (b, a)
                groups.setdefault((hi.action, lo.action), []).append((hi, lo))
        for pairs in groups.values():
            out += [(hi, lo, 1.0 / len(pairs)) for hi, lo in pairs]
    return out


class _Paths:
    """Monte Carlo paths of BTC and of the market maker's quotes from the true state at one decision."""

    def __init__(self, tp: TruePath, t_ms: int, mid_now: float, n_paths: int, rng: np.random.Generator,
                 quote_every_s: int = 6, observable: bool = False) -> None:
        cfg, price, sigma = tp.cfg, tp.price, tp.sigma
        i, i0, left = tp.index(t_ms)  # the decision second, the market's open, seconds to expiry
        self.end_ms = int(t_ms) + left * 1000
        sig, lag = float(sigma[i]), cfg.mm_lag_s
        p_start = math.log(price[i0])
        if observable:  # only the last bar close (6 s before) is in the files: draw the seconds since
            before = math.log(price[i - 6]) + sig * math.sqrt(6 - lag) * rng.standard_normal(n_paths)  # lag s ago
            now = before + sig * math.sqrt(lag) * rng.standard_normal(n_paths)
        else:  # the true state: the price now and `lag` seconds ago
            before, now = np.full(n_paths, math.log(price[i - lag])), np.full(n_paths, math.log(price[i]))
        logp = now[:, None] + np.cumsum(rng.standard_normal((n_paths, left)) * sig, axis=1)  # (n, left)
        self.up_wins = logp[:, -1] >= p_start
        q = np.arange(quote_every_s, left, quote_every_s)  # quote updates, seconds after the decision
        s_lag = q - lag  # the market maker prices from the BTC price `lag` seconds earlier
        lagged = np.empty((n_paths, len(q)))
        fut = s_lag >= 1
        lagged[:, fut] = logp[:, s_lag[fut] - 1]
        lagged[:, ~fut] = now[:, None]  # (quotes are 6 s apart and the lag is 2 s: never needed before now)
        q_left = left - q
        fair = ndtr((lagged - p_start) / (sig * np.sqrt(q_left + lag)))
        fair_now = ndtr((before - p_start) / (sig * math.sqrt(left + lag)))
        noise = np.empty((n_paths, len(q)))
        n = mid_now - fair_now  # the market maker's current quote noise (hidden; per path when observable)
        innov = cfg.mm_noise_sd * math.sqrt(1 - 0.8 ** 2)
        for j in range(len(q)):  # AR(1) per quote update, as the simulator
            n = 0.8 * n + rng.standard_normal(n_paths) * innov
            noise[:, j] = n
        mid = np.clip(fair + noise, 0.015, 0.985)
        hs = cfg.half_spread * (1.0 + 1.5 * (1.0 - q_left / MARKET_SECONDS) ** 4)
        self.bid = np.clip(np.floor((mid - hs) * 100 + 1e-9) / 100, 0.01, 0.98)
        self.ask = np.maximum(np.clip(np.ceil((mid + hs) * 100 - 1e-9) / 100, 0.02, 0.99), self.bid + 0.01)
        self.q_ms = t_ms + q * 1000

    def outcome(self, d: TradingDecision, max_hold_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ret, risk_adjusted)`` per path for decision ``d`` under the tracker's exit rules
        (:func:`workbench.rlaif.tracker.evaluate`)."""
        n = len(self.up_wins)
        if d.action == "HOLD":
            return np.zeros(n), np.zeros(n)
        sgn = d.direction
        horizon = d.time + min(max_hold_ms, int(d.metadata.get("hold_ms", max_hold_ms)))
        px = (self.bid if sgn > 0 else self.ask)[:, self.q_ms <= min(horizon, self.end_ms)]  # the closing side
        m = px.shape[1]
        hit = np.zeros((n, m), dtype=bool)
        if np.isfinite(d.stop_loss):
            hit |= sgn * (px - d.stop_loss) <= 0
        if np.isfinite(d.take_profit):
            hit |= sgn * (px - d.take_profit) >= 0
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), m)  # the first touch (m: none)
        if self.end_ms <= horizon:
            last = np.where(self.up_wins, 1.0, 0.0)  # held to expiry: the settlement value
        else:
            last = px[:, -1] if m else np.full(n, d.entry_price)  # the time limit: the last mark
        touched = px[np.arange(n), np.minimum(first, m - 1)] if m else last
        ret = sgn * (np.where(first < m, touched, last) - d.entry_price)
        # P&L path: 0, the marks before the exit, the exit (after it, flat at the exit: no further drawdown)
        marks = np.where(np.arange(m)[None, :] < first[:, None], sgn * (px - d.entry_price), ret[:, None])
        path = np.concatenate([np.zeros((n, 1)), marks, ret[:, None]], axis=1)
        dd = (np.maximum.accumulate(path, axis=1) - path).max(axis=1)
        return ret, ret / (1.0 + dd)


def realised_label_ceiling(pairs: Sequence[PreferencePair], path: TruePath, *, margin: float, max_hold_ms: int,
                           metric: str = "risk_adjusted", n_paths: int = 400, seed: int = 0, observable: bool = False
                           ) -> dict[str, float | np.ndarray]:
    """Expected accuracy of the Bayes classifier on realised labels (see the module docstring).

    Returns ``ceiling`` (mean over pairs of ``max(P, 1 - P)``, ``P`` the probability that the chosen candidate
    comes out ahead by ``margin`` given that one of the two does), ``per_pair`` (that maximum per pair) and
    ``bayes_hit`` (1 where the Bayes pick is the realised chosen one: its mean should match ``ceiling`` when the
    Monte Carlo reproduces the simulator, a check of the ceiling itself). ``observable=True`` restricts the state
    to what the files show: the BTC price since the last bar close (6 s) is drawn, not known, and with it the
    market maker's current quote noise.
    """
    rng = np.random.default_rng(seed)
    cache: dict[int, _Paths] = {}
    per_pair = []
    for p in pairs:
        t = int(p.chosen.time)
        if t not in cache:
            f = p.chosen.metadata["facts"]
            mid = (float(f["up_bid"]) + float(f["up_ask"])) / 2  # the quote mid at the decision (observable)
            cache[t] = _Paths(path, t, mid, n_paths, rng, observable=observable)
        paths = cache[t]
        a = paths.outcome(p.chosen, max_hold_ms)[1 if metric == "risk_adjusted" else 0]
        b = paths.outcome(p.rejected, max_hold_ms)[1 if metric == "risk_adjusted" else 0]
        win, lose = float(np.mean(a - b >= margin)), float(np.mean(b - a >= margin))
        prob = win / (win + lose) if win + lose > 0 else 0.5
        per_pair.append((max(prob, 1 - prob), 1.0 if prob > 0.5 else 0.5 if prob == 0.5 else 0.0))
    arr = np.asarray(per_pair).reshape(-1, 2)
    return {"ceiling": float(arr[:, 0].mean()) if len(arr) else float("nan"), "per_pair": arr[:, 0],
            "bayes_hit": arr[:, 1], "bayes_on_realised": float(arr[:, 1].mean()) if len(arr) else float("nan")}
