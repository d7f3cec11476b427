"""Labeling: triple-barrier labels (AFML ch. 3), event samplers, labels of the trader's own trades, the
barrier levels that best explain the trader's exits, and the optimal-trading-rule experiment (AFML ch. 13).

AFML = M. López de Prado, *Advances in Financial Machine Learning* (Wiley, 2018).

Price series
------------
``close`` is a ``pd.Series`` of prices with a sorted, duplicate-free ``DatetimeIndex`` (tz-aware or
tz-naive) and finite values. Duplicate timestamps or an unsorted index raise :class:`LabelingError`
(aggregate with ``close.groupby(level=0).last()`` or ``close.sort_index()`` first): a silent choice of
which of two prices at the same instant is "the" price would change labels.

No look-ahead
-------------
An event at time ``t0`` is entered at the last price at or before ``t0``. Its barriers are searched on
the prices strictly after that bar, up to and including the vertical barrier, and the search stops at the
first touch: a label never reads a price after its first touch or after its vertical barrier
(``tests/test_labeling.py`` perturbs and appends prices after them and checks nothing changes).

Conventions (and where they differ from AFML / mlfinlab)
--------------------------------------------------------
* A barrier is *touched* when the return reaches it: ``ret >= pt * target`` or ``ret <= -sl * target``
  (up to 1e-12, so that 0.52 - 0.40 reaches +0.12 on a one-cent price grid). AFML snippet 3.2 uses
  strict inequalities; on continuous prices the two agree.
* ``pt_sl`` is honoured asymmetrically with or without a side. (The 2019 mlfinlab ``get_events`` used the
  profit-taking multiple for both barriers when ``side`` was None; a test guards against that.)
* Without a side the label is the sign of the return at the first touch (AFML snippet 3.5, getBins).
  With a side (meta-labeling, AFML snippets 3.6-3.7) returns are multiplied by the side and the label is 1 if that
  return is > 0, else 0.
* ``vertical_label="zero"`` (default) labels events that end at the vertical barrier 0, whatever the sign
  of their return. This is the convention of mlfinlab's ``barrier_touched`` and the one that reproduces
  its reference test on the E-mini dollar bars: labels {1: 3, -1: 3, 0: 2} (with ``"sign"`` the same
  events give {1: 5, -1: 3}: both vertical touches there have a positive return).
  ``vertical_label="sign"`` is AFML's getBins: the sign of the return at the vertical barrier.
* ``min_ret``: events are kept where ``target > min_ret`` (strict, AFML snippet 3.3); a NaN target
  drops the event.
* ``cusum_filter`` works on differences of log prices by default: that is what reproduces mlfinlab's
  events (9 CUSUM events with h = 0.02, 8 kept with min_ret = 0.005; raw differences with h = 0.02 fire on
  almost every bar of a ~2,000-point index: 968 events). Unlike mlfinlab, the first difference is not
  skipped (AFML's ``diff.index[1:]`` skips the NaN; mlfinlab dropped the NaN and then skipped a real one).
  Both give the same 9 events here.

Why hand-written: no maintained library implements triple-barrier labeling (mlfinlab moved to a
proprietary licence; its 2019 code loops over events in pandas). The first-touch search is a numba loop
because each event stops at a different, data-dependent bar; everything else is vectorised numpy.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numba
import numpy as np
import pandas as pd
from scipy import stats

from workbench.ledger import DOWN, UP

ReturnKind = Literal["simple", "log", "absolute"]
VerticalLabel = Literal["zero", "sign"]
BARRIERS = ("lower", "vertical", "upper")  # indexed by barrier code + 1
_EPS = 1e-12  # tolerance of a touch (see the module docstring)
_DUST = 1e-9  # inventory below this many shares is flat (as in workbench.ledger)


class LabelingError(ValueError):
    """Input that cannot be labeled: unsorted or duplicated times, bad barriers, misaligned series."""


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------
def _check_close(close: pd.Series, *, positive: bool = True) -> np.ndarray:
    """Validate a price series; return its values as float64."""
    if not isinstance(close, pd.Series):
        raise LabelingError(f"close must be a pandas Series of prices, got {type(close).__name__}")
    if not isinstance(close.index, pd.DatetimeIndex):
        raise LabelingError(f"close must have a DatetimeIndex, got {type(close.index).__name__}")
    if len(close) == 0:
        raise LabelingError("close is empty")
    idx = close.index
    if idx.hasnans:
        raise LabelingError("close's index holds NaT")
    if idx.has_duplicates:
        dup = idx[idx.duplicated()][:3].tolist()
        raise LabelingError(f"close has duplicate timestamps (e.g. {dup}); aggregate them first, "
                            "e.g. close.groupby(level=0).last()")
    if not idx.is_monotonic_increasing:
        raise LabelingError("close's index is not sorted in time; sort it first (close.sort_index())")
    values = close.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise LabelingError(f"close holds {int((~np.isfinite(values)).sum())} NaN or infinite prices; drop them first")
    if positive and (values <= 0).any():
        raise LabelingError("relative returns need positive prices; use returns='absolute' for prices that can be 0")
    return values


def _ns(idx: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch (UTC for tz-aware indexes) as int64."""
    return idx.as_unit("ns").asi8


def _event_index(events: Any, close_index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Event times as a DatetimeIndex in close's timezone. A Series/DataFrame gives its index."""
    if isinstance(events, (pd.Series, pd.DataFrame)):
        events = events.index
    try:
        idx = pd.DatetimeIndex(events)
    except (TypeError, ValueError) as exc:
        raise LabelingError(f"events must be timestamps (a DatetimeIndex), got {type(events).__name__}: "
                            f"{exc}") from None
    if (idx.tz is None) != (close_index.tz is None):
        raise LabelingError(f"events are {'tz-naive' if idx.tz is None else 'tz-aware'} but close's index is "
                            f"{'tz-naive' if close_index.tz is None else 'tz-aware'}: make them consistent")
    if idx.tz is not None:
        idx = idx.tz_convert(close_index.tz)
    if idx.hasnans:
        raise LabelingError("events hold NaT")
    if idx.has_duplicates:
        raise LabelingError(f"duplicate event times (e.g. {idx[idx.duplicated()][:3].tolist()}): one event per time")
    if not idx.is_monotonic_increasing:
        raise LabelingError("event times are not sorted; sort them first (events.sort_values())")
    return idx


def _aligned(x: Any, events: pd.DatetimeIndex, name: str) -> np.ndarray:
    """A scalar, a Series indexed by time (reindexed at the events: missing -> NaN) or an array of len(events)."""
    n = len(events)
    if x is None:
        raise LabelingError(f"{name} is required")
    if np.ndim(x) == 0:
        return np.full(n, float(x))
    if isinstance(x, pd.Series):
        if isinstance(x.index, pd.DatetimeIndex):
            s = x
            if (s.index.tz is None) != (events.tz is None):
                raise LabelingError(f"{name}'s index and the events disagree on having a timezone")
            if s.index.has_duplicates:
                raise LabelingError(f"{name} has duplicate timestamps")
            return s.reindex(events).to_numpy(dtype=np.float64)
        if len(x) != n:
            raise LabelingError(f"{name} must be indexed by time or have one value per event ({n}), got {len(x)}")
        return x.to_numpy(dtype=np.float64)
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (n,):
        raise LabelingError(f"{name} must be a scalar, a time-indexed Series or have one value per event ({n}), "
                            f"got shape {arr.shape}")
    return arr


def _multiples(pt_sl: Sequence[float | None]) -> tuple[float, float]:
    """(pt, sl) multiples; 0 or None disables a barrier (returned as 0.0)."""
    if isinstance(pt_sl, (str, bytes)) or len(pt_sl) != 2:
        raise LabelingError(f"pt_sl must be a pair (profit-taking, stop-loss), got {pt_sl!r}")
    out = []
    for name, m in zip(("profit-taking", "stop-loss"), pt_sl):
        m = 0.0 if m is None else float(m)
        if not (math.isfinite(m) and m >= 0):
            raise LabelingError(f"{name} multiple must be >= 0 (0 or None disables it), got {m!r}")
        out.append(m)
    return out[0], out[1]


def _thresholds(pt: float, sl: float, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return thresholds of the position: upper = pt * target (inf if off), lower = -sl * target (-inf if off)."""
    upper = pt * target if pt > 0 else np.full(len(target), np.inf)
    lower = -sl * target if sl > 0 else np.full(len(target), -np.inf)
    return upper, lower


def _returns_mode(returns: str, values: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Transform prices so the kernel computes returns as a ratio (mode 0) or a difference (mode 1)."""
    if returns == "simple":
        return values, base, 0
    if returns == "log":
        return np.log(values), np.log(base), 1
    if returns == "absolute":
        return values, base, 1
    raise LabelingError(f"returns must be 'simple', 'log' or 'absolute', got {returns!r}")


# ------------------------------------------------------------------------------------------------
# The first-touch kernel
# ------------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _first_touch(values: np.ndarray, base: np.ndarray, start: np.ndarray, stop: np.ndarray, upper: np.ndarray,
                 lower: np.ndarray, side: np.ndarray, mode: int) -> tuple[np.ndarray, np.ndarray]:
    """First bar in ``[start, stop]`` where the side-adjusted return from ``base`` reaches a barrier.

    Returns ``(j, code)`` per event: the touch bar (``stop`` when none is touched: the vertical barrier)
    and the barrier code (+1 upper, -1 lower, 0 vertical). ``mode`` 0: return = v / base - 1; 1: v - base.
    Reads nothing beyond the touch. Hand-written (numba) because no maintained library does it and each
    event stops at a data-dependent bar, which numpy cannot express without scanning every bar.
    """
    n = start.shape[0]
    j_out = np.empty(n, dtype=np.int64)
    code = np.zeros(n, dtype=np.int8)
    for e in range(n):
        j_out[e] = stop[e]
        b, s, up, lo = base[e], side[e], upper[e] - _EPS, lower[e] + _EPS
        for j in range(start[e], stop[e] + 1):
            r = (values[j] / b - 1.0) * s if mode == 0 else (values[j] - b) * s
            if r >= up:
                j_out[e] = j
                code[e] = 1
                break
            if r <= lo:
                j_out[e] = j
                code[e] = -1
                break
    return j_out, code


def _labels(ret: np.ndarray, code: np.ndarray, has_side: bool, vertical_label: str) -> np.ndarray:
    """AFML getBins (sign, or 1/0 for meta-labels), with vertical touches 0 under ``vertical_label='zero'``."""
    if vertical_label not in ("zero", "sign"):
        raise LabelingError(f"vertical_label must be 'zero' or 'sign', got {vertical_label!r}")
    lab = (ret > 0).astype(np.int64) if has_side else np.sign(ret).astype(np.int64)
    if vertical_label == "zero":
        lab[code == 0] = 0
    return lab


# ------------------------------------------------------------------------------------------------
# Event samplers (AFML ch. 2-3)
# ------------------------------------------------------------------------------------------------
def daily_vol(close: pd.Series, lookback: int = 100) -> pd.Series:
    """Daily volatility estimate, AFML snippet 3.1.

    Each bar's return is taken relative to the last bar strictly before ``t - 1 day`` (found with
    ``searchsorted`` on the index); bars with no such earlier bar are dropped (so the result is shorter
    than ``close``, as in AFML and mlfinlab). The volatility is the exponentially weighted standard
    deviation of those returns with ``span=lookback``.

    Parameters
    ----------
    close : Series, shape (n,)
        Prices with a sorted, unique DatetimeIndex.
    lookback : int
        EWM span, in bars.

    Returns
    -------
    Series, shape (m,), m <= n
        Volatility of one-day simple returns (a fraction, e.g. 0.009 = 0.9%), indexed by bar time.
        Causal: the value at t uses prices at or before t only.
    """
    values = _check_close(close)
    if not (isinstance(lookback, (int, np.integer)) and lookback >= 1):
        raise LabelingError(f"lookback must be a positive integer (bars), got {lookback!r}")
    idx = close.index
    j = idx.searchsorted(idx - pd.Timedelta(days=1))  # first bar at or after t - 1 day
    keep = j > 0
    ret = pd.Series(values[keep] / values[j[keep] - 1] - 1.0, index=idx[keep])
    return ret.ewm(span=lookback).std()


@numba.njit(cache=True, nogil=True)
def _cusum(diff: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Symmetric CUSUM (AFML snippet 2.4): flags where the positive or negative run exceeds h."""
    fire = np.zeros(diff.shape[0], dtype=np.bool_)
    s_pos = 0.0
    s_neg = 0.0
    for i in range(diff.shape[0]):
        d = diff[i]
        if not np.isfinite(d):
            continue
        s_pos = max(0.0, s_pos + d)
        s_neg = min(0.0, s_neg + d)
        if s_neg < -h[i]:
            s_neg = 0.0
            fire[i] = True
        elif s_pos > h[i]:
            s_pos = 0.0
            fire[i] = True
    return fire


def cusum_filter(close: pd.Series, h: float | pd.Series, *, log: bool = True) -> pd.DatetimeIndex:
    """Symmetric CUSUM filter, AFML section 2.5.2.1 (snippet 2.4).

    Runs ``S+ = max(0, S+ + d)`` and ``S- = min(0, S- + d)`` over the price differences ``d`` and samples
    a bar when ``S- < -h`` or ``S+ > h``, resetting that run. Causal: the decision at a bar uses prices
    up to it.

    Parameters
    ----------
    close : Series, shape (n,)
        Prices with a sorted, unique DatetimeIndex.
    h : float or Series
        Threshold in the units of ``d`` (log-price differences by default, so 0.02 ~ a 2% move). A Series
        is aligned to ``close``'s index (the threshold in force at each bar, e.g. :func:`daily_vol`); a
        bar where it is NaN cannot fire (the runs still accumulate).
    log : bool
        Differences of log prices (default, what mlfinlab used) or of raw prices.

    Returns
    -------
    DatetimeIndex
        Times of the sampled bars (a subset of ``close.index``).
    """
    values = _check_close(close, positive=log)
    if isinstance(h, pd.Series):
        hv = h.reindex(close.index).to_numpy(dtype=np.float64)
        if (hv[np.isfinite(hv)] <= 0).any():
            raise LabelingError("the CUSUM threshold h must be positive")
        hv = np.where(np.isfinite(hv), hv, np.inf)
    else:
        if not (np.ndim(h) == 0 and float(h) > 0):
            raise LabelingError(f"the CUSUM threshold h must be a positive number or a Series, got {h!r}")
        hv = np.full(len(values), float(h))
    x = np.log(values) if log else values
    diff = np.r_[np.nan, np.diff(x)]
    return close.index[_cusum(diff, hv)]


def add_vertical_barrier(t_events: Any, close: pd.Series, num_days: float = 1.0) -> pd.Series:
    """Vertical barrier ``num_days`` after each event, AFML snippet 3.4.

    The barrier is the first bar at or after ``t0 + num_days``. Unlike the book, which drops them,
    events whose barrier lies beyond the data are kept with ``NaT``: :func:`triple_barrier` then uses the
    last bar and marks them ``truncated``.

    Returns
    -------
    Series of datetimes, indexed by the event times.
    """
    _check_close(close, positive=False)
    ev = _event_index(t_events, close.index)
    if not (num_days > 0):
        raise LabelingError(f"num_days must be positive, got {num_days!r}")
    j = close.index.searchsorted(ev + pd.Timedelta(days=num_days))
    inside = j < len(close)
    t1 = pd.Series(pd.NaT, index=ev, dtype=close.index.dtype)
    t1[inside] = close.index[j[inside]]
    return t1


# ------------------------------------------------------------------------------------------------
# Triple barrier (AFML ch. 3)
# ------------------------------------------------------------------------------------------------
def _vertical_times(vertical: Any, ev: pd.DatetimeIndex, index: pd.DatetimeIndex) -> Any:
    """``vertical`` unchanged when it is None, bars or a duration; else one timestamp per event."""
    if vertical is None or isinstance(vertical, (int, np.integer, pd.Timedelta, _dt.timedelta, np.timedelta64, str)):
        return vertical
    if isinstance(vertical, pd.Series) and isinstance(vertical.index, pd.DatetimeIndex):
        vertical = vertical.reindex(ev)
    try:
        tvi = pd.DatetimeIndex(vertical)
    except (TypeError, ValueError):
        raise LabelingError("vertical must be None, a number of bars (int), a duration (Timedelta) or "
                            f"timestamps per event, got {type(vertical).__name__}") from None
    if len(tvi) != len(ev):
        raise LabelingError(f"vertical timestamps must give one per event ({len(ev)}), got {len(tvi)}")
    if (tvi.tz is None) != (index.tz is None):
        raise LabelingError("vertical timestamps and close's index disagree on having a timezone")
    return tvi.tz_convert(index.tz) if tvi.tz is not None else tvi


def _vertical_bars(vertical: Any, ev: pd.DatetimeIndex, i0: np.ndarray, index: pd.DatetimeIndex
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Bar of each event's vertical barrier and whether it lay beyond the data (then the last bar)."""
    n_bars = len(index)
    last = n_bars - 1
    if vertical is None:
        return np.full(len(ev), last, dtype=np.int64), np.ones(len(ev), dtype=bool)
    if isinstance(vertical, (int, np.integer)) and not isinstance(vertical, bool):
        if vertical < 1:
            raise LabelingError(f"a vertical barrier in bars must be >= 1, got {vertical}")
        iv = i0 + int(vertical)
        return np.minimum(iv, last), iv > last
    idx_ns = _ns(index)
    if isinstance(vertical, (pd.Timedelta, _dt.timedelta, np.timedelta64, str)):
        td = pd.Timedelta(vertical)
        if td <= pd.Timedelta(0):
            raise LabelingError(f"a vertical barrier as a duration must be positive, got {vertical!r}")
        tv = _ns(ev) + td.value
        missing = np.zeros(len(ev), dtype=bool)
    else:  # per-event timestamps (e.g. a market's expiry); NaT = no barrier within the data
        tvi = _vertical_times(vertical, ev, index)
        missing = np.asarray(tvi.isna())
        tv = np.where(missing, np.iinfo(np.int64).max, _ns(tvi))
        if (tv[~missing] < _ns(ev)[~missing]).any():
            raise LabelingError("a vertical barrier lies before its event")
    iv = np.searchsorted(idx_ns, tv, side="right") - 1  # last bar at or before the barrier time
    beyond = missing | (tv > idx_ns[-1])
    return np.maximum(iv, i0), beyond


def triple_barrier(close: pd.Series, events: Any, pt_sl: Sequence[float | None], target: float | pd.Series | np.ndarray,
                   vertical: int | pd.Timedelta | str | pd.Series | Sequence[Any] | None = None,
                   side: float | pd.Series | np.ndarray | None = None, min_ret: float = 0.0, *,
                   returns: ReturnKind = "simple", vertical_label: VerticalLabel = "zero") -> pd.DataFrame:
    """Triple-barrier labels, AFML ch. 3 (snippets 3.2-3.7), vectorised with a numba first-touch search.

    Parameters
    ----------
    close : Series, shape (n_bars,)
        Prices, sorted unique DatetimeIndex (tz-aware or tz-naive).
    events : DatetimeIndex (or a Series/DataFrame indexed by event time), shape (n_events,)
        Sorted, unique event times, not before the first bar. Entry price = last price at or before each.
    pt_sl : (pt, sl)
        Profit-taking and stop-loss multiples of ``target``; 0 or None disables that barrier. Asymmetric
        values are honoured with or without ``side``.
    target : float, Series or array
        Barrier width per event: a fraction for ``returns='simple'|'log'`` (e.g. :func:`daily_vol`), a
        price distance for ``returns='absolute'``. A time-indexed Series is read at the event times.
    vertical : None, int, Timedelta/str, or timestamps per event
        Time limit: N bars after the entry bar, a duration (last bar at or before ``t0 + duration``), or
        per-event timestamps (e.g. a market's expiry, or :func:`add_vertical_barrier`; NaT = none). None:
        no limit (the last bar). A limit beyond the data becomes the last bar, flagged ``truncated``.
    side : None, float, Series or array of +1/-1
        Side of the bet (meta-labeling): returns are multiplied by it, labels become {0, 1}.
    min_ret : float
        Events are kept where ``target > min_ret`` (AFML snippet 3.3).
    returns : 'simple' | 'log' | 'absolute'
        Return from the entry price: ``p / p0 - 1`` (AFML), ``log(p / p0)``, or ``p - p0`` (price units,
        for prices that are probabilities such as prediction-market tokens).
    vertical_label : 'zero' | 'sign'
        Label of events that end at the vertical barrier (see the module docstring).

    Returns
    -------
    DataFrame, one row per kept event, index ``t0`` (event time)
        ``t1`` first touch time (bar time) | ``barrier`` 'upper' (profit taking), 'lower' (stop loss) or
        'vertical' | ``ret`` side-adjusted return at ``t1`` | ``label`` | ``target`` | ``side`` (if given) |
        ``truncated`` (the vertical barrier lay beyond the data: the last bar was used; a label ending
        there is provisional) | ``t_vertical`` the vertical barrier's bar | ``upper``, ``lower`` return
        thresholds (NaN when disabled).

    Raises
    ------
    LabelingError
        Unsorted or duplicated times, NaN prices, events before the first bar, bad ``pt_sl`` or ``side``.
    """
    values = _check_close(close, positive=returns != "absolute")
    ev = _event_index(events, close.index)
    pt, sl = _multiples(pt_sl)
    tgt = _aligned(target, ev, "target")
    sd = None if side is None else _aligned(side, ev, "side")
    vertical = _vertical_times(vertical, ev, close.index)  # per-event timestamps are aligned before filtering
    if not np.isfinite(min_ret):
        raise LabelingError(f"min_ret must be a finite number, got {min_ret!r}")
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(tgt) & (tgt > min_ret)
    ev, tgt = ev[keep], tgt[keep]
    if isinstance(vertical, pd.DatetimeIndex):
        vertical = vertical[keep]
    if sd is not None:
        sd = sd[keep]
        if not np.isin(sd, (-1.0, 1.0)).all():
            raise LabelingError(f"side must be +1 or -1 for every kept event, got {np.unique(sd)[:5].tolist()}")
    idx_ns = _ns(close.index)
    i0 = np.searchsorted(idx_ns, _ns(ev), side="right") - 1  # entry bar: last bar at or before t0
    if (i0 < 0).any():
        raise LabelingError(f"{int((i0 < 0).sum())} events precede the first price ({close.index[0]})")
    iv, beyond = _vertical_bars(vertical, ev, i0, close.index)
    upper, lower = _thresholds(pt, sl, tgt)
    side_arr = np.ones(len(ev)) if sd is None else sd
    vals, base, mode = _returns_mode(returns, values, values[i0])
    j, code = _first_touch(vals, base, i0 + 1, iv, upper, lower, side_arr, mode)
    ret = ((vals[j] / base - 1.0) if mode == 0 else (vals[j] - base)) * side_arr
    out = pd.DataFrame({
        "t1": close.index[j], "barrier": np.asarray(BARRIERS, dtype=object)[code + 1], "ret": ret,
        "label": _labels(ret, code, sd is not None, vertical_label), "target": tgt,
    }, index=pd.Index(ev, name="t0"))
    if sd is not None:
        out["side"] = sd.astype(np.int64)
    out["truncated"] = beyond
    out["t_vertical"] = close.index[iv]
    out["upper"] = np.where(np.isfinite(upper), upper, np.nan)
    out["lower"] = np.where(np.isfinite(lower), lower, np.nan)
    out["barrier"] = out["barrier"].astype("str")
    return out


# ------------------------------------------------------------------------------------------------
# The studied trader's trades: price paths, entries, round trips, labels
# ------------------------------------------------------------------------------------------------
def market_paths(events: pd.DataFrame) -> pd.DataFrame:
    """Up-equivalent quote path of every market, ending at its settlement value.

    From ``price_change`` rows: ``mid = (bid + ask) / 2`` for an Up quote, ``1 - mid`` for a Down quote
    (bid and ask are mirrored likewise). A resolved market (a ``resolution`` row) gets a last point at its
    ``market_end`` (the resolution time if unknown) worth 1 if Up won, else 0; quotes at or after it are
    dropped. Two quotes of one market in the same millisecond (or the same market seen by two wallets):
    the last is kept.

    Returns
    -------
    DataFrame sorted by (slug, t): ``slug``, ``t`` (UTC ms), ``mid``, ``bid``, ``ask`` (Up-equivalent;
    bid = ask = value at settlement), ``settlement`` (bool).
    """
    q = events[events["type"] == "price_change"]
    down = (q["outcome"] == DOWN).to_numpy()
    bid, ask = q["bid"].to_numpy(dtype=np.float64), q["ask"].to_numpy(dtype=np.float64)
    quotes = pd.DataFrame({"slug": q["slug"].to_numpy(dtype=object), "t": q["t"].to_numpy(dtype=np.int64),
                           "mid": np.where(down, 1 - (bid + ask) / 2, (bid + ask) / 2),
                           "bid": np.where(down, 1 - ask, bid), "ask": np.where(down, 1 - bid, ask),
                           "settlement": False})
    r = events[events["type"] == "resolution"]
    r = r.assign(_end=r["market_end"].astype("Float64").fillna(r["t"].astype("Float64")))
    r = r.groupby("slug", sort=False).agg(winner=("outcome", "last"), t=("_end", "last")).reset_index()
    value = np.where(r["winner"].to_numpy(dtype=object) == UP, 1.0, 0.0)
    settle = pd.DataFrame({"slug": r["slug"].to_numpy(dtype=object), "t": r["t"].to_numpy(dtype=np.int64),
                           "mid": value, "bid": value, "ask": value, "settlement": True})
    at = pd.Index(settle["slug"]).get_indexer(quotes["slug"].to_numpy(dtype=object))
    st_t = settle["t"].to_numpy(dtype=np.float64)
    settle_t = np.where(at >= 0, st_t[np.maximum(at, 0)] if len(st_t) else 0.0, np.inf)
    quotes = quotes[quotes["t"].to_numpy() < settle_t]
    paths = pd.concat([quotes, settle], ignore_index=True).sort_values(["slug", "t"], kind="stable")
    paths = paths.drop_duplicates(["slug", "t"], keep="last").reset_index(drop=True)
    paths["slug"] = paths["slug"].astype("str")
    return paths


class _Segments:
    """Per-slug segments of a (slug, t)-sorted path, with vectorised as-of lookups by compound key."""

    _SHIFT = np.int64(1) << np.int64(43)  # > 2**43 ms (year 2248): slug code * 2**43 + t never collides

    def __init__(self, slugs: np.ndarray, t: np.ndarray) -> None:
        code, uniques = pd.factorize(np.asarray(slugs, dtype=object))  # rows are grouped: codes ascend
        self.names = pd.Index(uniques)
        code = code.astype(np.int64)
        self.key = code * self._SHIFT + t.astype(np.int64)
        n_codes = len(uniques)
        self.lo = np.searchsorted(code, np.arange(n_codes), side="left")
        self.hi = np.searchsorted(code, np.arange(n_codes), side="right")  # exclusive

    def code(self, slugs: np.ndarray) -> np.ndarray:
        """Segment of each slug, -1 when the path has no such market."""
        return self.names.get_indexer(np.asarray(slugs, dtype=object)).astype(np.int64)

    def asof(self, code: np.ndarray, t: np.ndarray, *, inclusive: bool = True) -> np.ndarray:
        """Index of the last point at (or strictly before) ``t`` in each segment; -1 if none."""
        k = np.maximum(code, 0) * self._SHIFT + t.astype(np.int64)
        j = np.searchsorted(self.key, k, side="right" if inclusive else "left") - 1
        lo = self.lo[np.maximum(code, 0)] if len(self.lo) else np.zeros(len(code), np.int64)
        return np.where((code >= 0) & (j >= lo), j, -1)


def fill_entries(trades: pd.DataFrame) -> pd.DataFrame:
    """The trader's fills as entries for :func:`label_trades`: ``t, slug, side, entry_price, qty``.

    ``side`` is +1 for a fill that adds Up-equivalent exposure (BUY Up, SELL Down), -1 otherwise;
    ``entry_price`` is the fill's Up-equivalent price.
    """
    q = trades["up_equiv_qty"].to_numpy(dtype=np.float64)
    return pd.DataFrame({"t": trades["t"].to_numpy(dtype=np.int64), "slug": trades["slug"].to_numpy(dtype=object),
                         "side": np.where(q > 0, 1, -1), "entry_price": trades["up_equiv_price"].to_numpy(np.float64),
                         "qty": np.abs(q)}, index=trades.index)


def round_trips(positions: pd.DataFrame) -> pd.DataFrame:
    """Round trips of the net Up-equivalent inventory, per (wallet, market), from ``positions``.

    A round trip opens when the inventory leaves 0 (or changes sign) and closes when it returns to 0
    (or changes sign) or the market settles.

    Returns
    -------
    DataFrame, one row per round trip, in order of entry time
        ``wallet, slug, t`` (entry, UTC ms), ``side`` (+1 long / -1 short Up-equivalent),
        ``entry_price`` (Up-equivalent average cost after the opening row), ``entry_qty``, ``max_qty``,
        ``n_rows`` (state changes while open), ``closed``, ``exit_t``, ``exit_price`` (the closing fill's
        Up-equivalent price; 1 or 0 at settlement), ``exit_reason`` ('trade', 'settlement', or the closing
        activity: 'merge', 'redeem'...), ``pnl`` (realised USDC over the trip, closing row included, as the
        ledger books it: per-token average cost, so a trip closed by buying the other token rather than
        selling realises nothing until the market settles), ``holding_s``.
    """
    key = positions["wallet"].astype("str") + "|" + positions["slug"].astype("str")
    order = np.lexsort((np.arange(len(positions)), pd.factorize(key)[0]))
    p = positions.iloc[order]
    k = key.to_numpy(dtype=object)[order]
    net = p["net_up_equiv"].to_numpy(dtype=np.float64)
    new_market = np.r_[True, k[1:] != k[:-1]]
    prev = np.where(new_market, 0.0, np.r_[0.0, net[:-1]])
    flat, prev_flat = np.abs(net) < _DUST, np.abs(prev) < _DUST
    flip = ~flat & ~prev_flat & (np.sign(net) != np.sign(prev))
    opens = ~flat & (prev_flat | flip)
    closes = ~prev_flat & (flat | flip)
    trip_now = np.cumsum(opens) - 1  # trip open after each row
    trip_before = trip_now - opens  # trip open before each row (the one a closing row ends)
    n = int(opens.sum())
    event = p["event"].to_numpy(dtype=object)
    outcome = p["outcome"].to_numpy(dtype=object)
    price = p["price"].to_numpy(dtype=np.float64)
    up_px = np.where(outcome == DOWN, 1 - price, price)
    exit_px = np.where(event == "settlement", np.where(outcome == UP, 1.0, 0.0),
                       np.where(event == "trade", up_px, np.nan))
    t = p["t"].to_numpy(dtype=np.int64)
    o = np.flatnonzero(opens)
    trips = pd.DataFrame({"wallet": p["wallet"].to_numpy(dtype=object)[o], "slug": p["slug"].to_numpy(dtype=object)[o],
                          "t": t[o], "side": np.sign(net[o]).astype(np.int64),
                          "entry_price": p["entry_price_up_equiv"].to_numpy(dtype=np.float64)[o],
                          "entry_qty": np.abs(net[o])})
    in_trip = ~prev_flat  # rows acting on an open trip (closing rows included)
    held = ~flat  # rows after which a trip is open
    trips["max_qty"] = pd.Series(np.abs(net[held])).groupby(trip_now[held]).max().reindex(range(n)).to_numpy()
    trips["n_rows"] = np.bincount(trip_now[held], minlength=n)[:n] + np.bincount(trip_before[closes & flat],
                                                                                minlength=n)[:n]
    c = np.flatnonzero(closes)
    closed = np.zeros(n, dtype=bool)
    closed[trip_before[c]] = True
    trips["closed"] = closed
    for name, vals in (("exit_t", t[c].astype(np.float64)), ("exit_price", exit_px[c])):
        col = np.full(n, np.nan)
        col[trip_before[c]] = vals
        trips[name] = col
    trips["exit_t"] = pd.array(trips["exit_t"], dtype="Float64").astype("Int64")
    reason = np.full(n, None, dtype=object)
    reason[trip_before[c]] = event[c]
    trips["exit_reason"] = pd.Series(reason, dtype="str")
    trips["pnl"] = np.bincount(trip_before[in_trip], weights=p["realized_delta"].to_numpy(np.float64)[in_trip],
                               minlength=n)[:n]
    trips["holding_s"] = (trips["exit_t"].astype("Float64") - trips["t"]) / 1000.0
    for col in ("wallet", "slug"):
        trips[col] = trips[col].astype("str")
    return trips.sort_values("t", kind="stable").reset_index(drop=True)


def label_trades(events: pd.DataFrame, entries: pd.DataFrame, pt_sl: Sequence[float | None] = (0.12, 0.15),
                 target: float | np.ndarray = 1.0, vertical: pd.Timedelta | str | None = None, *,
                 returns: ReturnKind = "absolute", vertical_label: VerticalLabel = "sign") -> pd.DataFrame:
    """Triple-barrier labels of the trader's fills or round-trip entries on the path of what was traded.

    Each entry is a bet of ``side`` (+1 long / -1 short Up-equivalent) at ``entry_price`` at time ``t`` in
    market ``slug``. Its path is :func:`market_paths`: the market's Up-equivalent mid quotes strictly after
    ``t``, ending at the settlement value (1 or 0) at the market's end. Barriers are on the side-adjusted
    return from the entry price, by default in absolute price units (a token price is a probability):
    with ``pt_sl=(0.12, 0.15)`` and ``target=1`` the profit-taking barrier is +0.12 per share and the stop
    loss -0.15. Labels are meta-labels (AFML snippet 3.7): 1 if the side-adjusted return at the first touch is > 0.
    ``vertical_label`` defaults to ``'sign'`` here because the natural vertical barrier is the settlement,
    whose outcome is informative.

    Parameters
    ----------
    events : DataFrame
        Ingested events (``workbench.ingest``): ``price_change`` and ``resolution`` rows are used.
    entries : DataFrame, shape (n,)
        Columns ``t`` (UTC ms), ``slug``, ``side``, ``entry_price``: :func:`fill_entries` or :func:`round_trips`.
    pt_sl, target
        Barrier multiples and width (scalar or one per entry), as in :func:`triple_barrier`.
    vertical : None or duration
        None: the market's settlement. A duration: the last quote at or before ``t + duration`` (or the
        settlement, if earlier).
    returns : 'absolute' | 'simple' | 'log'
        Return from the entry price.

    Returns
    -------
    DataFrame indexed like ``entries``
        ``t, slug, side, entry_price``, ``t1`` (UTC ms of the touch), ``barrier``, ``exit_mid`` (Up mid at
        the touch), ``ret``, ``label`` (Int64), ``target``, ``settled`` (ended at the settlement),
        ``truncated`` (the market has no resolution and its quotes end before the vertical barrier). An
        entry in a market without quotes gets barrier 'none' and missing values.
    """
    pt, sl = _multiples(pt_sl)
    paths = market_paths(events)
    seg = _Segments(paths["slug"].to_numpy(dtype=object), paths["t"].to_numpy(dtype=np.int64))
    t = entries["t"].to_numpy(dtype=np.int64)
    side = entries["side"].to_numpy(dtype=np.float64)
    if not np.isin(side, (-1.0, 1.0)).all():
        raise LabelingError("entries' side must be +1 or -1")
    entry = entries["entry_price"].to_numpy(dtype=np.float64)
    n = len(entries)
    tgt = np.full(n, float(target)) if np.ndim(target) == 0 else np.asarray(target, dtype=np.float64)
    if tgt.shape != (n,):
        raise LabelingError(f"target must be a scalar or one value per entry ({n})")
    code = seg.code(entries["slug"].to_numpy(dtype=object))
    has_path = code >= 0
    cc = np.maximum(code, 0)
    lo = seg.lo[cc] if len(seg.lo) else np.zeros(n, np.int64)
    hi = seg.hi[cc] - 1 if len(seg.hi) else np.zeros(n, np.int64)  # last point of the segment
    start = seg.asof(code, t) + 1
    start = np.where(start > 0, start, lo)  # entry before the first quote: search from the first one
    is_settle = paths["settlement"].to_numpy(dtype=bool)
    last_time = paths["t"].to_numpy(dtype=np.int64)[hi] if len(paths) else np.zeros(n, np.int64)
    if vertical is None:
        stop = hi
        truncated = has_path & ~is_settle[hi] if len(paths) else np.zeros(n, bool)
    else:
        td = pd.Timedelta(vertical)
        if td <= pd.Timedelta(0):
            raise LabelingError(f"vertical must be a positive duration, got {vertical!r}")
        tv = t + td.value // 1_000_000
        stop = np.minimum(seg.asof(code, tv), hi)
        truncated = has_path & (tv > last_time) & ~(is_settle[hi] if len(paths) else False)
    has_path &= stop >= lo
    mid = paths["mid"].to_numpy(dtype=np.float64)
    if returns != "absolute" and (entry <= 0).any() or returns == "log" and (mid <= 0).any():
        raise LabelingError("relative returns need positive entry prices (and log returns positive mids: a market "
                            "settled at 0 has none); use returns='absolute'")
    upper, lower = _thresholds(pt, sl, tgt)
    vals, base, mode = _returns_mode(returns, mid if len(mid) else np.zeros(1), entry)
    sel = np.flatnonzero(has_path)
    j = np.full(n, -1, dtype=np.int64)
    bcode = np.zeros(n, dtype=np.int8)
    if len(sel):
        j[sel], bcode[sel] = _first_touch(vals, base[sel], start[sel], stop[sel], upper[sel], lower[sel], side[sel],
                                          mode)
    jj = np.maximum(j, 0)
    ret = np.where(has_path, ((vals[jj] / base - 1.0) if mode == 0 else (vals[jj] - base)) * side, np.nan)
    label = pd.array(_labels(np.nan_to_num(ret), bcode, True, vertical_label), dtype="Int64")
    label[~has_path] = pd.NA
    out = entries[["t", "slug"]].copy()
    out["side"] = side.astype(np.int64)
    out["entry_price"] = entry
    out["t1"] = pd.array(np.where(has_path, paths["t"].to_numpy(np.int64)[jj] if len(paths) else 0, 0),
                         dtype="Int64")
    out.loc[~has_path, "t1"] = pd.NA
    barrier = np.asarray(BARRIERS, dtype=object)[bcode + 1]
    barrier[~has_path] = "none"
    out["barrier"] = pd.Series(barrier, index=out.index, dtype="str")
    out["exit_mid"] = np.where(has_path, mid[jj] if len(mid) else np.nan, np.nan)
    out["ret"] = ret
    out["label"] = label
    out["target"] = tgt
    out["settled"] = has_path & (is_settle[jj] if len(paths) else False)
    out["truncated"] = np.asarray(truncated, dtype=bool) & has_path
    return out


# ------------------------------------------------------------------------------------------------
# Barrier levels that explain the trader's exits
# ------------------------------------------------------------------------------------------------
DEFAULT_PT_GRID = np.round(np.arange(0.01, 0.4001, 0.01), 4)  # Up-equivalent price units per share
DEFAULT_SL_GRID = np.round(np.arange(0.01, 0.4001, 0.01), 4)
DEFAULT_HOLDING_GRID = (120.0, 240.0, 360.0, 480.0, 600.0, math.inf)  # seconds; inf = until settlement


@dataclass
class ExitFit:
    """Result of :func:`fit_exit_barriers`.

    Attributes
    ----------
    grid : DataFrame, one row per (pt, sl, holding_s)
        ``loglik`` of the two-rate exit-hazard model, ``delta_loglik`` (best minus this), ``pseudo_r2``
        (McFadden, against one constant exit rate), ``rate_triggered`` / ``rate_base`` (exit probability per
        decision step with a barrier reached / not), ``explained`` (share of round trips whose exit the
        deterministic barrier rule predicts within the tolerance), ``n_trips``.
    best : Series
        The row with the highest log-likelihood.
    best_explained : Series
        The row with the highest ``explained`` share.
    region : DataFrame
        Rows inside the likelihood-ratio confidence region (``2 * delta_loglik <= chi2(level, 3)``).
    bootstrap : DataFrame, shape (n_boot, 3)
        Best (pt, sl, holding_s) on resamples of the round trips.
    intervals : DataFrame
        Per parameter: the best value, the region's range, and bootstrap percentiles.
    steps : DataFrame
        The per-step table the fit used: trip, k, time, mid, entry, pnl (per share), exit.
    """

    grid: pd.DataFrame
    best: pd.Series
    best_explained: pd.Series
    region: pd.DataFrame
    bootstrap: pd.DataFrame
    intervals: pd.DataFrame
    steps: pd.DataFrame

    def summary(self) -> str:
        b = self.best
        hold = "until settlement" if not np.isfinite(b["holding_s"]) else f"{b['holding_s'] / 60:g} min"
        return (f"best: take profit +{b['pt']:.2f}, stop loss -{b['sl']:.2f}, max holding {hold}; "
                f"log-lik {b['loglik']:.1f}, pseudo-R2 {b['pseudo_r2']:.3f}, exits explained {b['explained']:.0%} "
                f"({int(b['n_trips'])} round trips); exit rate per step {b['rate_triggered']:.2f} when a "
                f"barrier is reached vs {b['rate_base']:.2f} otherwise")


def _ms(step: Any) -> int:
    ms = int(pd.Timedelta(step).value // 1_000_000)
    if ms <= 0:
        raise LabelingError(f"step must be a positive duration, got {step!r}")
    return ms


def exit_steps(events: pd.DataFrame, trips: pd.DataFrame, positions: pd.DataFrame | None = None, *,
               step: Any = "60s", entry: Literal["average", "first"] = "average") -> pd.DataFrame:
    """Decision steps of each closed round trip with its unrealised P&L per share, for the exit fit.

    Step ``k = 1, 2, ...`` of a trip is at ``t + k * step``. A trip closed by a trade is at risk up to the
    step nearest its exit, ``K = max(1, round((exit_t - t) / step))``, and exits there (``exit = 1``); a
    trip closed by settlement is at risk at every step strictly before it and never exits by trade.
    Information at a step: the Up mid at or before ``min(t + k * step, exit_t)`` (nothing after the exit)
    and the entry price: the trader's running average cost from ``positions`` strictly before that time
    (``entry='average'``, what a P&L-per-share rule sees) or the trip's first price (``'first'``).

    Returns
    -------
    DataFrame: ``trip`` (row label in ``trips``), ``k``, ``time`` (ms), ``holding_s``, ``mid``, ``entry``,
    ``pnl`` (side * (mid - entry), Up-equivalent price units per share), ``exit`` (0/1).
    """
    step_ms = _ms(step)
    tr = trips[trips["closed"] & trips["exit_reason"].isin(["trade", "settlement"])]
    t0 = tr["t"].to_numpy(dtype=np.int64)
    t_exit = tr["exit_t"].to_numpy(dtype=np.int64)
    by_trade = (tr["exit_reason"] == "trade").to_numpy()
    k_exit = np.where(by_trade, np.maximum(1, np.rint((t_exit - t0) / step_ms)).astype(np.int64),
                      np.maximum(0, (t_exit - t0 - 1) // step_ms))
    rows = np.repeat(np.arange(len(tr)), k_exit)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(k_exit) - k_exit, k_exit) + 1
    time = np.minimum(t0[rows] + k * step_ms, t_exit[rows])
    paths = market_paths(events)
    paths = paths[~paths["settlement"]]
    seg = _Segments(paths["slug"].to_numpy(dtype=object), paths["t"].to_numpy(dtype=np.int64))
    jm = seg.asof(seg.code(tr["slug"].to_numpy(dtype=object)[rows]), time)
    if len(rows) and (jm < 0).all():
        raise LabelingError("no price_change quotes for these round trips' markets: the unrealised P&L per share "
                            "needs the Up-equivalent mid (Data-API exports carry no quotes)")
    mid = np.where(jm >= 0, paths["mid"].to_numpy(np.float64)[np.maximum(jm, 0)] if len(paths) else np.nan, np.nan)
    if entry == "average":
        if positions is None:
            raise LabelingError("entry='average' needs the positions table")
        pk = (positions["wallet"].astype("str") + "|" + positions["slug"].astype("str")).to_numpy(dtype=object)
        order = np.lexsort((positions["t"].to_numpy(np.int64), pd.factorize(pk)[0]))
        pseg = _Segments(pk[order], positions["t"].to_numpy(np.int64)[order])
        tk = (tr["wallet"].astype("str") + "|" + tr["slug"].astype("str")).to_numpy(dtype=object)[rows]
        jp = pseg.asof(pseg.code(tk), time, inclusive=False)
        avg = positions["entry_price_up_equiv"].to_numpy(np.float64)[order]
        ent = np.where(jp >= 0, avg[np.maximum(jp, 0)] if len(avg) else np.nan, np.nan)
    elif entry == "first":
        ent = tr["entry_price"].to_numpy(np.float64)[rows]
    else:
        raise LabelingError(f"entry must be 'average' or 'first', got {entry!r}")
    side = tr["side"].to_numpy(np.float64)[rows]
    last = np.r_[rows[1:] != rows[:-1], True] if len(rows) else np.zeros(0, bool)
    return pd.DataFrame({"trip": tr.index.to_numpy()[rows], "k": k, "time": time, "holding_s": k * step_ms / 1000.0,
                         "mid": mid, "entry": ent, "pnl": side * (mid - ent),
                         "exit": (last & by_trade[rows]).astype(np.int64)})


def _bernoulli_ll(y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Maximised Bernoulli log-likelihood of y successes in n trials (0 log 0 = 0), elementwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, y / np.where(n > 0, n, 1), 0.0)
        a = np.where(y > 0, y * np.log(np.where(p > 0, p, 1.0)), 0.0)
        b = np.where(n - y > 0, (n - y) * np.log(np.where(p < 1, 1 - p, 1.0)), 0.0)
    return a + b


def _orthant_bins(pnl: np.ndarray, hold: np.ndarray, pt_g: np.ndarray, sl_g: np.ndarray, h_g: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step, the number of grid levels it triggers: ``pnl >= pt_i`` for ``i < ia``, ``pnl <= -sl_j`` for
    ``j < jb``, ``holding >= H_h`` for ``h < hc`` (grids ascending). A step leaves cell (i, j, h) untriggered
    iff ``i >= ia and j >= jb and h >= hc``: an orthant, so counts over the whole grid are cumulative sums
    of a histogram of (ia, jb, hc). NaN P&L (no quote yet) triggers no price barrier."""
    nan = np.isnan(pnl)
    p = np.where(nan, 0.0, pnl)
    ia = np.where(nan, 0, np.searchsorted(pt_g, p + _EPS, side="right"))
    jb = np.where(nan, 0, np.searchsorted(sl_g, -p + _EPS, side="right"))
    hc = np.searchsorted(h_g, hold + 1e-9, side="right")
    return ia, jb, hc


def fit_exit_barriers(events: pd.DataFrame, trips: pd.DataFrame, positions: pd.DataFrame | None = None, *,
                      pt_grid: Sequence[float] = DEFAULT_PT_GRID, sl_grid: Sequence[float] = DEFAULT_SL_GRID,
                      holding_grid: Sequence[float] = DEFAULT_HOLDING_GRID, step: Any = "60s",
                      tolerance_steps: int = 1, entry: Literal["average", "first"] = "average",
                      n_boot: int = 200, level: float = 0.95, seed: int = 0) -> ExitFit:
    """Profit-taking, stop-loss and max-holding levels that best explain when the trader exited.

    Model: at each decision step of an open round trip (:func:`exit_steps`), the trader closes with
    probability ``rate_triggered`` if a barrier is reached (``pnl >= pt``, ``pnl <= -sl`` or holding
    ``>= holding_s``) and ``rate_base`` otherwise. For every cell of the grid both rates have closed-form
    maximum-likelihood estimates; the counts they need, over the whole grid, are cumulative sums of one
    histogram (see :func:`_orthant_bins`), so the grid costs no loop over cells. Exits are probabilistic,
    which a deterministic rule cannot score; the deterministic view is reported too: ``explained`` is the
    share of round trips whose actual exit step is at most ``tolerance_steps`` after the first step at which
    the rule fires (the rule is evaluated while the trip is open), and, for trips held to settlement, where
    the rule never fires.

    Uncertainty: the likelihood-ratio region (cells with ``2 * (LL_best - LL) <= chi2_3(level)``) and a
    bootstrap over round trips (multinomial weights on sparse per-trip histograms: no refit loop).

    Parameters
    ----------
    events, trips, positions
        Ingested events, :func:`round_trips`, and positions (for ``entry='average'``).
    pt_grid, sl_grid : Up-equivalent price units per share (> 0). holding_grid : seconds (inf allowed).
    step : duration between the trader's decisions (the simulated trader decides every 60 s).

    Returns
    -------
    ExitFit
    """
    from scipy import sparse

    pt_g = np.unique(np.asarray(pt_grid, dtype=np.float64))
    sl_g = np.unique(np.asarray(sl_grid, dtype=np.float64))
    h_g = np.unique(np.asarray(holding_grid, dtype=np.float64))
    if (pt_g <= 0).any() or (sl_g <= 0).any() or (h_g <= 0).any():
        raise LabelingError("grid values must be positive")
    st = exit_steps(events, trips, positions, step=step, entry=entry)
    if not len(st):
        raise LabelingError("no closed round trips with decision steps to fit")
    trip = st["trip"].to_numpy()
    new = np.r_[True, trip[1:] != trip[:-1]]  # steps come grouped by trip
    starts = np.flatnonzero(new)
    r = np.cumsum(new) - 1
    n_trips = len(starts)
    y = st["exit"].to_numpy(np.float64)
    k = st["k"].to_numpy(np.int64)
    ia, jb, hc = _orthant_bins(st["pnl"].to_numpy(np.float64), st["holding_s"].to_numpy(np.float64), pt_g, sl_g, h_g)
    dims = (len(pt_g) + 1, len(sl_g) + 1, len(h_g) + 1)
    b = np.ravel_multi_index((ia, jb, hc), dims)
    n_bins = int(np.prod(dims))
    steps_hist = sparse.csr_matrix((np.ones(len(b)), (r, b)), shape=(n_trips, n_bins))  # per-trip statistics
    exits_hist = sparse.csr_matrix((y, (r, b)), shape=(n_trips, n_bins))
    n_all = np.bincount(r, minlength=n_trips).astype(np.float64)
    y_all = np.bincount(r, weights=y, minlength=n_trips)
    cells = (slice(None), slice(0, len(pt_g)), slice(0, len(sl_g)), slice(0, len(h_g)))

    def loglik(w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Log-likelihood per cell, shape (B, n_pt, n_sl, n_h), for trip weights w of shape (B, n_trips)."""
        def untriggered(hist: sparse.csr_matrix) -> np.ndarray:
            h = np.asarray((hist.T @ w.T).T).reshape((len(w),) + dims)
            return h.cumsum(1).cumsum(2).cumsum(3)[cells]

        N0, Y0 = untriggered(steps_hist), untriggered(exits_hist)
        N, Y = (w @ n_all)[:, None, None, None], (w @ y_all)[:, None, None, None]
        N1, Y1 = N - N0, Y - Y0
        return _bernoulli_ll(Y0, N0) + _bernoulli_ll(Y1, N1), N0, Y0, N1, Y1, N, Y

    ll, N0, Y0, N1, Y1, N, Y = (a[0] for a in loglik(np.ones((1, n_trips))))
    ll0 = _bernoulli_ll(Y, N)

    # deterministic rule: first firing step per trip and level, then per cell the earliest of the three
    big = np.iinfo(np.int64).max // 4
    first = lambda hit: np.minimum.reduceat(np.where(hit, k[:, None], big), starts, axis=0)  # noqa: E731
    fa = first(ia[:, None] > np.arange(len(pt_g))[None, :])  # (n_trips, n_pt)
    fb = first(jb[:, None] > np.arange(len(sl_g))[None, :])
    fc = first(hc[:, None] > np.arange(len(h_g))[None, :])
    k_last = k[np.r_[starts[1:], len(k)] - 1]  # exit step (trade) or last step at risk (settlement)
    by_trade = np.add.reduceat(y, starts) > 0
    matched = np.zeros((len(pt_g), len(sl_g), len(h_g)))
    for h in range(len(h_g)):  # chunks keep (trips, n_pt, n_sl) small
        for c in range(0, n_trips, 2048):
            s = slice(c, c + 2048)
            fire = np.minimum(np.minimum(fa[s, :, None], fb[s, None, :]), fc[s, h, None, None])
            kl = k_last[s, None, None]
            ok = np.where(by_trade[s, None, None], (fire <= kl) & (kl - fire <= tolerance_steps), fire > kl)
            matched[:, :, h] += ok.sum(axis=0)
    explained = matched / n_trips

    P, S, H = np.meshgrid(pt_g, sl_g, h_g, indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = pd.DataFrame({"pt": P.ravel(), "sl": S.ravel(), "holding_s": H.ravel(), "loglik": ll.ravel(),
                             "pseudo_r2": (1 - ll / ll0).ravel(),
                             "rate_triggered": np.where(N1 > 0, Y1 / np.where(N1 > 0, N1, 1), np.nan).ravel(),
                             "rate_base": np.where(N0 > 0, Y0 / np.where(N0 > 0, N0, 1), np.nan).ravel(),
                             "triggered_steps": N1.ravel(), "explained": explained.ravel(), "n_trips": n_trips})
    grid.insert(4, "delta_loglik", grid["loglik"].max() - grid["loglik"])
    best = grid.loc[grid["loglik"].idxmax()]
    region = grid[grid["delta_loglik"] <= stats.chi2.ppf(level, df=3) / 2]

    rng = np.random.default_rng(seed)
    boots = []
    for lo in range(0, n_boot, 100):  # chunks keep the (B, cells) arrays small
        w = rng.multinomial(n_trips, np.full(n_trips, 1.0 / n_trips), size=min(100, n_boot - lo)).astype(np.float64)
        a = np.argmax(loglik(w)[0].reshape(len(w), -1), axis=1)
        boots.append(np.column_stack([P.ravel()[a], S.ravel()[a], H.ravel()[a]]))
    boot = pd.DataFrame(np.vstack(boots) if boots else np.zeros((0, 3)), columns=["pt", "sl", "holding_s"])
    q = ((1 - level) / 2, (1 + level) / 2)
    names = ["pt", "sl", "holding_s"]
    intervals = pd.DataFrame({
        "best": best[names].astype(float), "region_min": region[names].min(), "region_max": region[names].max(),
        # order statistics, not interpolation: the holding grid holds inf
        "boot_lo": boot.quantile(q[0], interpolation="lower") if len(boot) else np.nan,
        "boot_median": boot.quantile(0.5, interpolation="nearest") if len(boot) else np.nan,
        "boot_hi": boot.quantile(q[1], interpolation="higher") if len(boot) else np.nan,
    })
    return ExitFit(grid, best, grid.loc[grid["explained"].idxmax()], region, boot, intervals, st)


def barrier_pnl(events: pd.DataFrame, trips: pd.DataFrame, pt: float, sl: float, holding_s: float = math.inf, *,
                step: Any = "60s") -> pd.DataFrame:
    """What a fixed barrier rule would have earned on the trader's own entries, next to what it did earn.

    The rule enters each closed round trip as the trader did (time, Up-equivalent price, side, first
    quantity) and checks at every ``step`` after entry (as the trader decides every minute): exit when the
    mid-marked P&L per share reaches ``+pt`` or ``-sl``, or the holding time reaches ``holding_s``, at the
    Up-equivalent bid (long) or ask (short) in force; otherwise it holds to settlement (1 or 0). Uses no
    price after its exit.

    Returns
    -------
    DataFrame indexed like the closed trips: ``trader_pnl`` (realised USDC, with every add and partial exit),
    ``rule_pnl`` (USDC on ``entry_qty``), per-share versions, ``rule_exit_t``, ``rule_exit_price``,
    ``rule_exit_reason`` ('pt', 'sl', 'holding', 'settlement', 'open').
    """
    step_ms = _ms(step)
    tr = trips[trips["closed"]]
    paths = market_paths(events)
    if len(tr) and not len(paths):
        raise LabelingError("no price_change quotes: the barrier rule needs the Up-equivalent quotes")
    seg = _Segments(paths["slug"].to_numpy(dtype=object), paths["t"].to_numpy(dtype=np.int64))
    code = seg.code(tr["slug"].to_numpy(dtype=object))
    is_settle = paths["settlement"].to_numpy(bool)
    hi = np.where(code >= 0, seg.hi[np.maximum(code, 0)] - 1, -1)
    end_t = np.where((code >= 0) & (hi >= 0), paths["t"].to_numpy(np.int64)[np.maximum(hi, 0)], 0)
    settled = (code >= 0) & is_settle[np.maximum(hi, 0)]
    t0 = tr["t"].to_numpy(np.int64)
    n_steps = np.maximum(0, (end_t - t0 - 1) // step_ms)  # decision steps strictly before the market's end
    rows = np.repeat(np.arange(len(tr)), n_steps)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps) + 1
    time = t0[rows] + k * step_ms
    j = seg.asof(code[rows], time)
    ok = j >= 0
    jj = np.maximum(j, 0)
    mid, bid, ask = (paths[c].to_numpy(np.float64) for c in ("mid", "bid", "ask"))
    side = tr["side"].to_numpy(np.float64)
    entry = tr["entry_price"].to_numpy(np.float64)
    pnl = np.where(ok, side[rows] * (mid[jj] - entry[rows]) if len(mid) else np.nan, np.nan)
    with np.errstate(invalid="ignore"):
        hit_pt = pnl >= pt - _EPS
        hit_sl = pnl <= -sl + _EPS
    hit_h = k * step_ms / 1000.0 >= holding_s - 1e-9
    fire = hit_pt | hit_sl | hit_h
    first = pd.Series(np.flatnonzero(fire)).groupby(rows[fire]).first() if fire.any() else pd.Series(dtype=np.int64)
    exit_row = np.full(len(tr), -1, dtype=np.int64)
    exit_row[first.index.to_numpy()] = first.to_numpy()
    fired = exit_row >= 0
    er = np.maximum(exit_row, 0)
    px_fire = np.where(side > 0, bid[jj[er]], ask[jj[er]]) if len(rows) else np.full(len(tr), np.nan)
    reason = np.where(fired, np.where(hit_pt[er], "pt", np.where(hit_sl[er], "sl", "holding")) if len(rows) else "",
                      np.where(settled, "settlement", "open"))
    settle_px = np.where(settled, mid[np.maximum(hi, 0)] if len(mid) else np.nan, np.nan)
    exit_px = np.where(fired, px_fire, settle_px)
    exit_t = np.where(fired, time[er] if len(rows) else 0, end_t)
    qty = tr["entry_qty"].to_numpy(np.float64)
    per_share = side * (exit_px - entry)
    return pd.DataFrame({"slug": tr["slug"].to_numpy(), "t": t0, "side": side.astype(np.int64), "entry_price": entry,
                         "entry_qty": qty, "trader_pnl": tr["pnl"].to_numpy(np.float64),
                         "trader_pnl_per_share": tr["pnl"].to_numpy(np.float64) / qty,
                         "trader_exit_reason": tr["exit_reason"].to_numpy(), "rule_exit_t": exit_t,
                         "rule_exit_price": exit_px, "rule_exit_reason": reason, "rule_pnl_per_share": per_share,
                         "rule_pnl": per_share * qty}, index=tr.index)


# ------------------------------------------------------------------------------------------------
# AFML ch. 13: optimal trading rules on Ornstein-Uhlenbeck paths
# ------------------------------------------------------------------------------------------------
OU_GRID = np.linspace(0.5, 10.0, 21)


def ou_paths(forecast: float, half_life: float, sigma: float = 1.0, max_hp: int = 100, n_paths: int = 10_000,
             seed: int = 0) -> np.ndarray:
    """Discrete Ornstein-Uhlenbeck paths, AFML snippet 13.2.

    ``P_t = (1 - phi) * forecast + phi * P_{t-1} + sigma * eps_t`` with ``phi = 2 ** (-1 / half_life)``,
    ``P_0 = 0``, ``eps_t ~ N(0, 1)``.

    Returns
    -------
    ndarray, shape (n_paths, max_hp)
        ``P_1 ... P_max_hp`` (price units; the P&L of a long position opened at ``P_0 = 0``).
    """
    if not (half_life > 0 and sigma > 0 and max_hp >= 1 and n_paths >= 1):
        raise LabelingError("half_life and sigma must be positive, max_hp and n_paths >= 1")
    phi = 2.0 ** (-1.0 / half_life)
    eps = np.random.default_rng(seed).standard_normal((max_hp, n_paths))
    out = np.empty((max_hp, n_paths))
    p = np.zeros(n_paths)
    for t in range(max_hp):  # max_hp vector steps over all paths (the recursion is sequential in time)
        p = (1 - phi) * forecast + phi * p + sigma * eps[t]
        out[t] = p
    return np.ascontiguousarray(out.T)


def ou_exit_pnl(paths: np.ndarray, pt_grid: Sequence[float] = OU_GRID, sl_grid: Sequence[float] = OU_GRID
                ) -> np.ndarray:
    """Exit P&L of every path under every (pt, sl) rule, vectorised across paths and cells.

    A path exits at the first step with ``P - P_0 >= pt`` or ``<= -sl``, else at its last step (the
    maximum holding period). First passages come from running maxima/minima: the first step with
    ``max_{s<=t} P_s >= pt`` is the number of steps whose running maximum is below ``pt``.

    Returns
    -------
    ndarray, shape (n_pt, n_sl, n_paths)
    """
    paths = np.asarray(paths, dtype=np.float64)
    n, T = paths.shape
    pt_g, sl_g = np.asarray(pt_grid, np.float64), np.asarray(sl_grid, np.float64)
    run_max = np.maximum.accumulate(paths, axis=1)
    run_min = np.minimum.accumulate(paths, axis=1)
    # (n, n_pt): first step reaching each level; T when never (searchsorted on the monotone running max)
    up = np.stack([(run_max < p).sum(axis=1) for p in pt_g], axis=1)
    dn = np.stack([(run_min > -s).sum(axis=1) for s in sl_g], axis=1)
    tau = np.minimum(np.minimum(up[:, :, None], dn[:, None, :]), T - 1)  # (n, n_pt, n_sl)
    pnl = np.take_along_axis(paths, tau.reshape(n, -1), axis=1).reshape(n, len(pt_g), len(sl_g))
    return np.moveaxis(pnl, 0, -1)


def ou_barrier_grid(forecast: float, half_life: float, sigma: float = 1.0, max_hp: int = 100, n_paths: int = 10_000,
                    pt_grid: Sequence[float] = OU_GRID, sl_grid: Sequence[float] = OU_GRID, seed: int = 0
                    ) -> pd.DataFrame:
    """Sharpe ratio of every (profit-taking, stop-loss) rule on one set of OU paths, AFML snippets 13.1-13.2.

    All rules are evaluated on the same ``n_paths`` simulated paths (:func:`ou_paths`), as in the book's
    heat-maps (figures 13.1-13.25): Sharpe = mean / std (ddof 0) of the exit P&L across paths.

    Parameters
    ----------
    forecast : E0, the level the price reverts to (price units, P_0 = 0).
    half_life : tau, in steps; phi = 2 ** (-1 / tau).
    sigma : shock standard deviation. max_hp : maximum holding period (steps).
    pt_grid, sl_grid : profit-taking and stop-loss distances (price units), 21 values from 0.5 to 10 by default.

    Returns
    -------
    DataFrame, shape (n_pt, n_sl)
        Sharpe ratios, index ``pt``, columns ``sl``. ``attrs`` hold the mean and std arrays.
    """
    pnl = ou_exit_pnl(ou_paths(forecast, half_life, sigma, max_hp, n_paths, seed), pt_grid, sl_grid)
    mean, std = pnl.mean(axis=-1), pnl.std(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sharpe = mean / std
    out = pd.DataFrame(sharpe, index=pd.Index(np.asarray(pt_grid, float), name="pt"),
                       columns=pd.Index(np.asarray(sl_grid, float), name="sl"))
    out.attrs.update(forecast=forecast, half_life=half_life, sigma=sigma, max_hp=max_hp, n_paths=n_paths,
                     mean=mean, std=std)
    return out


def ou_optimum(grid: pd.DataFrame) -> pd.Series:
    """The (pt, sl) cell with the highest Sharpe ratio of an :func:`ou_barrier_grid` result."""
    s = grid.stack()
    (pt, sl), best = s.idxmax(), s.max()
    return pd.Series({"pt": float(pt), "sl": float(sl), "sharpe": float(best)})
