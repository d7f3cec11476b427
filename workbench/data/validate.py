"""Record validation: one vectorised pass over every seed-format JSON record (types, ranges, times, the
market window), and the field checks shared with the Data-API CSV reader. The first failing check of a
record is its quarantine reason.
"""

from __future__ import annotations

import itertools
import math
from operator import itemgetter
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench.data.ledger import DOWN, UP
from workbench.data.schema import _MAX_ABS, _MAX_MS, _MIN_MS, _NUM_FIELDS, _Bad, _DupDict


# ------------------------------------------------------------------------------------------------
# Field validation
# ------------------------------------------------------------------------------------------------
def _outcome(value: Any, *, default: str | None) -> str:
    if value is None:
        if default is None:
            raise _Bad("missing field 'outcome'")
        return default
    if isinstance(value, str) and value.strip().lower() in ("up", "down"):
        return UP if value.strip().lower() == "up" else DOWN
    raise _Bad(f"'outcome' must be 'Up' or 'Down', got {value!r:.40}")


def _side(value: Any) -> str:
    if isinstance(value, str) and value.strip().upper() in ("BUY", "SELL"):
        return value.strip().upper()
    if value is None:
        raise _Bad("missing field 'side'")
    raise _Bad(f"'side' must be 'BUY' or 'SELL', got {value!r:.40}")


def _check_usdc(usdc: float, price: float, size: float) -> float:
    expected = price * size
    if math.isnan(usdc):
        return expected
    if usdc < 0 or abs(usdc - expected) > max(1e-4, 0.005 * expected):
        raise _Bad(f"'usdc' {usdc} inconsistent with price*size = {expected:.6g}")
    return usdc


def _shown(value: Any) -> str:
    """A value as written, bounded (a 400-digit integer is shown by its first digits and its length)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        digits = str(abs(value))
        return f"{'-' if value < 0 else ''}{digits[:6]}...({len(digits)} digits)"
    return f"{value!r:.40}"


def _timestamp_ms(value: Any) -> int:
    """Event time in UTC ms. Numbers are epoch ms; ISO strings must carry an offset (converted)."""
    if value is None:
        raise _Bad("missing field 't'")
    if isinstance(value, bool):
        raise _Bad(f"mistyped field 't': expected epoch milliseconds, got bool {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _Bad(f"non-finite 't': {value}")
        if abs(value) < _MIN_MS:
            raise _Bad(f"'t' = {value} looks like seconds, not milliseconds")
        if abs(value) > _MAX_MS:  # checked before int(): 1e30 must not wrap to an int64 and be shown as one
            raise _Bad(f"'t' = {_shown(value)} out of range for epoch milliseconds")
        return int(round(value))
    if isinstance(value, str):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise _Bad(f"unparseable 't': {value!r:.40}") from None
        if ts.tzinfo is None:
            raise _Bad(f"'t' string {value!r:.40} has no timezone: ambiguous")
        ms = int(ts.tz_convert("UTC").value // 1_000_000)
        if not _MIN_MS <= ms <= _MAX_MS:
            raise _Bad(f"'t' = {value!r:.40} out of range (before 1973 or after 2286)")
        return ms
    raise _Bad(f"mistyped field 't': expected epoch milliseconds, got {type(value).__name__}")


# ------------------------------------------------------------------------------------------------
# Seed-format JSON: files are parsed one by one, then every record is validated in one vectorised
# batch (type checks with ``set(map(type, ...))``, range checks with numpy masks). Only the few bad
# records get a per-record message. The first failing check of a record is its quarantine reason.
# ------------------------------------------------------------------------------------------------
_JSON_TYPES = ("trade", "last_trade_price", "price_change", "bar", "resolution")
_NUMBER_TYPES = (int, float)


def _number_column(vals: list[Any], max_abs: float = _MAX_ABS) -> tuple[np.ndarray, np.ndarray]:
    """Floats and a status per value: 0 ok, 1 missing/null, 2 not a JSON number, 3 NaN/inf, 4 out of range
    (``|x| > max_abs``, or an integer too large for a float, such as ``10**400``)."""
    n = len(vals)
    kinds = set(map(type, vals))
    status = np.zeros(n, dtype=np.int8)
    out = None
    if kinds <= {int, float, type(None)}:
        try:
            out = np.array(vals, dtype=np.float64) if n else np.zeros(0)
        except OverflowError:  # an integer beyond float range: the slow path finds and flags it
            out = None
        else:
            if type(None) in kinds:
                status[_is_none(vals)] = 1
    if out is None:  # slow path only for a column holding strings, bools, lists, huge integers...
        out = np.full(n, np.nan)
        for i, v in enumerate(vals):
            if v is None:
                status[i] = 1
            elif isinstance(v, bool) or not isinstance(v, _NUMBER_TYPES):
                status[i] = 2
            else:
                try:
                    out[i] = v
                except OverflowError:
                    status[i] = 4
    with np.errstate(invalid="ignore"):
        status[(status == 0) & ~np.isfinite(out)] = 3
        status[(status == 0) & (np.abs(out) > max_abs)] = 4
    return out, status


def _is_none(vals: list[Any]) -> np.ndarray:
    """Elementwise ``v is None`` (a C loop over an object array: ~10x faster than a generator)."""
    arr = np.empty(len(vals), dtype=object)
    arr[:] = vals
    return np.equal(arr, None)


def _time_column(vals: list[Any]) -> tuple[np.ndarray, list[str | None]]:
    """Epoch milliseconds and a reason per bad value. ISO strings with an offset are converted to UTC;
    strings without one are ambiguous and rejected."""
    n = len(vals)
    t, status = _number_column(vals, max_abs=_MAX_MS)
    reasons: list[str | None] = [None] * n
    out = np.zeros(n, dtype=np.int64)
    ok = status == 0  # finite and within _MAX_MS: the int64 cast below is exact
    out[ok] = np.round(t[ok]).astype(np.int64)
    for i in np.flatnonzero(~ok | (np.abs(np.where(ok, t, 0)) < _MIN_MS)):
        try:
            out[i] = _timestamp_ms(vals[i])
        except _Bad as bad:
            reasons[i] = str(bad)
    return out, reasons


class _LazyRaw:
    """Raw values of one field for a subset of records, looked up by record index (for messages)."""

    def __init__(self, idx: np.ndarray, vals: list[Any]) -> None:
        self._idx, self._vals = idx, vals

    def __getitem__(self, i: int) -> Any:
        k = int(np.searchsorted(self._idx, i))
        return self._vals[k] if k < len(self._idx) and self._idx[k] == i else None


class _Checks:
    """Accumulates the first failing reason of each record."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self._open = np.ones(n, dtype=bool)  # no reason yet (a boolean mask: cheaper than reason == None)

    def flag(self, mask: np.ndarray, message: Any) -> None:
        """``message`` is a string or a function of the record index."""
        sel = np.flatnonzero(mask & self._open)
        if not len(sel):
            return
        self._open[sel] = False
        if callable(message):
            for i in sel:
                self.reason[i] = message(i)
        else:
            self.reason[sel] = message

    def numeric(self, mask: np.ndarray, name: str, vals: Any, status: np.ndarray, *, required: bool) -> None:
        if required:
            self.flag(mask & (status == 1), f"missing field '{name}'")
        self.flag(mask & (status == 2), lambda i: f"mistyped field '{name}': expected a number, got "
                                                  f"{type(vals[i]).__name__} {vals[i]!r:.40}")
        self.flag(mask & (status == 3), lambda i: f"non-finite '{name}': {vals[i]}")
        self.flag(mask & (status == 4), lambda i: f"'{name}' = {_shown(vals[i])} out of range (|x| > {_MAX_ABS:.0e})")

    @property
    def ok(self) -> np.ndarray:
        return self._open.copy()


def _enum_column(vals: list[Any], mapping: dict[str, str]) -> np.ndarray:
    """Map case-insensitive strings to canonical values; anything else to None."""
    out = np.empty(len(vals), dtype=object)
    if set(map(type, vals)) <= {str}:  # the common case: one C-level lookup per value
        seen = {v: mapping.get(v.strip().lower()) for v in set(vals)}
        out[:] = list(map(seen.__getitem__, vals))
        return out
    seen = {v: mapping.get(v.strip().lower()) for v in {v for v in vals if type(v) is str}}
    out[:] = [seen.get(v) if type(v) is str else None for v in vals]
    return out


_MAX_SIGNATURES = 64


def _field_values(dicts: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Object arrays of ``keys`` over ``dicts`` (None where a record lacks the key).

    Records are grouped by their exact key sequence (a file's trades, quotes, bars... share one) and each
    group is read with one ``operator.itemgetter`` per record, a C-level call instead of a ``dict.get`` per
    field and record. With more than ``_MAX_SIGNATURES`` distinct key sequences (hostile files) it falls back
    to ``dict.get``; both give the same arrays.
    """
    n = len(dicts)
    out = {k: np.full(n, None, dtype=object) for k in keys}
    if not n:
        return out
    labels: dict[tuple[str, ...], int] = {}
    gid = np.fromiter(map(labels.setdefault, map(tuple, dicts), itertools.count()), dtype=np.int64, count=n)
    if len(labels) > _MAX_SIGNATURES:
        for k in keys:
            out[k][:] = [d.get(k) for d in dicts]
        return out
    holder = np.empty(n, dtype=object)
    holder[:] = dicts
    order = np.argsort(gid, kind="stable")
    bounds = np.flatnonzero(np.r_[True, gid[order][1:] != gid[order][:-1], True])
    wanted = set(keys)
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]
        present = [k for k in dicts[idx[0]] if k in wanted]
        if not present:
            continue
        sub = holder[idx]
        if len(present) == 1:
            out[present[0]][idx] = np.fromiter(map(itemgetter(present[0]), sub), dtype=object, count=len(idx))
            continue
        for k, column in zip(present, zip(*map(itemgetter(*present), sub))):
            out[k][idx] = np.fromiter(column, dtype=object, count=len(idx))
    return out


#: Record types that carry each field: a field is read only for them (a quote's stray 'size' is never read).
CARRIED_BY = {"price": ("trade", "last_trade_price", "price_change"), "size": ("trade", "last_trade_price"),
              "usdc": ("trade", "last_trade_price"), "bid": ("price_change",), "ask": ("price_change",),
              "open": ("bar",), "high": ("bar",), "low": ("bar",), "close": ("bar",), "volume": ("bar",),
              "price_start": ("resolution",), "price_end": ("resolution",),
              "outcome": ("trade", "last_trade_price", "price_change", "resolution"),
              "side": ("trade", "last_trade_price")}
_SIDES = {"buy": "BUY", "sell": "SELL"}
_OUTCOMES = {"up": UP, "down": DOWN}


def _validate_json_records(recs: list[Any], lo: np.ndarray, hi: np.ndarray, slugs: np.ndarray
                           ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Validate seed-format events in one batch.

    Returns ``(columns, reasons, outcome_defaulted)``: canonical columns for every record, the
    quarantine reason per record (None when kept) and whether a fill's missing outcome was taken as Up.
    """
    n = len(recs)
    dup = np.fromiter((type(r) is _DupDict for r in recs), bool, n)
    is_obj = dup | np.fromiter((type(r) is dict for r in recs), bool, n)
    ck = _Checks(n)
    ck.flag(~is_obj, lambda i: f"record is a {type(recs[i]).__name__}, expected an object")
    ck.flag(dup, lambda i: f"duplicate key(s) {recs[i].duplicates[:5]} in the record: which value is meant is "
                           "ambiguous")
    dicts = [r if o else {} for r, o in zip(recs, is_obj)]
    fields = _field_values(dicts, ("type", "t", *_NUM_FIELDS, "outcome", "side"))

    def col(key: str) -> list[Any]:
        return fields[key].tolist()

    kind_raw = col("type")
    kind = np.array([k if isinstance(k, str) else None for k in kind_raw], dtype=object)
    ck.flag(is_obj & _is_none(kind_raw), "missing field 'type'")
    known = np.isin(kind, _JSON_TYPES)
    ck.flag(~known, lambda i: f"unknown event type {kind_raw[i]!r:.40}")
    t_vals = col("t")
    t, t_reason = _time_column(t_vals)
    t_bad = np.array([r is not None for r in t_reason], dtype=bool)
    ck.flag(t_bad, lambda i: t_reason[i])
    ck.flag(~t_bad & ((t < lo) | (t > hi)),
            lambda i: f"'t' = {_shown(t_vals[i])} outside the market window of {slugs[i]}")

    fill = (kind == "trade") | (kind == "last_trade_price")
    quote = kind == "price_change"
    bar = kind == "bar"
    resolution = kind == "resolution"
    # Extract only the fields each record type carries (CARRIED_BY).
    is_type = {"trade": kind == "trade", "last_trade_price": kind == "last_trade_price", "price_change": quote,
               "bar": bar, "resolution": resolution}
    fields_of = {key: np.logical_or.reduce([is_type[t] for t in types]) for key, types in CARRIED_BY.items()}
    def col_for(key: str) -> tuple[np.ndarray, list[Any]]:
        """Indices of the records carrying ``key`` and their values (None where absent)."""
        idx = np.flatnonzero(fields_of[key])
        return idx, fields[key][idx].tolist()

    cols: dict[str, np.ndarray] = {"t": t, "type": kind}
    raw: dict[str, _LazyRaw] = {}  # raw values, for messages about bad records only
    status: dict[str, np.ndarray] = {}
    for name in _NUM_FIELDS:
        idx, vals = col_for(name)
        full = np.full(n, np.nan)
        st = np.ones(n, dtype=np.int8)  # 1 = missing
        sub_vals, sub_status = _number_column(vals)
        full[idx], st[idx] = sub_vals, sub_status
        cols[name], status[name] = full, st
        raw[name] = _LazyRaw(idx, vals)
    o_idx, o_vals = col_for("outcome")
    outcome = np.full(n, None, dtype=object)
    outcome[o_idx] = _enum_column(o_vals, _OUTCOMES)
    outcome_missing = np.ones(n, dtype=bool)
    outcome_missing[o_idx] = _is_none(o_vals)
    outcome_raw = _LazyRaw(o_idx, o_vals)
    s_idx, s_vals = col_for("side")
    side = np.full(n, None, dtype=object)
    side[s_idx] = _enum_column(s_vals, _SIDES)
    side_missing = np.ones(n, dtype=bool)
    side_missing[s_idx] = _is_none(s_vals)
    side_raw = _LazyRaw(s_idx, s_vals)

    # fills: price in [0, 1], size > 0, side, outcome (missing -> Up), usdc consistent
    ck.numeric(fill, "price", raw["price"], status["price"], required=True)
    ck.flag(fill & (status["price"] == 0) & ((cols["price"] < 0) | (cols["price"] > 1)),
            lambda i: f"'price' outside [0, 1]: {cols['price'][i]}")
    ck.numeric(fill, "size", raw["size"], status["size"], required=True)
    ck.flag(fill & (status["size"] == 0) & (cols["size"] <= 0), lambda i: f"'size' must be positive, got {cols['size'][i]}")
    ck.flag(fill & side_missing, "missing field 'side'")
    ck.flag(fill & (side == None), lambda i: f"'side' must be 'BUY' or 'SELL', got {side_raw[i]!r:.40}")  # noqa: E711
    ck.flag((fill | quote) & ~outcome_missing & (outcome == None),  # noqa: E711
            lambda i: f"'outcome' must be 'Up' or 'Down', got {outcome_raw[i]!r:.40}")
    ck.numeric(fill, "usdc", raw["usdc"], status["usdc"], required=False)
    expected = cols["price"] * cols["size"]
    usdc_given = fill & (status["usdc"] == 0)
    ck.flag(usdc_given & ((cols["usdc"] < 0) | (np.abs(cols["usdc"] - expected) > np.maximum(1e-4, 0.005 * expected))),
            lambda i: f"'usdc' {cols['usdc'][i]} inconsistent with price*size = {expected[i]:.6g}")
    cols["usdc"] = np.where(fill & (status["usdc"] == 1), expected, cols["usdc"])
    defaulted = (fill | quote) & outcome_missing
    outcome = np.where(defaulted, UP, outcome)

    # quotes: bid, ask in [0, 1], not crossed; optional price in [0, 1]
    for name in ("bid", "ask"):
        ck.numeric(quote, name, raw[name], status[name], required=True)
        ck.flag(quote & (status[name] == 0) & ((cols[name] < 0) | (cols[name] > 1)),
                lambda i, name=name: f"'{name}' outside [0, 1]: {cols[name][i]}")
    ck.numeric(quote, "price", raw["price"], status["price"], required=False)
    ck.flag(quote & (status["price"] == 0) & ((cols["price"] < 0) | (cols["price"] > 1)),
            lambda i: f"'price' outside [0, 1]: {cols['price'][i]}")
    ck.flag(quote & (cols["bid"] > cols["ask"]), lambda i: f"crossed quote: bid {cols['bid'][i]} > ask {cols['ask'][i]}")

    # bars: positive, consistent OHLC; volume >= 0
    for name in ("open", "high", "low", "close"):
        ck.numeric(bar, name, raw[name], status[name], required=True)
    ck.numeric(bar, "volume", raw["volume"], status["volume"], required=False)
    o, h, lo_, c = cols["open"], cols["high"], cols["low"], cols["close"]
    with np.errstate(invalid="ignore"):
        ck.flag(bar & (np.minimum.reduce([o, h, lo_, c]) <= 0), "bar prices must be positive")
        ck.flag(bar & ~((lo_ <= np.minimum(o, c)) & (np.maximum(o, c) <= h)),
                lambda i: f"inconsistent bar: low {lo_[i]} open {o[i]} close {c[i]} high {h[i]}")
        ck.flag(bar & (cols["volume"] < 0), lambda i: f"negative bar volume {cols['volume'][i]}")

    # resolution: the winner
    ck.flag(resolution & outcome_missing, "missing field 'outcome'")
    ck.flag(resolution & ~outcome_missing & (outcome == None),  # noqa: E711
            lambda i: f"'outcome' must be 'Up' or 'Down', got {outcome_raw[i]!r:.40}")
    for name in ("price_start", "price_end"):
        ck.numeric(resolution, name, raw[name], status[name], required=False)

    cols["outcome"] = np.where(fill | quote | resolution, outcome, None)
    cols["side"] = side
    return cols, ck.reason, defaulted & ck.ok
