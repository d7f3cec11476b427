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
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from scipy.stats import qmc

K_STEPS = 15  # one-minute steps per 15-minute market
INFLATE = 1.2  # proposal sd over the linearised posterior sd of a quoted price (heavier than the target: bounded weights)
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
    quote_lag: float = 0.0  # seconds, the market maker's pricing lag behind its quote time
    sigma_noise: float = 0.0  # sd of log(true / estimated volatility) in the draws
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
        per_market = {f.name: getattr(self, f.name)[m] for f in fields(self)
                      if f.name not in ("extras", "cap", "strong", "quote_noise", "quote_lag", "sigma_noise")}
        return replace(self, **per_market, extras={k: v[m] for k, v in self.extras.items()})

    def exit_term(self, take_profit: float, stop_loss: float) -> np.ndarray:
        """``(M, K)`` the exit trigger ``-sign(inventory)`` where the P&L per share reached a level, else 0."""
        held = np.abs(self.inventory) > 1e-9
        hit = held & ((self.upnl >= take_profit - 1e-12) | (self.upnl <= -stop_loss + 1e-12))
        return np.where(hit, -np.sign(self.inventory), 0.0)


def unseen_draws(n_draws: int, seed: int = 0) -> np.ndarray:
    """``(n_draws, 6)`` standard normal quasi-random draws (scrambled Sobol), fixed by ``seed``: the price now,
    the open's second, the price 60 s back, the volatility, the previous and the current quote's price."""
    m = max(1, int(math.ceil(math.log2(max(n_draws, 1)))))
    u = qmc.Sobol(d=6, scramble=True, seed=seed).random_base2(m)[:n_draws]
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


def with_quote_age(steps: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """``steps`` with ``quote_age_s``: seconds since the quote in force at each step's start was published
    (the last ``price_change`` of the step's market strictly before the start; NaN when none)."""
    q = events[events["type"] == "price_change"]
    out = steps.copy()
    st = steps.index.as_unit("ms").asi8
    age = np.full(len(steps), np.nan)
    slug = steps["slug"].to_numpy(dtype=object)
    for sl, g in q.groupby("slug", sort=False):
        rows = np.flatnonzero(slug == sl)
        if len(rows):
            t = np.sort(g["t"].to_numpy(np.int64))
            j = np.searchsorted(t, st[rows], side="left") - 1
            age[rows] = np.where(j >= 0, (st[rows] - t[np.maximum(j, 0)]) / 1000.0, np.nan)
    out["quote_age_s"] = age
    return out


def _norm_logpdf(x: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    return -0.5 * (x - m) ** 2 / v - 0.5 * np.log(2 * math.pi * v)


def _bridge(t: np.ndarray, known: list[tuple[np.ndarray, np.ndarray]], sg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a Brownian log price at ``t`` (seconds before the decision) given known points
    ``[(time, value), ...]`` (arrays; NaN time: absent): the bridge between the nearest known points on either
    side, a random walk beyond the last one."""
    lt = np.full(t.shape, -np.inf)
    lx = np.zeros(t.shape)
    rt = np.full(t.shape, np.inf)
    rx = np.zeros(t.shape)
    for kt, kx in known:
        kt = np.broadcast_to(kt, t.shape)
        kx = np.broadcast_to(kx, t.shape)
        left = np.isfinite(kt) & (kt < t) & (kt > lt)
        lt, lx = np.where(left, kt, lt), np.where(left, kx, lx)
        right = np.isfinite(kt) & (kt > t) & (kt < rt)
        rt, rx = np.where(right, kt, rt), np.where(right, kx, rx)
    has_l, has_r = np.isfinite(lt), np.isfinite(rt)
    span = np.where(has_l & has_r, rt - lt, 1.0)
    mean = np.where(has_l & has_r, lx + (t - lt) / span * (rx - lx), np.where(has_l, lx, rx))
    var = sg ** 2 * np.where(has_l & has_r, (t - lt) * (rt - t) / span, np.where(has_l, t - lt, rt - t))
    return mean, np.maximum(var, sg ** 2 * 1e-3)


class _UnseenPath:
    """Draws of the BTC log price at the seconds the files do not show, conditioned on the bar closes and quotes.

    Times are seconds before the decision: ``c1`` (the last close) is 6 s before, ``c0`` 66 s before; between
    them the path is a Brownian bridge, after ``c1`` a random walk. The points are drawn in sequence, each from
    its exact Gaussian conditional given the points already known (:func:`_bridge`): the price the current
    quote was priced at (``anchor`` = the quote's age plus the market maker's lag), the price now, the price the
    previous step's quote was priced at, and the price 60 s back (momentum's other end). Each quoted point is
    drawn from a Gaussian proposal between its conditional prior and the price its quote implies (the quote
    inverted through the fair-value formula, linearised, with ``noise`` cents), and :attr:`logw` holds the
    importance weights (prior x quote likelihood / proposal), so the weighted draws follow the posterior given
    both quotes. Without a quote model every point is drawn from its prior and the weights are equal.
    """

    def __init__(self, c0: np.ndarray, c1: np.ndarray, open_: np.ndarray, sg: np.ndarray, z: np.ndarray,
                 left: np.ndarray, anchor: np.ndarray | None = None, mid: np.ndarray | None = None,
                 noise: float = 0.0, prev_anchor: np.ndarray | None = None, prev_mid: np.ndarray | None = None) -> None:
        self.sg, self.z = sg, z
        c0, c1, L = c0[..., None] * np.ones_like(sg), c1[..., None] * np.ones_like(sg), left[..., None]
        self.c0, self.c1, self.left = c0, c1, L
        first = np.broadcast_to((np.arange(c1.shape[1]) == 0)[None, :, None], sg.shape)
        nan = np.full(sg.shape, np.nan)
        # step 0 (5 s after the open): the last close is the one before the open (6 s back), the open 5 s back
        self.p_open = p_open = np.where(first, c1 + sg * z[:, 1], open_[..., None] + sg * z[:, 1])
        known = [(np.full(sg.shape, 6.0), c1), (np.full(sg.shape, 66.0), c0), (np.where(first, 5.0, nan), p_open)]
        self.logw = np.zeros(sg.shape)
        use_quotes = anchor is not None and mid is not None and noise > 0

        def quoted(t: np.ndarray, m: np.ndarray | None, zz: np.ndarray) -> np.ndarray:
            mean, var = _bridge(t, known, sg)
            have = np.isfinite(t) & np.isfinite(m)[..., None] if (use_quotes and m is not None) else np.zeros(sg.shape, bool)
            if not have.any():
                return mean + np.sqrt(var) * zz
            tt = np.where(have, t, 0.0)
            scale = sg * np.sqrt(L + tt)
            u = np.clip(np.nan_to_num(m, nan=0.5), 0.005, 0.995)[..., None] * np.ones_like(sg)
            zq = ndtri(u)
            vm = ((noise / 100.0) / np.exp(-0.5 * zq * zq - 0.5 * math.log(2 * math.pi)) * scale) ** 2
            vp = 1.0 / (1.0 / var + 1.0 / vm)
            mp = vp * (mean / var + (p_open + scale * zq) / vm)
            sd = INFLATE * np.sqrt(vp)  # a wider proposal keeps the weights bounded
            x = np.where(have, mp + sd * zz, mean + np.sqrt(var) * zz)
            lik = _norm_logpdf(100.0 * ndtr((x - p_open) / scale), 100.0 * u, np.full_like(u, noise ** 2))
            self.logw = self.logw + np.where(have, _norm_logpdf(x, mean, var) + lik - _norm_logpdf(x, mp, sd ** 2), 0.0)
            return x

        a = np.broadcast_to(anchor[..., None], sg.shape) if use_quotes else nan
        pa = quoted(np.where(np.isfinite(a), a, nan), mid, z[:, 5])
        known.append((np.where(np.isfinite(a), a, nan), pa))
        m_now, v_now = _bridge(np.zeros(sg.shape), known, sg)
        self.now = m_now + np.sqrt(v_now) * z[:, 0]
        known.append((np.zeros(sg.shape), self.now))
        if use_quotes and prev_anchor is not None:
            ap = np.broadcast_to(prev_anchor[..., None], sg.shape)
            pp = quoted(np.where(np.isfinite(ap), ap, nan), prev_mid, z[:, 4])
            known.append((np.where(np.isfinite(ap), ap, nan), pp))
        m_b, v_b = _bridge(np.full(sg.shape, 60.0), known, sg)
        self.back = m_b + np.sqrt(v_b) * z[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            self.fair_now = ndtr((self.now - p_open) / (sg * np.sqrt(L)))


def _path(c0: np.ndarray, c1: np.ndarray, open_: np.ndarray, sigma: np.ndarray, z: np.ndarray, left: np.ndarray,
          mid: np.ndarray, age: np.ndarray, prev_mid: np.ndarray, prev_age: np.ndarray, sigma_noise: float, lag: float,
          noise: float) -> tuple[_UnseenPath, np.ndarray]:
    """The draws under a volatility error and a quote model, and their log weights (both quotes)."""
    sg = sigma[..., None] * np.exp(sigma_noise * z[:, 3] - 0.5 * sigma_noise ** 2)
    path = _UnseenPath(c0, c1, open_, sg, z, left, age + lag, mid, noise, prev_age + 60.0 + lag, prev_mid)
    return path, path.logw


def fit_quote_model(args: tuple[np.ndarray, ...], sigma_noises: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3),
                    lags: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 5.0),
                    noises: tuple[float, ...] = (0.75, 1.0, 1.5, 2.0, 3.0, 4.0)) -> tuple[float, float, float]:
    """The volatility error and the quote model ``(sigma_noise, lag s, noise cents)`` maximising the quotes'
    marginal likelihood (the mean importance weight of the draws, summed in logs over steps): a measurement model
    of the market maker, estimated from the files alone, no action involved. ``args`` are :func:`_path`'s arrays
    before ``sigma_noise``. The lag is searched first at the middle volatility error, then the rest around it."""
    def value(sn: float, lag: float, noise: float) -> float:
        _, lw = _path(*args, sn, lag, noise)
        top = lw.max(-1)
        ok = np.isfinite(top)
        return float((top[ok] + np.log(np.exp(lw[ok] - top[ok][:, None]).mean(-1))).sum())

    sn0 = sigma_noises[len(sigma_noises) // 2]
    lag = max(lags, key=lambda g: max(value(sn0, g, n) for n in (noises[1::2] or noises)))
    best = max(((sn, lag, n) for sn in sigma_noises for n in noises), key=lambda t: value(*t))
    return float(best[0]), float(best[1]), float(best[2])


def policy_data(steps: pd.DataFrame, actions: np.ndarray, *, strong: float, sigma: pd.Series | None = None,
                sigma_noise: float | None = None, quote_noise: float | None = None, quote_lag: float = 0.0,
                n_draws: int = 64, seed: int = 0,
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
    sigma_noise : float, optional
        Standard deviation of ``log(true / estimated volatility)`` scattered over the draws; ``None`` fits it
        with the quote model (by the quotes' likelihood).
    quote_noise, quote_lag : float
        The quote model (cents of noise around the fair value of the price ``quote_lag`` seconds before the
        quote's time stamp) for the draws' weights; ``quote_noise=None`` fits both by maximum likelihood of
        the quotes on these steps (:func:`fit_quote_model`); ``0``: unweighted draws. The step table may
        carry ``quote_age_s`` (seconds since the quote in force was published); without it quotes count as
        fresh.
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
    z = unseen_draws(n_draws, seed)
    age = grid(s["quote_age_s"].to_numpy()) if "quote_age_s" in s else np.zeros((M, K_STEPS))
    prev_age = np.concatenate([np.full((M, 1), np.nan), age[:, :-1]], axis=1)
    prev_mid = grid(s["up_mid"].to_numpy() - s["quote_change"].to_numpy())
    args = (c0, c1, open_, sigma, z, left_g, mid, age, prev_mid, prev_age)
    if quote_noise is None or sigma_noise is None:
        sigma_noise, quote_lag, quote_noise = fit_quote_model(
            args, sigma_noises=(0.0, 0.1, 0.2, 0.3) if sigma_noise is None else (float(sigma_noise),),
            **({} if quote_noise is None else {"lags": (float(quote_lag),), "noises": (float(quote_noise),)}))
    path, lw = _path(*args, sigma_noise, quote_lag, quote_noise)
    sg = path.sg
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = 100.0 * (path.fair_now - mid[..., None])
        momentum = (path.now - path.back) / (sg * math.sqrt(60.0))
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    top = lw.max(-1, keepdims=True)
    w = np.where(np.isfinite(top), np.exp(lw - np.where(np.isfinite(top), top, 0.0)), 1.0)
    weights = w / w.sum(-1, keepdims=True)
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
                      quote_noise=float(quote_noise), quote_lag=float(quote_lag), sigma_noise=float(sigma_noise))
