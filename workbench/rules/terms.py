"""The interpretable terms of the rule card, per market and decision step, from notebook 04's step table.

Each 15-minute market has ``K = 15`` one-minute steps starting 5 s after each minute (``seconds_left`` = 895,
835, ..., 55). The terms are what the trader can act on, all known at the step's start:

* **mispricing** in cents, ``100 (fair - mid)``: ``fair = Phi(ln(P_now / P_open) / (sigma sqrt(seconds_left)))``;
* **momentum**, the last minute's log return over ``sigma sqrt(60 s)``;
* **inventory**, net Up-equivalent shares held before the step (per 100 shares);
* **exit trigger**: ``-sign(inventory)`` once the unrealised P&L per share reaches ``+take_profit`` or
  ``-stop_loss`` (0 otherwise; the levels are change points of the model, see :mod:`workbench.rules.model`);
* the clock (late window, last-seconds stop) and candidate terms the trader may or may not use (the quote's
  last change, RSI, volume), so that model choice can drop them.

**What the files do not show.** A trader deciding a few seconds after a bar closes sees the BTC price *at
that second*; the files hold one-minute closes only. Treating the last close as the price biases every
coefficient on price towards zero (errors in variables). The terms are therefore given on ``R`` fixed
quasi-random draws of the unseen seconds (scrambled Sobol, so the likelihood is deterministic): the price 6 s
after the last close, the price at the market's open (1 s after the previous close), and the price 60 s back
(bridged between the two latest closes), and the volatility itself: the trader knows the current volatility, the
files give an estimate (:func:`volatility`: an exponentially weighted Garman-Klass average of the last minutes'
bars, scaled to the close-to-close variance of the training period), so the draws also scatter it
log-normally with standard deviation ``sigma_noise``.

The quote itself is evidence about the unseen price: the market maker prices from (nearly) the current BTC
price plus noise, so a draw whose fair value is far from the quote is unlikely. Each draw is weighted by
``N(mid; fair_draw, quote_noise^2)`` (importance sampling from the prior of the unseen seconds to their
posterior given the quote); ``quote_noise`` is estimated by moments (the spread of ``mid - fair`` beyond what
the draws explain). The model averages its likelihood over the weighted draws (simulated maximum likelihood).

Nothing here reads the simulator's truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from scipy.stats import qmc

K_STEPS = 15  # one-minute steps per 15-minute market
MARKET_S = 900
#: Candidate terms the trader may not use: name -> (column of the step table, centre, scale, unit).
CANDIDATES: dict[str, tuple[str, float, float, str]] = {
    "quote_change": ("quote_change", 0.0, 0.01, "per cent of the Up quote's last change"),
    "rsi": ("rsi", 50.0, 10.0, "per 10 RSI points"),
    "volume": ("volume_z", 0.0, 1.0, "per z of volume"),
}


@dataclass
class PolicyData:
    """Arrays of one wallet's steps on a (market, step) grid; ``R`` draws of the unseen seconds.

    Shapes: ``(M, K)`` per step, ``(M, K, R)`` per step and draw. ``ok`` marks steps with every term defined;
    steps outside it carry no likelihood (they are counted in :attr:`n_unusable`).
    """

    slugs: np.ndarray  # (M,) market slugs, in time order
    index: np.ndarray  # (M, K) row of the step in the source table, -1 where the step is absent
    ok: np.ndarray  # (M, K) bool
    seconds_left: np.ndarray  # (M, K)
    direction: np.ndarray  # (M, K) -1 sell, 0 hold, +1 buy (Up-equivalent)
    size: np.ndarray  # (M, K) |flow| in shares (0 on HOLD)
    observed_class: np.ndarray  # (M, K) the step table's class (0 STRONG_BUY .. 4 STRONG_SELL)
    inventory: np.ndarray  # (M, K) net Up-equivalent shares before the step
    upnl: np.ndarray  # (M, K) unrealised P&L per share (price units), 0 when flat
    edge: np.ndarray  # (M, K, R) mispricing in cents on each draw
    momentum: np.ndarray  # (M, K, R) momentum z on each draw
    weights: np.ndarray  # (M, K, R) normalised weight of each draw given the quote
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # (M, K) candidate terms, scaled
    cap: float = float("inf")  # the inventory cap the trader never exceeds (inf: none seen)
    quote_noise: float = 0.0  # cents, the weights' quote noise
    strong: float = float("inf")  # the size (shares) that separates STRONG_* from plain classes

    @property
    def n_markets(self) -> int:
        return len(self.slugs)

    @property
    def n_unusable(self) -> int:
        """Steps present in the table whose terms are undefined (e.g. the volatility's warm-up)."""
        return int(((self.index >= 0) & ~self.ok).sum())

    def subset(self, markets: np.ndarray) -> "PolicyData":
        """The data of the markets at positions ``markets`` (repeats allowed: a bootstrap sample)."""
        m = np.asarray(markets)
        return PolicyData(self.slugs[m], self.index[m], self.ok[m], self.seconds_left[m], self.direction[m],
                          self.size[m], self.observed_class[m], self.inventory[m], self.upnl[m], self.edge[m],
                          self.momentum[m], self.weights[m], {k: v[m] for k, v in self.extras.items()}, self.cap, self.strong,
                          self.quote_noise)

    def exit_term(self, take_profit: float, stop_loss: float) -> np.ndarray:
        """``(M, K)`` the exit trigger ``-sign(inventory)`` where the P&L per share reached a level, else 0."""
        held = np.abs(self.inventory) > 1e-9
        hit = held & ((self.upnl >= take_profit - 1e-12) | (self.upnl <= -stop_loss + 1e-12))
        return np.where(hit, -np.sign(self.inventory), 0.0)


def unseen_draws(n_draws: int, seed: int = 0) -> np.ndarray:
    """``(n_draws, 4)`` standard normal quasi-random draws (scrambled Sobol), fixed by ``seed``."""
    m = max(1, int(math.ceil(math.log2(max(n_draws, 1)))))
    u = qmc.Sobol(d=4, scramble=True, seed=seed).random_base2(m)[:n_draws]
    return ndtri(np.clip(u, 1e-10, 1 - 1e-10))


def volatility(ohlcv: pd.DataFrame, halflife: float = 5.0, scale: float | None = None) -> tuple[pd.Series, float]:
    """The one-minute volatility the terms use: an EWMA (``halflife`` bars) of the Garman-Klass variance of
    each bar, times ``scale`` (default: mean squared close-to-close return / mean Garman-Klass variance on
    ``ohlcv``, i.e. fit it on the training period and pass it on). Returns (sigma per sqrt(second), indexed
    like ``ohlcv`` by bar close; the scale). Causal: the value at a close uses bars up to that close.

    Garman & Klass (1980), *J. Business* 53(1); the range-based estimator has a small bias on one-second
    paths (a bar's range misses moves between ticks), which the scale removes.
    """
    lo, hi, op, cl = (np.log(ohlcv[c].to_numpy(np.float64)) for c in ("low", "high", "open", "close"))
    gk = 0.5 * (hi - lo) ** 2 - (2 * math.log(2) - 1) * (cl - op) ** 2
    cc = np.diff(np.r_[np.nan, cl]) ** 2
    if scale is None:
        ok = np.isfinite(gk) & np.isfinite(cc)
        scale = float(cc[ok].mean() / gk[ok].mean()) if ok.any() and gk[ok].mean() > 0 else 1.0
    ew = pd.Series(gk, index=ohlcv.index).ewm(halflife=halflife, min_periods=int(math.ceil(halflife)), ignore_na=True).mean()
    return np.sqrt(ew * scale / 60.0).rename("sigma"), float(scale)


def policy_data(steps: pd.DataFrame, actions: np.ndarray, *, strong: float, sigma: pd.Series | None = None,
                sigma_noise: float = 0.0, quote_noise: float | None = None, n_draws: int = 64, seed: int = 0,
                candidates: tuple[str, ...] = tuple(CANDIDATES)) -> PolicyData:
    """Terms per (market, step) from :func:`workbench.twin.steps.build_steps`'s table.

    Parameters
    ----------
    steps : DataFrame
        The step table (index: step start, UTC; columns ``slug, seconds_left, up_mid, btc_close, btc_open,
        yz_vol, mom_z, inventory, upnl_per_share, flow`` and the candidates').
    actions : array (n,)
        The step table's action classes (``workbench.twin.steps.classify_flow``).
    strong : float
        The STRONG size threshold (shares) the classes were cut at.
    sigma : Series, optional
        :func:`volatility` (per sqrt(second), by bar close); default the table's Yang-Zhang ``yz_vol``.
    sigma_noise : float
        Standard deviation of ``log(true / estimated volatility)`` scattered over the draws.
    quote_noise : float, optional
        Standard deviation (cents) of the quote around the fair value, for the draws' weights; default the
        moment estimate on these steps (``0``: unweighted draws).
    n_draws, seed
        Draws of the unseen seconds (see the module docstring).
    """
    s = steps
    slug = s["slug"].to_numpy(dtype=object)
    left = s["seconds_left"].to_numpy(np.float64)
    k = np.rint((MARKET_S - 5 - left) / 60).astype(np.int64)
    slugs, m_idx = np.unique(slug, return_inverse=True)
    order = np.argsort([int(str(x).rsplit("-", 1)[-1]) if str(x).rsplit("-", 1)[-1].isdigit() else 0 for x in slugs],
                       kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    m_idx = rank[m_idx]
    slugs = slugs[order]
    keep = (k >= 0) & (k < K_STEPS)
    M = len(slugs)
    index = np.full((M, K_STEPS), -1, dtype=np.int64)
    index[m_idx[keep], k[keep]] = np.flatnonzero(keep)

    def grid(values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full((M, K_STEPS), fill, dtype=np.float64)
        out[index >= 0] = np.asarray(values, dtype=np.float64)[index[index >= 0]]
        return out

    left_g = np.where(index >= 0, grid(left), MARKET_S - 5 - 60 * np.arange(K_STEPS)[None, :])
    if sigma is None:
        sig_rows = s["yz_vol"].to_numpy() / math.sqrt(60.0)  # per sqrt(second)
    else:  # the last bar closed at or before the step's start
        st = s.index.as_unit("ms").asi8
        vt = sigma.index.as_unit("ms").asi8
        j = np.searchsorted(vt, st, side="right") - 1
        sig_rows = np.where(j >= 0, sigma.to_numpy()[np.maximum(j, 0)], np.nan)
    sigma = grid(sig_rows)
    c1 = np.log(grid(s["btc_close"].to_numpy()))
    c0 = c1 - grid(s["mom_z"].to_numpy()) * grid(s["yz_vol"].to_numpy())  # the close before the last one
    open_ = np.log(grid(s["btc_open"].to_numpy()))
    mid = grid(s["up_mid"].to_numpy())
    flow = grid(s["flow"].to_numpy(), 0.0)
    z = unseen_draws(n_draws, seed)  # (R, 4): 6 s after the last close, the open's second, the bridge, the volatility
    sg = sigma[..., None] * np.exp(sigma_noise * z[:, 3] - 0.5 * sigma_noise ** 2)
    first = (np.arange(K_STEPS) == 0)[None, :, None]
    # step 0 (5 s after the open): the last close is the one before the open, so now - open spans 5 s only
    now = np.where(first, c1[..., None] + sg * (z[:, 1] + math.sqrt(5.0) * z[:, 0]), c1[..., None] + sg * math.sqrt(6.0) * z[:, 0])
    p_open = np.where(first, c1[..., None] + sg * z[:, 1], open_[..., None] + sg * z[:, 1])
    back = c0[..., None] + 0.1 * (c1 - c0)[..., None] + sg * math.sqrt(6.0 * 54.0 / 60.0) * z[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        fair = ndtr((now - p_open) / (sg * np.sqrt(left_g[..., None])))
        edge = 100.0 * (fair - mid[..., None])
        momentum = (now - back) / (sg * math.sqrt(60.0))
    ok_draws = np.isfinite(edge).all(-1)
    if quote_noise is None:  # Var(mid - E fair) = Var(edge) + E Var_draws(fair): the edge's own spread
        e_mean, e_var = edge.mean(-1)[ok_draws], edge.var(-1)[ok_draws]
        quote_noise = float(math.sqrt(max(e_mean.var() - e_var.mean(), 0.25))) if ok_draws.any() else 1.0
    if quote_noise > 0:
        lw = np.where(ok_draws[..., None], -0.5 * (np.nan_to_num(edge) / quote_noise) ** 2, 0.0)
        # the previous step's quote is evidence about the price 60 s back (momentum's other end)
        prev_mid = grid(s["up_mid"].to_numpy() - s["quote_change"].to_numpy())
        with np.errstate(divide="ignore", invalid="ignore"):
            fair_back = ndtr((back - p_open) / (sg * np.sqrt(left_g[..., None] + 60.0)))
            e_back = 100.0 * (fair_back - prev_mid[..., None])
        use = (np.arange(K_STEPS) > 0)[None, :, None] & np.isfinite(e_back)
        lw = lw + np.where(use, -0.5 * (np.nan_to_num(e_back) / quote_noise) ** 2, 0.0)
        w = np.exp(lw - lw.max(-1, keepdims=True))
        weights = w / w.sum(-1, keepdims=True)
    else:
        weights = np.full(edge.shape, 1.0 / edge.shape[-1])
    extras = {}
    for name in candidates:
        col, centre, scale, _ = CANDIDATES[name]
        extras[name] = (grid(s[col].to_numpy()) - centre) / scale
    inv = grid(s["inventory"].to_numpy(), 0.0)
    upnl = grid(s["upnl_per_share"].to_numpy(), 0.0)
    ok = (index >= 0) & np.isfinite(edge).all(-1) & np.isfinite(momentum).all(-1) & (sigma > 0)
    for v in extras.values():
        ok &= np.isfinite(v)
    after = np.abs(inv + flow)
    traded = np.abs(flow) > 1e-9
    cap = float(after[traded].max()) if traded.any() else float("inf")
    # a cap is only a rule when the trader ends exactly on it repeatedly; otherwise it is just the largest position
    if traded.any() and int((np.abs(after[traded] - cap) < 0.5).sum()) < 3:
        cap = float("inf")
    act = np.full((M, K_STEPS), 2, dtype=np.int64)
    act[index >= 0] = np.asarray(actions, dtype=np.int64)[index[index >= 0]]
    return PolicyData(slugs=slugs, index=index, ok=ok, seconds_left=left_g,
                      direction=np.sign(np.where(traded, flow, 0.0)).astype(np.int64),
                      size=np.abs(np.where(traded, flow, 0.0)), observed_class=act, inventory=inv, upnl=upnl,
                      edge=np.nan_to_num(edge), momentum=np.nan_to_num(momentum), weights=weights,
                      extras={n: np.nan_to_num(v) for n, v in extras.items()}, cap=cap, strong=float(strong),
                      quote_noise=float(quote_noise))
