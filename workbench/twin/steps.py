"""From ingested trades and features to (return-to-go, state, action) sequences for the trader twin.

One **step** is one interval of ``step`` length starting at ``offset`` past the grid (default one minute
starting 5 s past each minute: the simulated trader decides then, just after a one-minute bar closed).
For step t covering
``[s_t, s_t + step)``:

* the **state** uses only what was known strictly before ``s_t`` (market features of the last closed
  one-minute bar, the Up quote, the trader's own position),
* the **action** is the class of the trader's signed Up-equivalent flow during the step,
* the **reward** is the change of the trader's equity (realised + unrealised P&L) over the step, as a
  fraction of ``notional`` (the capital the trader is assumed to commit).

The 17 state features follow the design's list (market microstructure, technical context, time, agent
state) with four substitutions, explained in notebook 04. The design's hour-of-day sine/cosine duplicates
the time of day; its day-of-week sine/cosine sees four weekly cycles in a month of 15-minute markets that
are identical every day except for their volatility (already a feature). They are replaced by what a
trader of 15-minute binary markets reacts to: the time to expiry, the gap between the Up price implied
by BTC's move since the market opened and the quoted Up mid, the last minute's BTC momentum (return over
volatility) and the Up price itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from workbench.data.simulate import ACTIONS, MARKET_SECONDS

#: The 17 features of the state, in model input order.
STATE_FEATURES: tuple[str, ...] = (
    # market microstructure
    "ffd_close", "yz_vol", "volume_z",
    # technical context
    "rsi", "macd_hist_norm", "bb_width",
    # time and market clock (hour and day-of-week replaced by market-specific features, see below)
    "tod_sin", "tod_cos", "time_to_expiry", "fair_gap", "mom_z", "up_mid",
    # agent state
    "unrealized_pnl", "pnl_pct_position", "inventory", "position_size_ratio", "time_since_entry",
)
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {  # noqa: E501
    "market microstructure": STATE_FEATURES[0:3], "technical context": STATE_FEATURES[3:6],
    "time and market clock": STATE_FEATURES[6:12], "agent state": STATE_FEATURES[12:17],
}
#: What a trader of these markets acts on, all causal (notebook 04 compares it with the seed's 17 features):
#: the mispricing against a fair value priced from the last bar's own time stamp, momentum, the quote and its
#: change, the clock with a late-window flag (fitted on the training period), and the position against the
#: take-profit / stop-loss levels fitted to the trader's exits in notebook 03.
TRADER_FEATURES: tuple[str, ...] = (
    "edge_obs", "mom_z", "up_mid", "quote_change", "time_to_expiry", "late",
    "upnl_per_share", "tp_distance", "sl_distance", "exit_signal", "inventory", "trades_in_market",
)
FEATURE_SETS: dict[str, tuple[str, ...]] = {"seed": STATE_FEATURES, "trader": TRADER_FEATURES}
#: Features of the agent's own position: the replay recomputes them for each agent from its own book.
AGENT_FEATURES: tuple[str, ...] = ("unrealized_pnl", "pnl_pct_position", "inventory", "position_size_ratio",
                                   "time_since_entry", "upnl_per_share", "tp_distance", "sl_distance",
                                   "exit_signal", "trades_in_market")
MS = 1000


@dataclass(frozen=True)
class ExitLevels:
    """Take-profit and stop-loss levels per share (Up-equivalent price units), e.g. notebook 03's fit."""

    take_profit: float = 0.12
    stop_loss: float = 0.15

    @classmethod
    def from_json(cls, path: Any) -> "ExitLevels":
        """Read notebook 03's ``exit_barriers.json`` (``take_profit``, ``stop_loss``)."""
        import json
        from pathlib import Path

        d = json.loads(Path(path).read_text())
        return cls(float(d["take_profit"]), float(d["stop_loss"]))


def agent_state(q_up: np.ndarray, q_down: np.ndarray, avg_up: np.ndarray, avg_down: np.ndarray,
                entry_ms: np.ndarray, n_orders: np.ndarray, mark: np.ndarray, t_ms: np.ndarray, notional: float,
                levels: ExitLevels) -> dict[str, np.ndarray]:
    """The agent features of :data:`AGENT_FEATURES` from a position, as arrays of the same shape.

    One function for the recorded trader (:func:`build_steps`, one value per step) and for every agent of
    the replay (one value per agent), so that both see exactly the same definitions. ``mark`` is the Up mid
    strictly before ``t_ms``; ``entry_ms`` NaN when flat; ``n_orders`` the agent's orders so far in this
    market.
    """
    net = q_up - q_down
    unreal = q_up * (mark - avg_up) + q_down * ((1 - mark) - avg_down)
    cost = q_up * avg_up + q_down * avg_down
    held = np.abs(net) > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        per_share = np.where(held, unreal / np.where(held, np.abs(net), 1.0), 0.0)
        pct = np.where(cost > 0, unreal / np.where(cost > 0, cost, 1.0), 0.0)
    reached = held & ((per_share >= levels.take_profit - 1e-12) | (per_share <= -levels.stop_loss + 1e-12))
    return {"unrealized_pnl": unreal / notional, "pnl_pct_position": pct, "inventory": net,
            "position_size_ratio": np.abs(net),
            "time_since_entry": np.where(np.isfinite(entry_ms), (t_ms - entry_ms) / (MARKET_SECONDS * MS), 0.0),
            "upnl_per_share": per_share, "tp_distance": np.where(held, per_share - levels.take_profit, 0.0),
            "sl_distance": np.where(held, per_share + levels.stop_loss, 0.0),
            "exit_signal": np.where(reached, -np.sign(net), 0.0), "trades_in_market": np.asarray(n_orders, float)}


def fit_late_window(seconds_left: np.ndarray, traded: np.ndarray,
                    candidates: tuple[float, ...] = (60, 120, 180, 240, 300, 360)) -> float:
    """The late window (seconds before expiry) in which the trader trades at a different rate: the cutoff ``c``
    maximising the likelihood of a two-rate Bernoulli model of "traded in the step" (rate inside ``< c`` vs
    outside). Fit on the training period; used as the ``late`` flag."""
    traded = np.asarray(traded, bool)
    best, best_ll = float(candidates[0]), -np.inf
    for c in candidates:
        inside = seconds_left < c
        ll = 0.0
        for m in (inside, ~inside):
            n, k = int(m.sum()), int(traded[m].sum())
            if n and 0 < k < n:
                p = k / n
                ll += k * math.log(p) + (n - k) * math.log(1 - p)
        if ll > best_ll:
            best, best_ll = float(c), ll
    return best


def _market_start(t_ms: np.ndarray) -> np.ndarray:
    return (t_ms // (MARKET_SECONDS * MS)) * MARKET_SECONDS * MS


def _asof_strict(times: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values[j] of the last key strictly before each time (NaN if none). ``keys`` sorted ascending."""
    j = np.searchsorted(keys, times, side="left") - 1
    out = np.where(j >= 0, values[np.maximum(j, 0)] if len(values) else np.nan, np.nan)
    return out


def build_steps(events: pd.DataFrame, positions: pd.DataFrame, bars: pd.DataFrame, features: pd.DataFrame,
                *, notional: float = 500.0, levels: ExitLevels | None = None) -> pd.DataFrame:
    """The per-step table: the seed's 17 and the trader's causal state features, the trader's flow, equity and
    reward.

    Parameters
    ----------
    events, positions : DataFrame
        Notebook 01's tables (one wallet).
    bars : DataFrame
        Notebook 01's bars at the step grid (``ingest.rebar(data, step, offset)``); one row per step.
    features : DataFrame
        Notebook 02's feature table (index: UTC close time of one-minute bars).
    notional : float
        USDC the trader is assumed to commit; rewards and P&L features are fractions of it.
    levels : ExitLevels, optional
        Take-profit / stop-loss levels for the trader features (notebook 03's fit; default 0.12 / 0.15).

    Returns
    -------
    DataFrame indexed by step start (UTC), one row per step whose market is in the data, with the
    columns of ``STATE_FEATURES`` and of ``TRADER_FEATURES`` (except ``late``, added by the split that fits
    its window) plus ``seconds_left``, ``slug``,
    ``flow`` (signed Up-equivalent shares traded in the step), ``n_fills``, ``equity`` (USDC at the
    step's end), ``reward`` (fraction of ``notional``), ``up_mid``, ``fair`` (Up probability implied by
    BTC's move since the market opened, the volatility and the time left), ``btc_close`` (last closed
    one-minute bar) and ``btc_open`` (BTC at the market's open).
    """
    b = bars.sort_values("bar_start").reset_index(drop=True)
    s = b["bar_start"].to_numpy(dtype=np.int64)
    out = pd.DataFrame(index=pd.DatetimeIndex(pd.to_datetime(s, unit="ms", utc=True), name="step_start"))
    # ---- market features of the last one-minute bar closed by the step's start -------------------
    f = features.sort_index()
    f_t = f.index.as_unit("ms").asi8
    jf = np.searchsorted(f_t, s, side="right") - 1  # close time <= s: that bar used only data < its close
    for c in ("ffd_close", "yz_vol", "volume_z", "rsi", "macd_hist_norm", "bb_width"):
        v = f[c].to_numpy(dtype=np.float64)
        out[c] = np.where(jf >= 0, v[np.maximum(jf, 0)], np.nan)
    log_close = f["log_close"].to_numpy(dtype=np.float64)
    btc_last = np.where(jf >= 0, log_close[np.maximum(jf, 0)], np.nan)
    m_start = _market_start(s)
    jo = np.searchsorted(f_t, m_start, side="right") - 1  # BTC close known at the market's open
    btc_open = np.where(jo >= 0, log_close[np.maximum(jo, 0)], np.nan)
    # ---- clock --------------------------------------------------------------------------------
    ts = out.index
    tod = (ts.hour * 3600 + ts.minute * 60 + ts.second) / 86400.0
    out["tod_sin"], out["tod_cos"] = np.sin(2 * np.pi * tod), np.cos(2 * np.pi * tod)
    left_s = (m_start + MARKET_SECONDS * MS - s) / MS
    out["time_to_expiry"] = left_s / MARKET_SECONDS
    # ---- the quote of the current market, strictly before the step ------------------------------
    und = events["underlying"].dropna().unique() if "underlying" in events else ["btc"]
    if len(und) > 1:  # one asset per step table: its markets are the 15-minute slots of that asset
        raise ValueError(f"events of several underlyings {sorted(und)}: select one (WalletData.select)")
    prefix = und[0] if len(und) else "btc"
    slug = np.array([f"{prefix}-updown-15m-{m // MS}" for m in m_start], dtype=object)
    q = events[events["type"] == "price_change"]
    mid_q = np.where(q["outcome"] == "Down", 1 - (q["bid"] + q["ask"]) / 2, (q["bid"] + q["ask"]) / 2)
    quotes = pd.DataFrame({"slug": q["slug"].to_numpy(dtype=object), "t": q["t"].to_numpy(), "mid": mid_q})
    up_mid = np.full(len(s), np.nan)
    for sl, g in quotes.groupby("slug", sort=False):
        rows = np.flatnonzero(slug == sl)
        if len(rows):
            up_mid[rows] = _asof_strict(s[rows], g["t"].to_numpy(), g["mid"].to_numpy())
    out["up_mid"] = up_mid
    prev_mid = np.r_[np.nan, up_mid[:-1]]
    same_market = np.r_[False, m_start[1:] == m_start[:-1]]
    out["quote_change"] = up_mid - np.where(same_market, prev_mid, 0.5)  # a market opens at a fair value of 0.5
    sigma_sec = out["yz_vol"].to_numpy() / math.sqrt(60.0)  # one-minute Yang-Zhang -> per sqrt(second)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (btc_last - btc_open) / (sigma_sec * np.sqrt(np.maximum(left_s, 1.0)))
    ret = f["ret"].to_numpy(dtype=np.float64)
    out["mom_z"] = np.where(jf >= 0, ret[np.maximum(jf, 0)], np.nan) / out["yz_vol"].to_numpy()
    out["fair"] = ndtr(z)
    out["fair_gap"] = out["fair"] - up_mid
    # the same fair value priced from the bar's own time stamp: the time left counts from the last close, not from
    # the step's start (the close is a few seconds older than the step)
    close_ms = np.where(jf >= 0, f_t[np.maximum(jf, 0)], s)
    left_close = np.maximum(left_s + (s - close_ms) / MS, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_obs = (btc_last - btc_open) / (sigma_sec * np.sqrt(left_close))
    out["edge_obs"] = ndtr(z_obs) - up_mid
    out["seconds_left"] = left_s
    out["btc_close"] = np.exp(btc_last)
    out["btc_open"] = np.exp(btc_open)
    # ---- the trader's own position in the current market, strictly before the step ----------------
    p = positions.sort_values("t", kind="stable")
    q_up = np.zeros(len(s))
    q_dn = np.zeros(len(s))
    a_up = np.zeros(len(s))
    a_dn = np.zeros(len(s))
    entry = np.full(len(s), np.nan)
    for sl, g in p.groupby("slug", sort=False):
        rows = np.flatnonzero(slug == sl)
        if not len(rows):
            continue
        gt = g["t"].to_numpy()
        j = np.searchsorted(gt, s[rows], side="left") - 1
        ok = j >= 0
        jj = np.maximum(j, 0)
        q_up[rows] = np.where(ok, g["q_up"].to_numpy()[jj], 0.0)
        q_dn[rows] = np.where(ok, g["q_down"].to_numpy()[jj], 0.0)
        a_up[rows] = np.where(ok, np.nan_to_num(g["avg_up"].to_numpy()[jj]), 0.0)
        a_dn[rows] = np.where(ok, np.nan_to_num(g["avg_down"].to_numpy()[jj]), 0.0)
        since = g["time_since_entry_s"].to_numpy()[jj]
        entry[rows] = np.where(ok & np.isfinite(since), gt[jj] - since * MS, np.nan)
    mark = np.nan_to_num(up_mid, nan=0.5)
    flow = b["wallet_flow"].to_numpy(dtype=np.float64)
    traded = (np.abs(flow) > 1e-9).astype(float)
    # orders so far in this market, strictly before the step
    n_orders = pd.Series(traded).groupby(m_start).cumsum().to_numpy() - traded
    agent = agent_state(q_up, q_dn, a_up, a_dn, entry, n_orders, mark, s, notional, levels or ExitLevels())
    for c in AGENT_FEATURES:  # position_size_ratio is scaled by the training maximum in Normalizer.fit
        out[c] = agent[c]
    # ---- flow, equity, reward ---------------------------------------------------------------------
    out["slug"] = slug
    out["flow"] = flow
    out["n_fills"] = b["wallet_trades"].to_numpy()
    equity = (b["realized_pnl_cum"] + b["unrealized_pnl"]).to_numpy(dtype=np.float64)
    out["equity"] = equity
    out["reward"] = np.diff(np.r_[0.0, equity]) / notional
    # steps whose market is not in the data (e.g. before the first market opens) have no quotes to act on
    return out[np.isin(slug, events["slug"].unique())]


# ------------------------------------------------------------------------------------------------
# Actions
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionThresholds:
    """``|flow| <= hold`` is HOLD; above it, ``|flow| >= strong`` is STRONG_BUY/STRONG_SELL."""

    hold: float
    strong: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_action_thresholds(flow: np.ndarray, hold: float = 1e-9) -> ActionThresholds:
    """Fit the BUY/STRONG boundary on training flows: the split of ``log|flow|`` (non-zero flows, buys and
    sells pooled) that minimises the within-class variance (Otsu's criterion, i.e. 1-D two-means).

    Parameters
    ----------
    flow : array, signed Up-equivalent shares per step (training period only).
    hold : float, flows with ``|flow| <= hold`` are HOLD.
    """
    mag = np.sort(np.log(np.abs(flow[np.abs(flow) > hold])))
    if len(mag) < 4:
        raise ValueError(f"need at least 4 non-zero flows to fit thresholds, got {len(mag)}")
    n = len(mag)
    csum, csq = np.cumsum(mag), np.cumsum(mag ** 2)
    k = np.arange(1, n)  # split after k values
    left_var = csq[k - 1] - csum[k - 1] ** 2 / k
    right_var = (csq[-1] - csq[k - 1]) - (csum[-1] - csum[k - 1]) ** 2 / (n - k)
    best = int(np.argmin(left_var + right_var))
    strong = float(np.exp((mag[best] + mag[best + 1]) / 2))
    return ActionThresholds(hold=hold, strong=strong)


def classify_flow(flow: np.ndarray, th: ActionThresholds) -> np.ndarray:
    """Class ids in ``ACTIONS`` order (0 STRONG_BUY, 1 BUY, 2 HOLD, 3 SELL, 4 STRONG_SELL)."""
    flow = np.asarray(flow, dtype=np.float64)
    out = np.full(flow.shape, 2, dtype=np.int64)
    out[flow > th.hold] = 1
    out[flow >= th.strong] = 0
    out[flow < -th.hold] = 3
    out[flow <= -th.strong] = 4
    return out


# ------------------------------------------------------------------------------------------------
# Split, normalisation, windows
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Chronological split with gaps: ``[0, train_end) | gap | [val_start, val_end) | gap | [test_start, n)``."""

    train_end: int
    val_start: int
    val_end: int
    test_start: int
    n: int

    def masks(self) -> dict[str, np.ndarray]:
        idx = np.arange(self.n)
        return {"train": idx < self.train_end, "val": (idx >= self.val_start) & (idx < self.val_end),
                "test": idx >= self.test_start}


def chronological_split(n: int, train: float = 0.6, val: float = 0.2, gap: int = 128) -> Split:
    """Split ``n`` time-ordered steps into train / validation / test, with ``gap`` steps dropped between
    consecutive parts so no window straddles two of them. Never random."""
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise ValueError(f"fractions must satisfy 0 < train, val and train + val < 1, got {train}, {val}")
    train_end = int(n * train)
    val_start = train_end + gap
    val_end = int(n * (train + val))
    test_start = val_end + gap
    if not (0 < train_end < val_start < val_end < test_start < n):
        raise ValueError(f"{n} steps are too few for this split with a gap of {gap}")
    return Split(train_end, val_start, val_end, test_start, n)


@dataclass
class Normalizer:
    """Per-feature mean and standard deviation fitted on the training period; NaN -> 0 after scaling."""

    mean: dict[str, float]
    std: dict[str, float]
    features: tuple[str, ...] = STATE_FEATURES

    @classmethod
    def fit(cls, steps: pd.DataFrame, features: tuple[str, ...] = STATE_FEATURES) -> "Normalizer":
        x = steps[list(features)]
        mean = x.mean().fillna(0.0).to_dict()  # a feature missing throughout training stays 0
        std = x.std(ddof=0).replace(0.0, 1.0).fillna(1.0).to_dict()
        if "position_size_ratio" in features:  # |inventory| / its training maximum, not a z-score
            mean["position_size_ratio"] = 0.0
            std["position_size_ratio"] = float(max(x["position_size_ratio"].max(), 1.0))
        return cls({k: float(v) for k, v in mean.items()}, {k: float(v) for k, v in std.items()}, features)

    def transform(self, steps: pd.DataFrame) -> np.ndarray:
        """(n, S) float32 array of normalised states; missing values (warm-up) become 0 (the mean)."""
        x = steps[list(self.features)].to_numpy(dtype=np.float64)
        mu = np.array([self.mean[f] for f in self.features])
        sd = np.array([self.std[f] for f in self.features])
        z = (x - mu) / sd
        return np.nan_to_num(np.clip(z, -10, 10), nan=0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "features": list(self.features)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        return cls(d["mean"], d["std"], tuple(d["features"]))


def returns_to_go(rewards: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """``RTG_t = scale * sum_{k >= t} r_k`` within one window, shape (..., T)."""
    r = np.asarray(rewards, dtype=np.float64)
    return scale * np.flip(np.cumsum(np.flip(r, axis=-1), axis=-1), axis=-1)


def make_windows(states: np.ndarray, actions: np.ndarray, rewards: np.ndarray, rows: np.ndarray, window: int = 128,
                 stride: int | None = None, rtg_scale: float = 100.0, rtg_mode: str = "to_go") -> dict[str, np.ndarray]:
    """Cut consecutive steps ``rows`` into windows of ``window`` steps (the last one padded and masked).

    Parameters
    ----------
    states : (n, S) normalised states; actions : (n,) class ids; rewards : (n,) step returns.
    rows : indices of the steps to use, consecutive and increasing (one part of the split).
    stride : step between window starts (default ``window``: each step appears once).
    rtg_mode : ``"to_go"`` (the Decision Transformer's ``RTG_t = sum_{k >= t} r_k``) or ``"window"`` (every step is
        conditioned on the window's whole return ``RTG_0``: at inference the target stays fixed for the window,
        and no step's input contains its own reward, which at a window's end gives the action away).

    Returns
    -------
    dict with ``states (N, T, S)``, ``actions (N, T)``, ``rtg (N, T)`` (RTG within each window,
    ×``rtg_scale``), ``rewards (N, T)``, ``mask (N, T)`` and ``index (N, T)`` (step row, -1 for padding).
    """
    rows = np.asarray(rows)
    if len(rows) and (np.diff(rows) != 1).any():
        raise ValueError("rows must be consecutive steps")
    stride = stride or window
    starts = list(range(0, max(len(rows) - window, 0) + 1, stride)) if len(rows) else []
    if len(rows) and (not starts or starts[-1] + window < len(rows)):
        starts.append(max(len(rows) - window, 0) if len(rows) >= window else 0)
    n, s_dim = len(starts), states.shape[1]
    out = {"states": np.zeros((n, window, s_dim), np.float32), "actions": np.full((n, window), 2, np.int64),
           "rewards": np.zeros((n, window), np.float64), "mask": np.zeros((n, window), bool),
           "index": np.full((n, window), -1, np.int64)}
    for i, st in enumerate(starts):
        r = rows[st: st + window]
        k = len(r)
        out["states"][i, :k] = states[r]
        out["actions"][i, :k] = actions[r]
        out["rewards"][i, :k] = rewards[r]
        out["mask"][i, :k] = True
        out["index"][i, :k] = r
    rtg = returns_to_go(out["rewards"] * out["mask"], rtg_scale)
    if rtg_mode == "window":
        rtg = np.repeat(rtg[:, :1], window, axis=1) * out["mask"]
    elif rtg_mode != "to_go":
        raise ValueError(f"rtg_mode must be 'to_go' or 'window', got {rtg_mode!r}")
    out["rtg"] = rtg.astype(np.float32)
    return out


def class_balance(actions: np.ndarray) -> pd.Series:
    """Share of each action class, in ``ACTIONS`` order."""
    counts = np.bincount(np.asarray(actions, dtype=np.int64), minlength=len(ACTIONS))
    return pd.Series(counts / max(counts.sum(), 1), index=list(ACTIONS), name="share")
