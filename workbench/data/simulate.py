"""A Polymarket "Up or Down" 15-minute market simulator (BTC, and ETH, SOL, XRP, DOGE) with a hidden trader.

The real per-wallet files this project is designed for are private, so the default data is simulated,
written in exactly the input format::

    data/raw/merged_trades/<address>/<asset>-updown-15m-<start_unix>_prices.json
    {"slug": "<asset>-updown-15m-<start_unix>", "prices": [{"t": <ms>, "type": ..., ...}, ...]}

``SimConfig.assets`` names the underlyings (default ``("btc",)``); each has its own path with the price level
and volatility regime of :data:`ASSET_PROFILES`, its own markets over the same 15-minute slots, and the trader
trades all of them with the same hidden policy (inventory is per market).

Event types written (``t`` is always the UTC millisecond at which the record became observable):

``price_change``      the market maker's Up quote: ``outcome`` ("Up"), ``bid``, ``ask``, ``price`` (mid).
                      The Down book mirrors it (Down bid = 1 - Up ask).
``last_trade_price``  a fill by another wallet: ``outcome``, ``side``, ``price``, ``size``, ``usdc``.
``trade``             a fill of the studied wallet: ``outcome``, ``side``, ``price``, ``size``, ``usdc``.
``bar``               a one-minute BTC/USD OHLCV bar: ``open``, ``high``, ``low``, ``close``, ``volume``
                      (BTC), ``start`` (ms). Its ``t`` is the last millisecond of the minute, so a bar is
                      never visible before its close.
``resolution``        at the market's end: ``outcome`` (the winner), ``price_start``, ``price_end``.

The model
---------
* **BTC path** at 1-second resolution: a two-state Markov regime (calm / turbulent), an AR(1)
  log-volatility, an intraday and weekend seasonality, Student-t(4) shocks and Poisson jumps. The
  long-run annualised volatility is ``annual_vol`` (default 50%, within BTC's usual 35-80%).
* **Markets** every 15 minutes; Up wins if the price at the end is >= the price at the start (the
  Polymarket rule). The fair value of Up at time t is ``Phi(ln(P_t / P_start) / (sigma_t sqrt(T - t)))``.
* **Market maker** quotes the Up token on a 1-cent grid from a *lagged* BTC price (``mm_lag_s``) plus
  AR(1) noise, with a spread that widens near expiry. Background wallets trade against the quotes.
* **The studied wallet** decides every ``decision_interval_s`` seconds with a hidden ordered-logit
  policy over five actions (STRONG_BUY ... STRONG_SELL in Up-equivalent exposure) driven by the
  mispricing it sees (true fair value minus the stale quote), BTC momentum, its inventory, its
  unrealised P&L per share (take profit / stop loss) and the time to expiry, sizes with conviction and
  buys or sells both Up and Down (selling a held token first, else buying the other one).

The simulator also writes, to ``data/raw/simulator_truth/<address>/`` (a separate folder that
training never reads), the policy's true action probabilities at every decision and a per-market
summary, so that later notebooks can measure how well a twin recovers the policy.

Same configuration and seed give the same bytes: every market draws from its own
``numpy.random.default_rng([seed, stream, market_index, asset])`` stream (no asset word for BTC).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from workbench import atomic
from workbench.data.ledger import DOWN, UP, MarketPosition

#: The five action classes, in the design's order. Index = class id used across the project.
ACTIONS: tuple[str, ...] = ("STRONG_BUY", "BUY", "HOLD", "SELL", "STRONG_SELL")
MARKET_SECONDS = 900
SECONDS_PER_YEAR = 365.0 * 86400.0
_WARMUP_S = 3600  # path simulated before the first market, so momentum and bars have history


@dataclass(frozen=True)
class TraderPolicy:
    """Parameters of the hidden trader. The ordered-logit score of an Up-equivalent buy is

    ``s = beta_edge * edge / 0.02 + beta_momentum * mom_z - beta_inventory * inventory / max_inventory
    + exit_push * (take-profit or stop-loss trigger, towards flat)``, damped by ``late_damp`` in the
    last ``late_window_s`` seconds; ``P(class <= k) = expit(thresholds[k] - s)`` over
    (STRONG_SELL, SELL, HOLD, BUY, STRONG_BUY).
    """

    decision_interval_s: int = 60  # seconds between decisions within a market
    first_decision_s: int = 5  # first decision, seconds after the market opens (just after a bar closes)
    min_time_left_s: int = 60  # no decision with less time to expiry than this
    participation: float = 0.9  # probability the trader is active in a given market
    beta_edge: float = 0.5  # weight of the mispricing, per 2 cents
    beta_momentum: float = 0.35  # weight of the 60 s BTC momentum z-score
    beta_inventory: float = 2.0  # inventory aversion (per max_inventory)
    exit_push: float = 2.5  # push towards flat when take-profit or stop-loss is hit
    take_profit: float = 0.12  # unrealised P&L per share (Up-equivalent price units)
    stop_loss: float = 0.15  # unrealised loss per share that triggers a cut
    late_window_s: int = 180  # last seconds before expiry in which the trader is reluctant
    late_damp: float = 0.35  # multiplier of the score in that window
    thresholds: tuple[float, float, float, float] = (-3.6, -2.0, 2.0, 3.6)
    base_size: float = 40.0  # shares of a plain BUY/SELL
    strong_mult: float = 2.5  # STRONG_* size multiple
    size_conviction: float = 0.4  # size grows by this fraction per unit of |score|
    size_noise: float = 0.25  # log-normal size noise (sd of log)
    max_inventory: float = 600.0  # cap on |net Up-equivalent shares|
    latency_ms: tuple[int, int] = (200, 1200)  # decision-to-fill delay range


#: Per-underlying path settings (price level and volatility regime) that replace :class:`SimConfig`'s own, which
#: are BTC's. Long-run annualised volatilities follow the usual ordering of these coins (BTC < ETH < SOL, XRP,
#: DOGE); the stream number keeps each asset's random draws apart (BTC keeps the streams it always had).
ASSET_PROFILES: dict[str, dict[str, Any]] = {
    "btc": {"stream": 0},
    "eth": {"stream": 1, "s0": 3_400.0, "annual_vol": 0.65, "regime_mult": (0.7, 1.8), "jumps_per_day": 5.0,
            "jump_sd": 0.004},
    "sol": {"stream": 2, "s0": 180.0, "annual_vol": 0.85, "regime_mult": (0.7, 1.9), "jumps_per_day": 6.0,
            "jump_sd": 0.005, "logvol_sd": 0.40},
    "xrp": {"stream": 3, "s0": 2.30, "annual_vol": 0.80, "regime_mult": (0.65, 2.0), "jumps_per_day": 6.0,
            "jump_sd": 0.006, "logvol_sd": 0.45},
    "doge": {"stream": 4, "s0": 0.32, "annual_vol": 0.95, "regime_mult": (0.65, 2.1), "jumps_per_day": 7.0,
             "jump_sd": 0.007, "logvol_sd": 0.45},
}


def asset_config(cfg: "SimConfig", asset: str) -> "SimConfig":
    """The configuration of one underlying of ``cfg``: its :data:`ASSET_PROFILES` settings over ``cfg``'s (for
    ``"btc"``, ``cfg``'s own path settings), with ``assets=(asset,)``. Wallet, seed, period and trader are
    shared."""
    over = {k: v for k, v in ASSET_PROFILES[asset].items() if k != "stream"}
    return replace(cfg, assets=(asset,), **over)


def _stream(cfg: "SimConfig") -> list[int]:
    """Extra seed words of ``cfg``'s primary asset: none for BTC, so BTC's draws never changed."""
    code = int(ASSET_PROFILES[cfg.assets[0]]["stream"])
    return [code] if code else []


def price_decimals(s0: float) -> int:
    """Decimals at which an underlying's prices are written: at least two and at least six significant digits
    (BTC 95,000 -> 2, ETH 3,400 -> 2, SOL 180 -> 3, XRP 2.3 -> 5, DOGE 0.32 -> 6)."""
    return max(2, 5 - int(math.floor(math.log10(abs(s0)))))


@dataclass(frozen=True)
class SimConfig:
    """Simulation parameters. ``days`` may be fractional (one market every 15 minutes)."""

    days: float = 30.0  # length of the simulated period
    seed: int = 7  # master seed
    start: str = "2026-01-05T00:00:00+00:00"  # opening time of the first market (UTC)
    s0: float = 95_000.0  # BTC/USD at the start of the warm-up
    annual_vol: float = 0.50  # long-run annualised volatility
    regime_mult: tuple[float, float] = (0.75, 1.7)  # vol multiple in calm / turbulent regime
    regime_leave_per_hour: tuple[float, float] = (0.04, 0.20)  # P(leave calm), P(leave turbulent)
    logvol_phi: float = 0.99  # AR(1) coefficient of log-vol per minute
    logvol_sd: float = 0.35  # stationary sd of log-vol
    intraday_amp: float = 0.3  # amplitude of the intraday vol cycle (peak 15:00 UTC)
    weekend_mult: float = 0.75  # vol multiple on Saturdays and Sundays
    t_df: float = 4.0  # Student-t degrees of freedom of the 1 s shocks
    jumps_per_day: float = 4.0  # Poisson jump intensity
    jump_sd: float = 0.003  # jump size sd (log)
    quote_interval_s: float = 6.0  # mean seconds between market-maker quote updates
    mm_lag_s: int = 2  # the market maker prices from the BTC price this many seconds ago
    mm_noise_sd: float = 0.015  # sd of the AR(1) quote noise (probability units)
    half_spread: float = 0.01  # base half spread, widened near expiry
    background_trades: float = 30.0  # mean fills by other wallets per market
    informed_share: float = 0.35  # share of background fills that trade towards the fair value
    trader: TraderPolicy = field(default_factory=TraderPolicy)
    assets: tuple[str, ...] = ("btc",)  # underlyings simulated (keys of ASSET_PROFILES); the first is the primary

    def __post_init__(self) -> None:
        bad = [a for a in self.assets if a not in ASSET_PROFILES]
        if not self.assets or bad or len(set(self.assets)) != len(self.assets):
            raise ValueError(f"SimConfig.assets must be distinct names from {sorted(ASSET_PROFILES)}, "
                             f"got {list(self.assets)!r}")

    @property
    def n_markets(self) -> int:
        return int(round(self.days * 86400 / MARKET_SECONDS))

    @property
    def start_unix(self) -> int:
        ts = pd.Timestamp(self.start)
        if ts.tzinfo is None:
            raise ValueError(f"SimConfig.start must carry a timezone, got {self.start!r}")
        s = int(ts.tz_convert("UTC").timestamp())
        if s % MARKET_SECONDS:
            raise ValueError(f"SimConfig.start must be aligned to 15 minutes, got {self.start!r}")
        return s

    @property
    def wallet(self) -> str:
        """Deterministic pseudo-address of the simulated trader."""
        return "0x" + hashlib.sha256(f"workbench-sim-trader-{self.seed}".encode()).hexdigest()[:40]

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(json.dumps(asdict(self)))
        if tuple(self.assets) == ("btc",):  # BTC only: the record of simulations made before assets existed
            d.pop("assets")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SimConfig":
        d = dict(d)
        trader = TraderPolicy(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in d.pop("trader", {}).items()})
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(trader=trader, **d)


# ------------------------------------------------------------------------------------------------
# The underlying's path
# ------------------------------------------------------------------------------------------------
def simulate_path(cfg: SimConfig, asset: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate the 1-second path of one underlying (``asset``, default ``cfg.assets[0]``, BTC by default).

    Returns
    -------
    price : ndarray, shape (n_seconds + 1,)
        Price at each second from ``start - warm-up`` to the end of the last market.
    sigma : ndarray, shape (n_seconds + 1,)
        Instantaneous volatility per sqrt(second) in force at each second.
    regime : ndarray of int8, shape (n_seconds + 1,)
        0 calm, 1 turbulent.
    """
    cfg = asset_config(cfg, asset or cfg.assets[0])
    rng = np.random.default_rng([cfg.seed, 0, *_stream(cfg)])
    n_sec = _WARMUP_S + cfg.n_markets * MARKET_SECONDS
    n_min = n_sec // 60 + 1
    # regime chain per minute
    p_leave = np.array(cfg.regime_leave_per_hour) / 60.0
    u = rng.random(n_min)
    regime_min = np.empty(n_min, dtype=np.int8)
    state = 0
    for i in range(n_min):  # 43k steps for 30 days; a scalar Markov chain has no vectorised form
        if u[i] < p_leave[state]:
            state = 1 - state
        regime_min[i] = state
    # AR(1) log-vol per minute, started from its stationary law
    phi, sd = cfg.logvol_phi, cfg.logvol_sd
    eps = rng.standard_normal(n_min) * sd * math.sqrt(1 - phi * phi)
    eps[0] = rng.standard_normal() * sd
    from scipy.signal import lfilter  # linear recursion x_k = phi x_{k-1} + eps_k

    logvol = lfilter([1.0], [1.0, -phi], eps)
    t0 = cfg.start_unix - _WARMUP_S
    minute_ts = t0 + 60 * np.arange(n_min)
    hours = (minute_ts % 86400) / 3600.0
    weekday = ((minute_ts // 86400) + 3) % 7  # 1970-01-01 was a Thursday (3 with Monday = 0)
    seasonal = 1 + cfg.intraday_amp * np.cos(2 * np.pi * (hours - 15.0) / 24.0)
    seasonal = seasonal * np.where(weekday >= 5, cfg.weekend_mult, 1.0)
    mult = np.asarray(cfg.regime_mult)[regime_min] * np.exp(logvol - 0.5 * sd * sd) * seasonal
    base = cfg.annual_vol / math.sqrt(SECONDS_PER_YEAR)
    sigma_min = base * mult
    sigma = np.repeat(sigma_min, 60)[: n_sec + 1]
    regime = np.repeat(regime_min, 60)[: n_sec + 1]
    shocks = rng.standard_t(cfg.t_df, size=n_sec) / math.sqrt(cfg.t_df / (cfg.t_df - 2))
    ret = sigma[:-1] * shocks
    n_jumps = rng.poisson(cfg.jumps_per_day * n_sec / 86400)
    where = rng.integers(0, n_sec, size=n_jumps)
    np.add.at(ret, where, rng.normal(0.0, cfg.jump_sd, size=n_jumps))
    logp = np.concatenate([[0.0], np.cumsum(ret - 0.5 * sigma[:-1] ** 2)])
    return cfg.s0 * np.exp(logp), sigma, regime


def fair_up(price: np.ndarray, p_start: float, sigma: np.ndarray, seconds_left: np.ndarray) -> np.ndarray:
    """Probability that the market ends Up, ``Phi(ln(P / P_start) / (sigma sqrt(seconds_left)))``.

    Parameters
    ----------
    price : array, BTC/USD now; p_start : BTC/USD at the market's open;
    sigma : array, volatility per sqrt(second); seconds_left : array, seconds to expiry (> 0).
    """
    z = np.log(price / p_start) / (sigma * np.sqrt(np.maximum(seconds_left, 1e-3)))
    return ndtr(z)


def ordered_logit_probs(score: float, thresholds: tuple[float, ...]) -> np.ndarray:
    """Class probabilities of an ordered logit, returned in ``ACTIONS`` order (STRONG_BUY first).

    ``P(class <= k) = expit(thresholds[k] - score)`` over (STRONG_SELL, SELL, HOLD, BUY, STRONG_BUY).
    """
    cdf = np.concatenate([[0.0], expit(np.asarray(thresholds) - score), [1.0]])
    p_low_to_high = np.diff(cdf)
    return p_low_to_high[::-1].copy()


# ------------------------------------------------------------------------------------------------
# One market
# ------------------------------------------------------------------------------------------------
def _tick_floor(x: np.ndarray) -> np.ndarray:
    return np.floor(np.round(x * 100, 6)) / 100


def _tick_ceil(x: np.ndarray) -> np.ndarray:
    return np.ceil(np.round(x * 100, 6)) / 100


@dataclass
class _MarketOutput:
    events: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    summary: dict[str, Any]


def simulate_market(cfg: SimConfig, k: int, price: np.ndarray, sigma: np.ndarray,
                    regime: np.ndarray) -> _MarketOutput:
    """Simulate market ``k`` of ``cfg``'s primary asset (quotes, background fills, the underlying's bars, the
    trader, the resolution). ``price``, ``sigma`` and ``regime`` are that asset's path (:func:`simulate_path`)."""
    cfg = asset_config(cfg, cfg.assets[0])
    tp = cfg.trader
    rng = np.random.default_rng([cfg.seed, 1, k, *_stream(cfg)])
    dp = price_decimals(cfg.s0)
    s_unix = cfg.start_unix + k * MARKET_SECONDS
    s_ms = s_unix * 1000
    i0 = _WARMUP_S + k * MARKET_SECONDS  # index of the market's open in the path
    p_start, p_end = float(price[i0]), float(price[i0 + MARKET_SECONDS])
    winner = UP if p_end >= p_start else DOWN
    slug = f"{cfg.assets[0]}-updown-15m-{s_unix}"
    events: list[dict[str, Any]] = []

    # ---- market-maker quotes -----------------------------------------------------------------
    n_q = max(1, rng.poisson(MARKET_SECONDS / cfg.quote_interval_s))
    q_ms = np.sort(rng.integers(50, MARKET_SECONDS * 1000, size=n_q))
    q_ms[0] = min(q_ms[0], int(rng.integers(50, 500)))  # a quote right after the open
    q_ms = np.unique(q_ms)
    q_sec = q_ms // 1000
    lagged = i0 + q_sec - cfg.mm_lag_s
    left = MARKET_SECONDS - q_ms / 1000.0
    mm_fair = fair_up(price[lagged], p_start, sigma[i0 + q_sec], left + cfg.mm_lag_s)
    e = rng.standard_normal(q_ms.size) * cfg.mm_noise_sd * math.sqrt(1 - 0.8**2)
    from scipy.signal import lfilter

    noise = lfilter([1.0], [1.0, -0.8], e)
    mid = np.clip(mm_fair + noise, 0.015, 0.985)
    hs = cfg.half_spread * (1.0 + 1.5 * (1.0 - left / MARKET_SECONDS) ** 4)
    bid = np.clip(_tick_floor(mid - hs), 0.01, 0.98)
    ask = np.clip(_tick_ceil(mid + hs), 0.02, 0.99)
    ask = np.maximum(ask, np.round(bid + 0.01, 2))
    keep = np.ones(q_ms.size, dtype=bool)
    keep[1:] = (np.diff(bid) != 0) | (np.diff(ask) != 0)  # only changes are published
    q_ms, bid, ask = q_ms[keep], np.round(bid[keep], 2), np.round(ask[keep], 2)
    for t, b, a in zip(q_ms.tolist(), bid.tolist(), ask.tolist()):
        events.append({"t": s_ms + t, "type": "price_change", "outcome": UP, "bid": b, "ask": a,
                       "price": round((a + b) / 2, 3)})

    def quote_at(ms: int) -> tuple[float, float]:
        j = int(np.searchsorted(q_ms, ms, side="right")) - 1
        j = max(j, 0)
        return float(bid[j]), float(ask[j])

    # ---- background fills by other wallets -----------------------------------------------------
    n_bg = rng.poisson(cfg.background_trades)
    bg_ms = np.sort(rng.integers(q_ms[0] + 1, MARKET_SECONDS * 1000, size=n_bg))
    informed = rng.random(n_bg) < cfg.informed_share
    coin = rng.random(n_bg) < 0.5
    use_down = rng.random(n_bg) < 0.5
    sizes = np.round(np.minimum(np.exp(rng.normal(3.3, 1.0, size=n_bg)), 2000.0) + 1.0, 2)
    fair_bg = fair_up(price[i0 + bg_ms // 1000], p_start, sigma[i0 + bg_ms // 1000],
                      MARKET_SECONDS - bg_ms / 1000.0)
    for j, t in enumerate(bg_ms.tolist()):
        b, a = quote_at(t)
        buy_up = (fair_bg[j] > (a + b) / 2) if informed[j] else bool(coin[j])
        if use_down[j]:  # Up-equivalent buy = sell Down at 1 - ask; sell = buy Down at 1 - bid
            outcome, side, px = DOWN, ("SELL" if buy_up else "BUY"), (1 - a if buy_up else 1 - b)
        else:
            outcome, side, px = UP, ("BUY" if buy_up else "SELL"), (a if buy_up else b)
        px = round(px, 2)
        events.append({"t": s_ms + t, "type": "last_trade_price", "outcome": outcome, "side": side,
                       "price": px, "size": float(sizes[j]), "usdc": round(px * float(sizes[j]), 4)})

    # ---- BTC one-minute bars -----------------------------------------------------------------
    seg = price[i0: i0 + MARKET_SECONDS].reshape(15, 60)
    vol_scale = sigma[i0: i0 + MARKET_SECONDS].reshape(15, 60).mean(axis=1) / (
        cfg.annual_vol / math.sqrt(SECONDS_PER_YEAR))
    volume = np.round(np.exp(rng.normal(np.log(8.0), 0.5, size=15)) * vol_scale, 4)
    for m in range(15):
        events.append({"t": s_ms + 60_000 * m + 59_999, "type": "bar", "start": s_ms + 60_000 * m,
                       "open": round(float(seg[m, 0]), dp), "high": round(float(seg[m].max()), dp),
                       "low": round(float(seg[m].min()), dp), "close": round(float(seg[m, -1]), dp),
                       "volume": float(volume[m])})

    # ---- the studied wallet --------------------------------------------------------------------
    decisions: list[dict[str, Any]] = []
    pos = MarketPosition()
    active = bool(rng.random() < tp.participation)
    n_trades = 0
    for d_s in range(tp.first_decision_s, MARKET_SECONDS - tp.min_time_left_s + 1, tp.decision_interval_s):
        i = i0 + d_s
        b, a = quote_at(d_s * 1000)
        m_up = (a + b) / 2
        fair_true = float(fair_up(price[i: i + 1], p_start, sigma[i: i + 1], np.array([MARKET_SECONDS - d_s]))[0])
        edge = fair_true - m_up
        mom_z = math.log(price[i] / price[i - 60]) / (sigma[i] * math.sqrt(60.0))
        net = pos.net
        inv_ratio = net / tp.max_inventory
        upnl_ps = pos.unrealized(m_up) / abs(net) if abs(net) > 1e-9 else 0.0
        exit_flag = abs(net) > 1e-9 and (upnl_ps >= tp.take_profit or upnl_ps <= -tp.stop_loss)
        score = tp.beta_edge * edge / 0.02 + tp.beta_momentum * mom_z - tp.beta_inventory * inv_ratio
        if exit_flag:
            score -= math.copysign(tp.exit_push, net)
        if MARKET_SECONDS - d_s < tp.late_window_s:
            score *= tp.late_damp
        probs = ordered_logit_probs(score, tp.thresholds) if active else np.eye(5)[2]
        action = int(rng.choice(5, p=probs))
        size_draw = tp.base_size * (1 + tp.size_conviction * abs(score)) * math.exp(rng.normal(0, tp.size_noise))
        latency = int(rng.integers(tp.latency_ms[0], tp.latency_ms[1] + 1))
        direction = {0: 1, 1: 1, 2: 0, 3: -1, 4: -1}[action]
        qty = 0.0
        if direction:
            qty = size_draw * (tp.strong_mult if action in (0, 4) else 1.0) * direction
            qty = float(np.clip(net + qty, -tp.max_inventory, tp.max_inventory) - net)
            qty = round(qty, 2) if abs(qty) >= 1.0 else 0.0
        fills = 0
        if qty:
            te = d_s * 1000 + latency
            fb, fa = quote_at(te)
            legs: list[tuple[str, str, float, float]] = []
            if qty > 0:  # Up-equivalent buy: sell held Down first, then buy Up
                from_down = min(qty, pos.q_down)
                if from_down > 0:
                    legs.append((DOWN, "SELL", round(from_down, 2), round(1 - fa, 2)))
                if qty - from_down > 0:
                    legs.append((UP, "BUY", round(qty - from_down, 2), fa))
            else:
                from_up = min(-qty, pos.q_up)
                if from_up > 0:
                    legs.append((UP, "SELL", round(from_up, 2), fb))
                if -qty - from_up > 0:
                    legs.append((DOWN, "BUY", round(-qty - from_up, 2), round(1 - fb, 2)))
            for leg_i, (outcome, side, size, px) in enumerate(legs):
                if size <= 0:
                    continue
                t_fill = s_ms + te + leg_i
                pos.trade(t_fill, outcome, side, size, px)
                events.append({"t": t_fill, "type": "trade", "outcome": outcome, "side": side,
                               "price": px, "size": size, "usdc": round(px * size, 4)})
                fills += 1
        n_trades += fills
        decisions.append({
            "t": s_ms + d_s * 1000, "slug": slug, "decision": d_s // tp.decision_interval_s,
            "active": active, "fair_true": fair_true, "mid": m_up, "edge": edge, "mom_z": mom_z,
            "time_left_s": MARKET_SECONDS - d_s, "inventory": net, "inv_ratio": inv_ratio,
            "upnl_per_share": upnl_ps, "exit_flag": bool(exit_flag), "score": score,
            **{f"p_{name}": float(p) for name, p in zip(ACTIONS, probs)},
            "action": ACTIONS[action], "action_id": action, "executed_qty": qty if fills else 0.0,
            "n_fills": fills,
        })
    settle_pnl = pos.settle(s_ms + MARKET_SECONDS * 1000, winner)
    events.append({"t": s_ms + MARKET_SECONDS * 1000, "type": "resolution", "outcome": winner,
                   "price_start": round(p_start, dp), "price_end": round(p_end, dp)})
    type_order = {"bar": 0, "price_change": 1, "last_trade_price": 2, "trade": 3, "resolution": 4}
    events.sort(key=lambda ev: (ev["t"], type_order[ev["type"]]))
    summary = {"slug": slug, "underlying": cfg.assets[0], "start": s_ms, "end": s_ms + MARKET_SECONDS * 1000, "price_start": p_start,
               "price_end": p_end, "winner": winner, "sigma_mean": float(sigma[i0: i0 + MARKET_SECONDS].mean()),
               "turbulent_share": float(regime[i0: i0 + MARKET_SECONDS].mean()), "active": active,
               "n_trades": n_trades, "realized_pnl": pos.realized, "settlement_pnl": settle_pnl,
               "n_events": len(events)}
    return _MarketOutput(events, decisions, summary)


# ------------------------------------------------------------------------------------------------
# Whole simulation
# ------------------------------------------------------------------------------------------------
@dataclass
class SimulationResult:
    """What :func:`simulate` wrote."""

    config: SimConfig
    wallet_dir: Path
    truth_dir: Path
    n_files: int
    n_events: int
    seconds: float

    @property
    def decisions_path(self) -> Path:
        return self.truth_dir / "decisions.parquet"

    @property
    def markets_path(self) -> Path:
        return self.truth_dir / "markets.parquet"


def simulate(cfg: SimConfig, raw_dir: Path, *, progress: bool = False) -> SimulationResult:
    """Write the simulated wallet files and the hidden truth under ``raw_dir``.

    Parameters
    ----------
    cfg
        Simulation parameters.
    raw_dir
        The ``data/raw`` folder: files go to ``merged_trades/<address>/`` and the truth to
        ``simulator_truth/<address>/``. Both folders are replaced as a whole (written to a temporary
        sibling first, then renamed), so a crash never leaves a half-written simulation.
    progress
        Show a tqdm progress bar.
    """
    t_start = time.perf_counter()
    raw_dir = Path(raw_dir)
    wallet = cfg.wallet
    wallet_dir = raw_dir / "merged_trades" / wallet
    truth_dir = raw_dir / "simulator_truth" / wallet
    tmp_wallet = wallet_dir.with_name(wallet + ".tmp")
    tmp_truth = truth_dir.with_name(wallet + ".tmp")
    for p in (tmp_wallet, tmp_truth):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    from tqdm.auto import tqdm

    decisions: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    n_events = 0
    for asset in cfg.assets:  # each underlying has its own path; the trader trades every asset's markets
        acfg = asset_config(cfg, asset)
        price, sigma, regime = simulate_path(acfg)
        for k in tqdm(range(cfg.n_markets), desc=f"{asset} markets", disable=not progress):
            out = simulate_market(acfg, k, price, sigma, regime)
            slug = out.summary["slug"]
            payload = json.dumps({"slug": slug, "prices": out.events}, separators=(",", ":"))
            (tmp_wallet / f"{slug}_prices.json").write_text(payload)
            decisions.extend(out.decisions)
            summaries.append(out.summary)
            n_events += len(out.events)
    pd.DataFrame(decisions).to_parquet(tmp_truth / "decisions.parquet", index=False)
    pd.DataFrame(summaries).to_parquet(tmp_truth / "markets.parquet", index=False)
    meta = {"config": cfg.to_dict(), "wallet": wallet, "n_markets": cfg.n_markets * len(cfg.assets),
            "n_events": n_events,
            "note": "Hidden truth of the simulator: for evaluation only. Training code never reads this folder."}
    atomic.write_json(tmp_truth / "sim_config.json", meta)
    for tmp, final in ((tmp_wallet, wallet_dir), (tmp_truth, truth_dir)):
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return SimulationResult(cfg, wallet_dir, truth_dir, cfg.n_markets * len(cfg.assets), n_events,
                            time.perf_counter() - t_start)


def ensure_simulation(cfg: SimConfig, raw_dir: Path, *, progress: bool = False) -> SimulationResult | None:
    """Simulate unless ``raw_dir`` already holds a simulation with exactly this configuration.

    Returns the result when it simulated, ``None`` when the existing files were kept.
    """
    meta_path = Path(raw_dir) / "simulator_truth" / cfg.wallet / "sim_config.json"
    wallet_dir = Path(raw_dir) / "merged_trades" / cfg.wallet
    if meta_path.exists() and wallet_dir.is_dir():
        meta = json.loads(meta_path.read_text())
        n_files = sum(1 for _ in wallet_dir.glob("*_prices.json"))
        if meta.get("config") == cfg.to_dict() and n_files == cfg.n_markets * len(cfg.assets):
            return None
    return simulate(cfg, raw_dir, progress=progress)


def load_truth(raw_dir: Path, wallet: str, underlying: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the simulator's hidden truth: ``(decisions, markets)``, all assets or those of ``underlying``.
    For evaluation only."""
    d = Path(raw_dir) / "simulator_truth" / wallet
    decisions, markets = pd.read_parquet(d / "decisions.parquet"), pd.read_parquet(d / "markets.parquet")
    if underlying is None:
        return decisions, markets
    keep = decisions["slug"].str.startswith(f"{underlying}-updown-")
    return decisions[keep].reset_index(drop=True), markets[markets["slug"].str.startswith(f"{underlying}-updown-")
                                                           ].reset_index(drop=True)


def config_with(**overrides: Any) -> SimConfig:
    """A :class:`SimConfig` with top-level overrides (``trader__beta_edge=...`` for policy fields)."""
    trader_kw = {k.split("__", 1)[1]: v for k, v in overrides.items() if k.startswith("trader__")}
    top = {k: v for k, v in overrides.items() if not k.startswith("trader__")}
    cfg = SimConfig(**top)
    return replace(cfg, trader=replace(cfg.trader, **trader_kw)) if trader_kw else cfg


def true_volatility(raw_dir: Path, wallet: str, underlying: str = "btc") -> pd.Series:
    """The simulator's true volatility of ``underlying`` per 15-minute market (fraction per 15 minutes), indexed
    by the market's end (UTC). Evaluation only: it comes from the hidden truth folder."""
    _, markets = load_truth(raw_dir, wallet, underlying)
    idx = pd.DatetimeIndex(pd.to_datetime(markets["end"], unit="ms", utc=True), name="time")
    return pd.Series(markets["sigma_mean"].to_numpy() * math.sqrt(MARKET_SECONDS), index=idx, name="true_vol")


def load_sim_config(raw_dir: Path, wallet: str, asset: str | None = None) -> SimConfig:
    """The configuration a simulation was generated with, or that of one of its assets (:func:`asset_config`:
    its path is then ``simulate_path(cfg)``). Hidden truth: for evaluation only."""
    meta = json.loads((Path(raw_dir) / "simulator_truth" / wallet / "sim_config.json").read_text())
    cfg = SimConfig.from_dict(meta["config"])
    if asset is not None and asset not in cfg.assets:
        raise ValueError(f"the simulation of {wallet} has assets {list(cfg.assets)}, not {asset!r}")
    return cfg if asset is None else asset_config(cfg, asset)
