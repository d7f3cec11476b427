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
from typing import Any, Literal, Sequence

import numba
import numpy as np
import pandas as pd

ReturnKind = Literal["simple", "log", "absolute"]
VerticalLabel = Literal["zero", "sign"]
BARRIERS = ("lower", "vertical", "upper")  # indexed by barrier code + 1
_EPS = 1e-12  # tolerance of a touch (see the module docstring)
_DUST = 1e-9  # inventory below this many shares is flat (as in workbench.data.ledger)


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
