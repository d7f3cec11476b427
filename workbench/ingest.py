"""Ingestion: wallet files -> clean events, trades, position state and bars, with no look-ahead.

Two input formats are read:

* **seed-format JSON** (one file per market, the format of ``workbench.simulate`` and of the private
  data this project was designed for): ``{"slug": "btc-updown-15m-<start>", "prices": [events]}``
  under ``<wallet address>/``. Event types: ``trade`` (the wallet's fills), ``last_trade_price``
  (other wallets' fills), ``price_change`` (quotes), ``bar`` (underlying OHLCV), ``resolution``.
* **Polymarket Data-API activity CSV** (what users download for a wallet): ``TRADE`` (BUY/SELL of
  Up or Down), ``MERGE``, ``SPLIT``, ``REDEEM``, ``REWARD``.

Outputs (:class:`WalletData`, or Parquet via ``python -m workbench ingest``):

``events``      one row per kept record, sorted by time (UTC ms ``t`` and ``ts``).
``trades``      the studied wallet's fills, with the Up-equivalent quantity and price and the quote
                in force at the fill.
``positions``   the position state after every state-changing record (trade, merge, split, redeem,
                reward, settlement): inventory, average entry price, realised/unrealised P&L, time
                since entry. Unrealised P&L uses the last mark at or before the row's time only.
``bars``        per ``bar_interval``, built only from events strictly before each bar's close.
``quarantine``  every file or record that could not be used, with file, record, line and reason.
``files``       per-file reconciliation: records read = kept + quarantined.

Nothing is dropped silently: a record is either in ``events`` or in ``quarantine``, and
:meth:`WalletData.check` raises :class:`ReconciliationError` when the counts do not add up.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from workbench import atomic
from workbench.ledger import DOWN, UP, LedgerError, MarketPosition

# ------------------------------------------------------------------------------------------------
# Schema
# ------------------------------------------------------------------------------------------------
EVENT_TYPES = ("trade", "last_trade_price", "price_change", "bar", "resolution",
               "merge", "split", "redeem", "reward")
WALLET_ACTIVITY = ("trade", "merge", "split", "redeem", "reward")
_TYPE_ORDER = {name: i for i, name in enumerate(
    ("bar", "price_change", "last_trade_price", "trade", "merge", "split", "reward", "redeem", "resolution"))}
_NUM_FIELDS = ("price", "size", "usdc", "bid", "ask", "open", "high", "low", "close", "volume",
               "price_start", "price_end")
EVENT_COLUMNS = ("t", "wallet", "slug", "underlying", "market_start", "market_end", "type", "outcome",
                 "side") + _NUM_FIELDS + ("tx_hash", "source_file", "record")
QUARANTINE_COLUMNS = ("source_file", "level", "record", "line", "reason", "raw")
DOC_SUFFIXES = {".txt", ".md", ".gitkeep", ".keep"}

MS_PER_DAY = 86_400_000
_MIN_MS = 10**11  # a t below this is seconds, not milliseconds (1973-03-03 in ms)
_MAX_MS = 10**13  # a t above this (year 2286) is not a time in ms: rejected before any int64 conversion
_MAX_ABS = 1e12  # no price, size, amount or bar value of these markets comes near this: larger is corrupt
MAX_FILE_BYTES = 1 << 30  # a file above this (1 GiB) is quarantined unread rather than loaded into memory
_WINDOW_SLACK_BEFORE_MS = MS_PER_DAY  # quotes may start before a market opens
_WINDOW_SLACK_AFTER_MS = 7 * MS_PER_DAY  # redemptions and merges may come after it ends
_ET = ZoneInfo("America/New_York")
# used with fullmatch only: ``$`` would accept a trailing newline and split one market in two
_SLUG_RE = re.compile(r"(?P<u>[a-z0-9]+)-updown-(?P<n>\d+)(?P<unit>m|h)-(?P<start>\d{9,11})")
_ANY_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # any Polymarket slug: lowercase words joined by '-'
_MAX_SLUG = 200
_TITLE_RE = re.compile(
    r"(?P<month>January|February|March|April|May|June|July|August|September|October|November|December)"
    r" (?P<day>\d{1,2}), (?P<h1>\d{1,2})(?::(?P<m1>\d{2}))?(?P<ap1>AM|PM)"
    r"(?:-(?P<h2>\d{1,2})(?::(?P<m2>\d{2}))?(?P<ap2>AM|PM))? ET")
_UNDERLYING = {"bitcoin": "btc", "ethereum": "eth", "solana": "sol", "btc": "btc", "eth": "eth",
               "sol": "sol", "xrp": "xrp"}


COMPLETION_RECORD = "ingest.json"  # written last into an output folder: its presence means the folder is complete
INGEST_FORMAT = 2


class IngestError(ValueError):
    """Input that cannot be ingested at all (no files, unreadable folder...)."""


class ReconciliationError(IngestError):
    """Records read != records kept + records quarantined."""


class _Bad(Exception):
    """A record-level problem; the message is the quarantine reason."""


# ------------------------------------------------------------------------------------------------
# Market windows
# ------------------------------------------------------------------------------------------------
def market_window(slug: str, title: str | None = None, t_ref_ms: int | None = None
                  ) -> tuple[int | None, int | None, str]:
    """Market window ``(start_ms, end_ms, underlying)`` from a slug, or from a Data-API title.

    ``btc-updown-15m-1767555900`` gives [1767555900 s, +15 min). Hourly markets such as
    ``bitcoin-up-or-down-january-4-10pm-et`` carry no timestamp in the slug; their title
    ("Bitcoin Up or Down - January 4, 10PM ET") gives the hour in US Eastern time, and ``t_ref_ms``
    (any activity time) gives the year. Returns ``(None, None, underlying)`` when unknown.
    """
    if len(slug) > _MAX_SLUG or not _ANY_SLUG_RE.fullmatch(slug):
        return None, None, ""
    underlying = _UNDERLYING.get(slug.split("-", 1)[0], slug.split("-", 1)[0])
    m = _SLUG_RE.fullmatch(slug)
    if m:
        start = int(m["start"]) * 1000
        step = 60_000 if m["unit"] == "m" else 3_600_000
        return start, start + int(m["n"]) * step, underlying
    if not title or t_ref_ms is None:
        return None, None, underlying
    tm = _TITLE_RE.search(title)
    if not tm:
        return None, None, underlying
    ref = pd.Timestamp(t_ref_ms, unit="ms", tz="UTC").tz_convert(_ET)

    def hour(h: str, ap: str) -> int:
        return int(h) % 12 + (12 if ap == "PM" else 0)

    best: tuple[int, int] | None = None
    for year in (ref.year - 1, ref.year, ref.year + 1):
        start_dt = datetime(year, datetime.strptime(tm["month"], "%B").month, int(tm["day"]),
                            hour(tm["h1"], tm["ap1"]), int(tm["m1"] or 0), tzinfo=_ET)
        if tm["h2"]:
            end_dt = start_dt.replace(hour=hour(tm["h2"], tm["ap2"]), minute=int(tm["m2"] or 0))
            if end_dt <= start_dt:
                end_dt = end_dt + pd.Timedelta(days=1)
        else:
            end_dt = start_dt + pd.Timedelta(hours=1)
        s, e = int(start_dt.timestamp() * 1000), int(end_dt.timestamp() * 1000)
        if best is None or abs(s - t_ref_ms) < abs(best[0] - t_ref_ms):
            best = (s, e)
    assert best is not None
    return best[0], best[1], underlying


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

    def flag(self, mask: np.ndarray, message: Any) -> None:
        """``message`` is a string or a function of the record index."""
        sel = np.flatnonzero(mask & (self.reason == None))  # noqa: E711 (elementwise)
        for i in sel:
            self.reason[i] = message(i) if callable(message) else message

    def numeric(self, mask: np.ndarray, name: str, vals: Any, status: np.ndarray, *, required: bool) -> None:
        if required:
            self.flag(mask & (status == 1), f"missing field '{name}'")
        self.flag(mask & (status == 2), lambda i: f"mistyped field '{name}': expected a number, got "
                                                  f"{type(vals[i]).__name__} {vals[i]!r:.40}")
        self.flag(mask & (status == 3), lambda i: f"non-finite '{name}': {vals[i]}")
        self.flag(mask & (status == 4), lambda i: f"'{name}' = {_shown(vals[i])} out of range (|x| > {_MAX_ABS:.0e})")

    @property
    def ok(self) -> np.ndarray:
        return self.reason == None  # noqa: E711


def _enum_column(vals: list[Any], mapping: dict[str, str]) -> np.ndarray:
    """Map case-insensitive strings to canonical values; anything else to None."""
    seen = {v: mapping.get(v.strip().lower()) for v in {v for v in vals if type(v) is str}}
    return np.array([seen.get(v) if type(v) is str else None for v in vals], dtype=object)


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

    def col(key: str) -> list[Any]:
        return [d.get(key) for d in dicts]

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
    # Extract only the fields each record type carries (a quote's stray 'size' is never read).
    fields_of = {"price": fill | quote, "size": fill, "usdc": fill, "bid": quote, "ask": quote, "open": bar,
                 "high": bar, "low": bar, "close": bar, "volume": bar, "price_start": resolution,
                 "price_end": resolution, "outcome": fill | quote | resolution, "side": fill}
    subsets: dict[bytes, tuple[np.ndarray, list[dict[str, Any]]]] = {}

    def col_for(key: str) -> tuple[np.ndarray, list[Any]]:
        """Indices of the records carrying ``key`` and their values (None where absent)."""
        mask = fields_of[key]
        sig = mask.tobytes()
        if sig not in subsets:
            idx = np.flatnonzero(mask)
            subsets[sig] = (idx, [dicts[i] for i in idx])
        idx, sub = subsets[sig]
        return idx, [d.get(key) for d in sub]

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


@dataclass
class _FileResult:
    """One file's contribution: canonical rows (CSV), raw records (JSON), quarantine rows, stats."""

    stat: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, reason: str, *, line: int | None = None, raw: Any = None) -> "_FileResult":
        """Quarantine the whole file."""
        self.quarantine.append(_qrow(self.stat["source_file"], "file", reason, line=line, raw=raw))
        self.stat["status"] = "quarantined"
        return self


def _file_stat(source: str, wallet: str, fmt: str) -> dict[str, Any]:
    return {"source_file": source, "wallet": wallet, "format": fmt, "slug": None, "market_start": None,
            "market_end": None, "underlying": None, "records": 0, "kept": 0, "quarantined": 0,
            "out_of_order": 0, "outcome_defaulted": 0, "status": "ok"}


def _qrow(source: str, level: str, reason: str, record: int | None = None, line: int | None = None,
          raw: Any = None) -> dict[str, Any]:
    if raw is not None and not isinstance(raw, str):
        raw = _preview(raw)
    return {"source_file": source, "level": level, "record": record, "line": line, "reason": reason,
            "raw": None if raw is None else raw[:300]}


def _preview(obj: Any, n: int = 300) -> str:
    """At most ``n`` characters of ``obj`` as JSON (or repr), for quarantine rows. Never raises: an object nested
    too deeply to print says so."""
    try:
        return json.dumps(obj, default=str)[:n]
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(obj)[:n]
        except RecursionError:
            return f"<{type(obj).__name__} nested too deeply to show>"


class _DupDict(dict):  # type: ignore[type-arg]
    """A JSON object that repeated a key; ``duplicates`` names the keys (``json`` would keep the last silently)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: a plain dict, or a :class:`_DupDict` when a key repeats."""
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    out = _DupDict(d)
    seen: set[str] = set()
    out.duplicates = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return out


def _read_bytes(path: Path, res: "_FileResult", max_bytes: int) -> bytes | None:
    """The file's bytes, or None after quarantining the file (unreadable, or larger than ``max_bytes``)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            res.reject(f"file of {size:,} bytes exceeds the {max_bytes:,}-byte limit (not read)")
            return None
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        res.reject(f"cannot read the file: {exc.strerror or exc}")
        return None


_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode a text file: a byte-order mark selects UTF-8/16/32; BOM-less UTF-16 is recognised by its zero
    bytes; anything else must be valid UTF-8. Returns ``(text, encoding)``; raises :class:`_Bad` naming the
    encoding problem (never replaces bytes silently)."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    if encoding is None and len(raw) >= 4 and raw[1:4:2] == b"\x00\x00" and raw[0:4:2] != b"\x00\x00":
        encoding = "utf-16-le"
    elif encoding is None and len(raw) >= 4 and raw[0:4:2] == b"\x00\x00" and raw[1:4:2] != b"\x00\x00":
        encoding = "utf-16-be"
    try:
        return raw.decode(encoding or "utf-8"), encoding or "utf-8"
    except UnicodeDecodeError as exc:
        raise _Bad(f"not {encoding or 'UTF-8'} text: {exc.reason} at byte {exc.start} "
                   f"({raw[exc.start:exc.start + 4]!r})") from None


def read_json_file(path: Path, wallet: str, source: str, max_bytes: int = MAX_FILE_BYTES) -> _FileResult:
    """Parse one seed-format JSON file (records are validated later, in one batch).

    A file that is empty, not JSON, not an object with a ``prices`` list, or whose market window cannot
    be read from its slug (or file name) is quarantined as a whole.
    """
    res = _FileResult(_file_stat(source, wallet, "json"))
    raw = _read_bytes(path, res, max_bytes)
    if raw is None:
        return res
    if not raw.strip():
        return res.reject("empty file")
    try:  # bytes: json detects UTF-8 (with or without BOM), UTF-16 and UTF-32 itself
        doc = json.loads(raw, object_pairs_hook=_object_pairs)
    except RecursionError:
        return res.reject("JSON nested too deeply to parse (beyond the interpreter's recursion limit)",
                          raw=raw[:300].decode("utf-8", "replace"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers of over 4,300 digits
        return res.reject(f"malformed JSON: {exc}", line=getattr(exc, "lineno", None),
                          raw=raw[:300].decode("utf-8", "replace"))
    if isinstance(doc, _DupDict):
        return res.reject(f"duplicate key(s) {doc.duplicates[:5]} in the file's top-level object: which one is "
                          "meant is ambiguous", raw=_preview(doc))
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), list):
        return res.reject("expected an object with a 'prices' list", raw=_preview(doc))
    slug = doc.get("slug")
    if slug is None or slug == "":
        slug = re.sub(r"_prices$", "", path.stem)
    if not isinstance(slug, str):
        return res.reject(f"'slug' must be a string, got {type(slug).__name__}", raw=_preview(slug))
    start, end, underlying = market_window(slug)
    if start is None:
        return res.reject(f"cannot determine the market window from slug {slug!r:.80}")
    res.stat.update(slug=slug, market_start=start, market_end=end, underlying=underlying,
                    records=len(doc["prices"]))
    res.records = doc["prices"]
    return res


_CSV_REQUIRED = ("timestamp", "type", "side", "outcome", "outcomeIndex", "size", "usdcSize", "price",
                 "slug", "title", "proxyWallet", "transactionHash")


def _csv_num(row: dict[str, str], key: str) -> float:
    v = row.get(key)
    if v is None or v == "":
        raise _Bad(f"missing field '{key}'")
    try:
        x = float(v)
    except ValueError:
        raise _Bad(f"mistyped field '{key}': expected a number, got {v!r:.40}") from None
    if not math.isfinite(x):
        raise _Bad(f"non-finite '{key}': {v:.40}")
    if abs(x) > _MAX_ABS and key != "timestamp":
        raise _Bad(f"'{key}' = {v:.40} out of range (|x| > {_MAX_ABS:.0e})")
    return x


_TX_RE = re.compile(r"[0-9A-Za-z]{1,130}")  # Polymarket's are 0x + 64 hex digits; free text is refused
_WALLET_RE = re.compile(r"0x[0-9a-fA-F]{40}")


def _normalise_csv_row(row: dict[str, str]) -> dict[str, Any]:
    ts = _csv_num(row, "timestamp")
    if ts != int(ts):
        raise _Bad(f"'timestamp' must be whole seconds, got {row['timestamp']!r}")
    if ts >= _MIN_MS:
        raise _Bad(f"'timestamp' = {row['timestamp']} looks like milliseconds, expected seconds")
    kind = (row.get("type") or "").strip().upper()
    tx = (row.get("transactionHash") or "").strip() or None
    if tx is not None and not _TX_RE.fullmatch(tx):
        raise _Bad(f"'transactionHash' must be letters and digits only, got {tx!r:.40}")
    out: dict[str, Any] = {"t": int(ts) * 1000, "tx_hash": tx}
    if kind == "TRADE":
        price, size, usdc = _csv_num(row, "price"), _csv_num(row, "size"), _csv_num(row, "usdcSize")
        if not 0 <= price <= 1:
            raise _Bad(f"'price' outside [0, 1]: {price}")
        if size <= 0:
            raise _Bad(f"'size' must be positive, got {size}")
        outcome_raw: Any = row.get("outcome") or None
        if outcome_raw is None and row.get("outcomeIndex") in ("0", "1"):
            outcome_raw = UP if row["outcomeIndex"] == "0" else DOWN
        out.update(type="trade", side=_side(row.get("side") or None), outcome=_outcome(outcome_raw, default=None),
                   price=price, size=size, usdc=_check_usdc(usdc, price, size))
    elif kind in ("MERGE", "SPLIT", "REDEEM"):
        size, usdc = _csv_num(row, "size"), _csv_num(row, "usdcSize")
        if size < 0 or usdc < 0:
            raise _Bad(f"negative size or usdcSize in {kind}")
        if kind != "REDEEM" and abs(size - usdc) > 1e-6 * max(1.0, size):
            raise _Bad(f"{kind} must exchange one share pair per dollar: size {size} != usdcSize {usdc}")
        out.update(type=kind.lower(), size=size, usdc=usdc)
    elif kind == "REWARD":
        usdc = _csv_num(row, "usdcSize")
        if usdc < 0:
            raise _Bad(f"negative REWARD {usdc}")
        out.update(type="reward", usdc=usdc)
    elif not kind:
        raise _Bad("missing field 'type'")
    else:
        raise _Bad(f"unknown activity type {row.get('type')!r:.40}")
    return out


def read_activity_csv(path: Path, wallet_hint: str, source: str, max_bytes: int = MAX_FILE_BYTES) -> _FileResult:
    """Parse and validate one Polymarket Data-API activity CSV export (rows may come newest first).

    The text may be UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32 (see :func:`decode_text`). A row
    the CSV parser cannot read (a field over ``csv.field_size_limit()``, 128 KB), a row with an invalid slug, a
    market window that cannot be determined or a time outside it is quarantined with its line number.
    """
    res = _FileResult(_file_stat(source, wallet_hint, "csv"))
    raw = _read_bytes(path, res, max_bytes)
    if raw is None:
        return res
    try:
        text, _ = decode_text(raw)
    except _Bad as bad:
        return res.reject(str(bad))
    if not text.strip():
        return res.reject("empty file")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        return res.reject(f"unreadable CSV header: {exc}", line=1)
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:  # DictReader would keep the last of two equal columns silently
        return res.reject(f"duplicate column(s) {repeated[:5]} in the header", line=1, raw=",".join(header))
    missing = [c for c in _CSV_REQUIRED if c not in header]
    if missing:
        return res.reject(f"not a Data-API activity export: missing columns {missing}", line=1,
                          raw=text.splitlines()[0])
    prev_t: int | None = None
    rows = iter(reader)
    i = -1
    while True:
        i += 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # the parser skips the rest of the bad line and goes on with the next
            res.stat["records"] += 1
            # DictReader.line_num is updated on success only: the underlying reader's counts the bad line too
            res.quarantine.append(_qrow(source, "record", f"unreadable CSV row: {exc}", record=i,
                                        line=reader.reader.line_num))
            continue
        res.stat["records"] += 1
        try:
            if None in row:  # more cells than header columns
                raise _Bad(f"row has more cells than the header's {len(header)}")
            norm = _normalise_csv_row(row)
            slug = (row.get("slug") or "").strip()
            if not slug:
                raise _Bad("missing field 'slug'")
            if len(slug) > _MAX_SLUG or not _ANY_SLUG_RE.fullmatch(slug):
                raise _Bad(f"invalid slug {slug!r:.60}: expected lowercase words joined by '-'")
            start, end, underlying = market_window(slug, row.get("title"), norm["t"])
            if start is None or end is None:
                raise _Bad(f"cannot determine the market window of {slug} (slug or title)")
            if not start - _WINDOW_SLACK_BEFORE_MS <= norm["t"] <= end + _WINDOW_SLACK_AFTER_MS:
                raise _Bad(f"'timestamp' = {row['timestamp']:.40} outside the market window of {slug}")
            wallet = (row.get("proxyWallet") or "").strip()
            if wallet and not _WALLET_RE.fullmatch(wallet):
                raise _Bad(f"'proxyWallet' is not a 0x address: {wallet!r:.50}")
        except _Bad as bad:
            res.quarantine.append(_qrow(source, "record", str(bad), record=i, line=reader.line_num,
                                        raw=",".join(f"{k}={v}" for k, v in row.items() if v and k)))
            continue
        # exports are newest first: a row later in the file with a *later* time is out of order
        if prev_t is not None and norm["t"] > prev_t:
            res.stat["out_of_order"] += 1
        prev_t = norm["t"] if prev_t is None else min(prev_t, norm["t"])
        norm.update(wallet=(wallet or wallet_hint).lower(), slug=slug, underlying=underlying,
                    market_start=start, market_end=end, source_file=source, record=i)
        res.stat.update(slug=slug, market_start=start, market_end=end, underlying=underlying)
        res.rows.append(norm)
    return res


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as valid UTF-8 text: bytes of a file name that are not UTF-8 are shown as ``\\xNN`` escapes (a
    name with such bytes cannot be stored in a Parquet string column as it is)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SourceFile:
    """A file to read: the path as walked, its wallet hint (the folder's name) and its display name."""

    path: Path
    wallet: str
    name: str


def walk_sources(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[SourceFile], list[dict[str, Any]]]:
    """Every regular file under ``paths`` once, and every path that is not read with the reason.

    Link policy: a symbolic link (to a file or a folder) is followed when its target lies inside the source
    folder it was found in, and refused otherwise (a wallet folder cannot pull in files from elsewhere); a link
    loop, a dangling link, a FIFO/socket/device, a folder that cannot be listed and a file reached a second time
    (a hard or symbolic link, or the same path given twice) are not read. Documentation and hidden files
    (``README.md``, ``SOURCE.txt``, ``.fetch-manifest.json``...) are not data. Folders are walked in name order,
    so the result does not depend on the file system's listing order.

    Returns
    -------
    files : list of SourceFile
    not_read : list of quarantine rows (``level == "path"``), one per path not read.
    """
    files: list[SourceFile] = []
    not_read: list[dict[str, Any]] = []
    seen_files: dict[tuple[int, int], str] = {}
    seen_dirs: dict[tuple[int, int], str] = {}

    def skip(path: Path, reason: str) -> None:
        not_read.append(_qrow(display_path(path), "path", reason))

    def add_file(path: Path, st: os.stat_result) -> None:
        if path.suffix.lower() in DOC_SUFFIXES or path.name.startswith("."):
            return skip(path, "documentation or hidden file, not data")
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            return skip(path, f"same file as {seen_files[key]} (a link, or a path given twice): read once")
        seen_files[key] = display_path(path)
        files.append(SourceFile(path, path.parent.name, display_path(path)))

    def walk(top: Path, root: Path) -> None:
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                st = folder.stat()
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                skip(folder, f"cannot list the folder: {exc.strerror or exc}")
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                skip(folder, f"same folder as {seen_dirs[key]} (a link, or a path given twice): read once")
                continue
            seen_dirs[key] = display_path(folder)
            subdirs = []
            for e in entries:
                path = Path(e.path)
                try:
                    if e.is_symlink():
                        target = Path(os.path.realpath(path))
                        try:
                            tst = path.stat()
                        except OSError as exc:
                            reason = ("symbolic link loop" if exc.errno == errno.ELOOP else
                                      f"dangling symbolic link to {display_path(os.readlink(path))}"
                                      if exc.errno == errno.ENOENT else f"cannot follow the link: {exc.strerror}")
                            skip(path, reason)
                            continue
                        if not target.is_relative_to(root):
                            skip(path, f"symbolic link to {display_path(target)}, outside the source folder "
                                       f"{display_path(root)}: not followed")
                        elif stat.S_ISDIR(tst.st_mode):
                            if (tst.st_dev, tst.st_ino) in seen_dirs:
                                skip(path, f"symbolic link loop: points back to {seen_dirs[(tst.st_dev, tst.st_ino)]}")
                            else:
                                subdirs.append(path)
                        elif stat.S_ISREG(tst.st_mode):
                            add_file(path, tst)
                        else:
                            skip(path, "symbolic link to something that is not a regular file")
                    elif e.is_dir(follow_symlinks=False):
                        subdirs.append(path)
                    elif e.is_file(follow_symlinks=False):
                        add_file(path, e.stat(follow_symlinks=False))
                    else:
                        skip(path, "not a regular file (FIFO, socket or device)")
                except OSError as exc:
                    skip(path, f"cannot inspect the path: {exc.strerror or exc}")
            stack.extend(reversed(subdirs))

    for p in paths:
        p = Path(p)
        if not os.path.lexists(p):
            raise IngestError(f"no such file or folder: {display_path(p)}")
        try:
            st = p.stat()  # a link given by name is the user's choice: followed
        except OSError as exc:
            skip(p, f"cannot follow the path: {exc.strerror or exc}")
            continue
        if stat.S_ISDIR(st.st_mode):
            walk(p, p.resolve())
        elif stat.S_ISREG(st.st_mode):
            add_file(p, st)
        else:
            skip(p, "not a regular file (FIFO, socket or device)")
    return files, not_read


def _json_columns(results: list[_FileResult]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate the records of every parsed JSON file in one batch; return kept columns and quarantine rows."""
    results = [r for r in results if r.stat["status"] == "ok" and r.records]
    counts = np.array([len(r.records) for r in results], dtype=np.int64)
    recs: list[Any] = [rec for r in results for rec in r.records]
    meta = {k: np.repeat(np.array([r.stat[k] for r in results], dtype=object), counts)
            for k in ("source_file", "wallet", "slug", "underlying", "market_start", "market_end")}
    record = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, dtype=np.int64)
    lo = meta["market_start"].astype(np.int64) - _WINDOW_SLACK_BEFORE_MS if len(recs) else np.zeros(0, np.int64)
    hi = meta["market_end"].astype(np.int64) + _WINDOW_SLACK_AFTER_MS if len(recs) else np.zeros(0, np.int64)
    cols, reasons, defaulted = _validate_json_records(recs, lo, hi, meta["slug"])
    bad = np.flatnonzero(reasons != None)  # noqa: E711
    quarantine = [_qrow(meta["source_file"][i], "record", reasons[i], record=int(record[i]), raw=recs[i]) for i in bad]
    ok = reasons == None  # noqa: E711
    out = {k: v[ok] for k, v in cols.items()}
    out.update({k: v[ok] for k, v in meta.items()})
    out["record"] = record[ok]
    out["tx_hash"] = np.full(int(ok.sum()), None, dtype=object)
    # per-file counters: records kept out of time order, fills whose missing outcome was taken as Up
    file_of = np.repeat(np.arange(len(results)), counts)[ok]
    t = out["t"]
    if len(t):
        starts = np.r_[True, file_of[1:] != file_of[:-1]]
        run_max = pd.Series(t).groupby(file_of).cummax().to_numpy()
        prev_max = np.where(starts, np.iinfo(np.int64).min, np.r_[0, run_max[:-1]])
        ooo = np.bincount(file_of, weights=(t < prev_max), minlength=len(results))
        dflt = np.bincount(file_of, weights=defaulted[ok], minlength=len(results))
        for r, a, b in zip(results, ooo, dflt):
            r.stat["out_of_order"], r.stat["outcome_defaulted"] = int(a), int(b)
    return out, quarantine


def _rows_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Column arrays from canonical row dicts (numeric fields as floats, NaN where absent)."""
    out: dict[str, Any] = {}
    for c in EVENT_COLUMNS:
        vals = [r.get(c) for r in rows]
        out[c] = (np.array([np.nan if v is None else v for v in vals], dtype=np.float64) if c in _NUM_FIELDS
                  else np.array(vals, dtype=object))
    return out


def _concat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Concatenate two column arrays, keeping a numeric dtype when both are numeric."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
        return np.concatenate([a, b])
    if len(b) == 0:
        return a
    return np.concatenate([a.astype(object), b.astype(object)])


def read_events(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *, progress: bool = False,
                max_file_bytes: int = MAX_FILE_BYTES) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read every wallet file under ``paths``.

    Returns
    -------
    events, quarantine, files : DataFrame
        Kept events (sorted by wallet and time; exact duplicates and fills given both as seed JSON and as
        Data-API CSV quarantined), quarantined paths (``level`` ``"path"``: not read, see :func:`walk_sources`),
        files and records, and the per-file reconciliation (``records == kept + quarantined``).

    Raises
    ------
    IngestError
        A path that does not exist, or no data file under ``paths``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    from tqdm.auto import tqdm

    files, not_read = walk_sources(paths)
    if not files:
        why = "; ".join(f"{q['source_file']}: {q['reason']}" for q in not_read[:3])
        raise IngestError(f"no data files under {[display_path(p) for p in paths]}"
                          + (f" ({len(not_read)} path(s) not read: {why})" if not_read else ""))
    json_results, csv_results, other = [], [], []
    for f in tqdm(files, desc="files", disable=not progress):
        suffix = f.path.suffix.lower()
        wallet = display_path(f.wallet)
        if suffix == ".json":
            json_results.append(read_json_file(f.path, wallet.lower() if wallet.startswith("0x") else wallet, f.name,
                                               max_file_bytes))
        elif suffix == ".csv":
            csv_results.append(read_activity_csv(f.path, wallet, f.name, max_file_bytes))
        else:
            other.append(_FileResult(_file_stat(f.name, wallet, suffix)).reject(
                f"unsupported file type {display_path(suffix)!r}"))
    results = json_results + csv_results + other
    quarantine = not_read + [q for r in results for q in r.quarantine]
    jcols, jq = _json_columns(json_results)
    quarantine.extend(jq)
    ccols = _rows_columns([row for r in csv_results for row in r.rows])
    events = _events_frame({c: _concat(jcols[c], ccols[c]) for c in EVENT_COLUMNS})
    events, dup_q = _drop_duplicates(events)
    quarantine.extend(dup_q)
    events, cross_q = _drop_cross_format_fills(events, {r.stat["source_file"] for r in csv_results})
    quarantine.extend(cross_q)
    qdf = pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS))
    qdf["record"] = qdf["record"].astype("Int64")
    qdf["line"] = qdf["line"].astype("Int64")
    fdf = pd.DataFrame([r.stat for r in results], columns=list(_file_stat("", "", "")))
    fdf = fdf.drop(columns=["market_start", "market_end", "underlying"])
    kept = events.groupby("source_file").size()
    qrec = qdf[qdf["level"] == "record"].groupby("source_file").size()
    fdf["kept"] = fdf["source_file"].map(kept).fillna(0).astype(int)
    fdf["quarantined"] = fdf["source_file"].map(qrec).fillna(0).astype(int)
    return events, qdf, fdf


_FILL_KEY = ["wallet", "slug", "second", "side", "outcome", "price6", "size6"]


def _drop_cross_format_fills(events: pd.DataFrame, csv_sources: set[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Quarantine Data-API CSV fills that repeat a seed-JSON fill of the same wallet and market.

    The two formats describe one fill differently (milliseconds vs whole seconds, no transaction hash in the
    JSON), so exact-duplicate detection misses the pair and the fill would count twice. A CSV fill matches a
    JSON fill with the same wallet, market, second, side, outcome, price and size (to 1e-6); equal fills are
    matched one to one in time order, so a fill repeated *within* one format is never taken for a copy.
    """
    is_trade = (events["type"] == "trade").to_numpy()
    is_csv = events["source_file"].isin(csv_sources).to_numpy()
    if not (is_trade & is_csv).any() or not (is_trade & ~is_csv).any():
        return events, []
    tr = events[is_trade].assign(second=events["t"] // 1000, price6=events["price"].round(6),
                                 size6=events["size"].round(6), _row=np.flatnonzero(is_trade))
    csv_part = tr[is_csv[is_trade]].copy()
    json_part = tr[~is_csv[is_trade]].copy()
    csv_part["_k"] = csv_part.groupby(_FILL_KEY, sort=False).cumcount()
    json_part["_k"] = json_part.groupby(_FILL_KEY, sort=False).cumcount()
    m = csv_part.merge(json_part[_FILL_KEY + ["_k", "source_file", "record"]], on=_FILL_KEY + ["_k"],
                       suffixes=("", "_json"))
    if m.empty:
        return events, []
    q = [_qrow(r.source_file, "record", f"same fill as {r.source_file_json} record {r.record_json} (given both as "
                                        "seed JSON and as Data-API CSV): counted once", record=int(r.record),
               raw={"t": int(r.t), "side": r.side, "outcome": r.outcome, "price": r.price, "size": r.size})
         for r in m.itertuples(index=False)]
    drop = np.zeros(len(events), dtype=bool)
    drop[m["_row"].to_numpy()] = True
    return events[~drop].reset_index(drop=True), q


def _events_frame(cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """Typed, time-sorted events table from canonical column arrays."""
    def text(c: str) -> pd.Series:  # pandas' string dtype; None becomes missing (NaN)
        return pd.Series(np.asarray(cols[c], dtype=object), dtype="str")

    df = pd.DataFrame({
        "t": np.asarray(cols["t"], dtype=np.int64),
        **{c: text(c) for c in ("wallet", "slug", "underlying", "type", "outcome", "side", "tx_hash", "source_file")},
        **{c: pd.array(cols[c], dtype="Int64") for c in ("market_start", "market_end")},
        **{c: np.asarray(cols[c], dtype=np.float64) for c in _NUM_FIELDS},
        "record": np.asarray(cols["record"], dtype=np.int64),
    })
    df.insert(1, "ts", pd.to_datetime(df["t"], unit="ms", utc=True))
    order = df["type"].map(_TYPE_ORDER).astype(int)
    df = df.assign(_o=order).sort_values(["wallet", "t", "_o", "source_file", "record"], kind="stable")
    return df.drop(columns="_o").reset_index(drop=True)


def _drop_duplicates(events: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Quarantine exact repeats of a record (same wallet, market, time and every field), keeping the
    earliest. Data-API rows also compare the transaction hash, so distinct fills of equal size survive."""
    key = [c for c in EVENT_COLUMNS if c not in ("source_file", "record")]
    dup = events.duplicated(subset=key, keep="first").to_numpy()
    if not dup.any():
        return events, []
    gid = events.groupby(key, dropna=False, sort=False).ngroup().to_numpy()
    first_row = pd.Series(np.arange(len(events))).groupby(gid).transform("min").to_numpy()
    q = []
    for i in np.flatnonzero(dup):
        orig = events.iloc[first_row[i]]
        row = events.iloc[i]
        q.append(_qrow(row["source_file"], "record", f"duplicate of {orig['source_file']} record {orig['record']}",
                       record=int(row["record"]),
                       raw={c: (None if pd.isna(row[c]) else row[c]) for c in ("t", "type", "outcome", "side",
                                                                               "price", "size", "bid", "ask")}))
    return events[~dup].reset_index(drop=True), q


# ------------------------------------------------------------------------------------------------
# Marks, trades, positions, bars
# ------------------------------------------------------------------------------------------------
def up_marks(events: pd.DataFrame) -> pd.DataFrame:
    """Up-token marks per (wallet, slug) over time: quote mid, or trade prices when a market has no quotes.

    Returns columns ``wallet, slug, t, mark_up, bid_up, ask_up`` sorted by ``t``. Down quotes and
    Down trades are folded in as ``1 - price``. Quotes mark a market from its first quote on (fills are
    noisier); before it, and in markets without quotes (Data-API exports), fills of any wallet do.
    """
    q = events[events["type"] == "price_change"]
    down = (q["outcome"] == DOWN).to_numpy()
    bid = np.where(down, 1 - q["ask"].to_numpy(), q["bid"].to_numpy())
    ask = np.where(down, 1 - q["bid"].to_numpy(), q["ask"].to_numpy())
    quotes = pd.DataFrame({"wallet": q["wallet"].to_numpy(), "slug": q["slug"].to_numpy(), "t": q["t"].to_numpy(),
                           "mark_up": (bid + ask) / 2, "bid_up": bid, "ask_up": ask})
    # fills mark a market only before its first quote (so the rule never depends on later data)
    first_quote = q.groupby(["wallet", "slug"])["t"].min().rename("first_quote")
    fills = events[events["type"].isin(["trade", "last_trade_price"])]
    fq = fills.join(first_quote, on=["wallet", "slug"])["first_quote"].to_numpy(dtype=np.float64, na_value=np.inf)
    fills = fills[fills["t"].to_numpy() < fq]
    px = np.where(fills["outcome"].to_numpy() == DOWN, 1 - fills["price"].to_numpy(), fills["price"].to_numpy())
    trade_marks = pd.DataFrame({"wallet": fills["wallet"].to_numpy(), "slug": fills["slug"].to_numpy(),
                                "t": fills["t"].to_numpy(), "mark_up": px, "bid_up": np.nan, "ask_up": np.nan})
    marks = pd.concat([quotes, trade_marks], ignore_index=True)
    return marks.sort_values("t", kind="stable").reset_index(drop=True)


def _asof(left: pd.DataFrame, right: pd.DataFrame, cols: list[str], *, by: list[str],
          exact: bool) -> pd.DataFrame:
    """Backward as-of join on ``t`` (``exact=False``: strictly before). Keeps ``left``'s row order."""
    left = left.reset_index(drop=True)
    lk = left[by + ["t"]].assign(_row=np.arange(len(left))).sort_values("t", kind="stable")
    rk = right[by + ["t"] + cols].sort_values("t", kind="stable")
    for c in by:  # merge_asof needs identical key dtypes
        lk[c] = lk[c].astype("string")
        rk[c] = rk[c].astype("string")
    m = pd.merge_asof(lk, rk, on="t", by=by, direction="backward", allow_exact_matches=exact)
    m = m.sort_values("_row")
    for c in cols:
        left[c] = m[c].to_numpy()
    return left


def build_trades(events: pd.DataFrame, marks: pd.DataFrame) -> pd.DataFrame:
    """The studied wallet's fills, normalised to Up-equivalent exposure.

    Added columns: ``up_equiv_qty`` (signed shares: +size for BUY Up or SELL Down, -size for SELL Up
    or BUY Down), ``up_equiv_price`` (price for Up, 1 - price for Down), ``cash_flow`` (USDC, -usdc on
    a buy), the Up quote in force at the fill (``bid_up, ask_up, mark_up``, as of ``t`` inclusive)
    and ``time_left_s`` to the market's end.
    """
    tr = events[events["type"] == "trade"].copy()
    buy = (tr["side"] == "BUY").to_numpy()
    up = (tr["outcome"] == UP).to_numpy()
    size = tr["size"].to_numpy()
    tr["up_equiv_qty"] = np.where(buy == up, size, -size)
    tr["up_equiv_price"] = np.where(up, tr["price"].to_numpy(), 1 - tr["price"].to_numpy())
    tr["cash_flow"] = np.where(buy, -tr["usdc"].to_numpy(), tr["usdc"].to_numpy())
    tr = _asof(tr, marks, ["mark_up", "bid_up", "ask_up"], by=["wallet", "slug"], exact=True)
    tr["time_left_s"] = (tr["market_end"].astype("Float64") - tr["t"]) / 1000.0
    return tr.drop(columns=["bid", "ask", "open", "high", "low", "close", "volume", "price_start", "price_end"])


_RESOLUTION_BAND = 0.9  # last Up-equivalent fill price >= 0.9 (<= 0.1) implies Up (Down) won


def infer_resolutions(events: pd.DataFrame) -> pd.DataFrame:
    """How each (wallet, slug) market resolved, from evidence available at its settlement time.

    Returns columns ``wallet, slug, winner, resolution_source, settle_t``:

    * ``event``: a resolution record; settled at its time with its winner.
    * ``last price``: no record, but the last fill at or before the market's end priced one side at
      >= 0.9; settled at the market's end (uses fills up to the end only).
    * ``unknown``: neither; the position stays open, marked at the last price, until a REDEEM (whose
      payout tells the winner) closes it in :func:`build_positions`.
    """
    key = ["wallet", "slug"]
    base = events.groupby(key, sort=False).agg(market_end=("market_end", "first")).reset_index()
    res = events[events["type"] == "resolution"].groupby(key).agg(res_winner=("outcome", "last"), res_t=("t", "last"))
    end = events["market_end"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.inf)
    fills = events[events["type"].isin(["trade", "last_trade_price"]) & (events["t"].to_numpy() <= end)]
    up_px = np.where(fills["outcome"] == UP, fills["price"], 1 - fills["price"])
    last_px = fills.assign(up_px=up_px).groupby(key)["up_px"].last().rename("last_up_px")
    df = base.join(res, on=key).join(last_px, on=key)
    has_res = df["res_winner"].notna().to_numpy()
    px = df["last_up_px"].to_numpy(dtype=np.float64, na_value=np.nan)
    end_ms = df["market_end"].to_numpy(dtype=np.float64, na_value=np.nan)
    by_price = ~has_res & np.isfinite(end_ms) & ((px >= _RESOLUTION_BAND) | (px <= 1 - _RESOLUTION_BAND))
    source = np.select([has_res, by_price], ["event", "last price"], "unknown")
    winner = np.where(has_res, df["res_winner"].to_numpy(dtype=object),
                      np.where(by_price, np.where(px >= _RESOLUTION_BAND, UP, DOWN), None))
    settle = np.where(has_res, df["res_t"].to_numpy(dtype=np.float64, na_value=np.nan),
                      np.where(by_price, end_ms, np.nan))
    return pd.DataFrame({"wallet": df["wallet"], "slug": df["slug"], "winner": winner,
                         "resolution_source": source, "settle_t": pd.array(settle, dtype="Float64").astype("Int64")})


POSITION_COLUMNS = ("t", "wallet", "slug", "event", "outcome", "side", "size", "price", "q_up", "q_down",
                    "net_up_equiv", "avg_up", "avg_down", "entry_price_up_equiv", "mark_up", "realized_delta",
                    "realized_pnl", "unrealized_pnl", "total_pnl", "cum_realized_wallet", "time_since_entry_s",
                    "resolution_source", "history_incomplete", "source_file", "record")


def build_positions(events: pd.DataFrame, marks: pd.DataFrame, resolutions: pd.DataFrame) -> pd.DataFrame:
    """Position state after each state-changing record, per (wallet, market), in time order.

    Each row carries the state *after* the record: holdings per token, net Up-equivalent inventory,
    average costs, Up-equivalent entry price, the mark in force at ``t`` (inclusive), realised P&L of
    the market and cumulated over the wallet, unrealised P&L at the mark, and seconds since the
    position was opened. Settlement rows (``event == 'settlement'``) close markets at their resolution.
    See :mod:`workbench.ledger` for the accounting rules.
    """
    act = events[events["type"].isin(WALLET_ACTIVITY)][
        ["t", "wallet", "slug", "type", "outcome", "side", "size", "price", "usdc", "source_file", "record"]].copy()
    # a market gets a settlement row only if the wallet was active in it at or before the settlement
    first_activity = act.groupby(["wallet", "slug"])["t"].min()
    settle = resolutions[resolutions["settle_t"].notna()]
    first = settle.join(first_activity.rename("first_t"), on=["wallet", "slug"])["first_t"]
    settle = settle[(first.notna() & (first <= settle["settle_t"].astype("Float64"))).to_numpy(dtype=bool)]
    srows = pd.DataFrame({"t": settle["settle_t"].astype(np.int64).to_numpy(), "wallet": settle["wallet"].to_numpy(),
                          "slug": settle["slug"].to_numpy(), "type": "settlement", "outcome": settle["winner"].to_numpy(),
                          "side": None, "size": np.nan, "price": np.nan, "usdc": np.nan, "source_file": None,
                          "record": -1})
    rows = pd.concat([act, srows], ignore_index=True) if len(srows) else act.reset_index(drop=True)
    order = rows["type"].map({**_TYPE_ORDER, "settlement": 99}).astype(int)
    rows = rows.assign(_o=order).sort_values(["wallet", "t", "_o"], kind="stable").drop(columns="_o")
    rows = _asof(rows, marks, ["mark_up"], by=["wallet", "slug"], exact=True)
    src = dict(zip(zip(resolutions["wallet"], resolutions["slug"]), resolutions["resolution_source"]))

    books: dict[tuple[str, str], MarketPosition] = {}
    winners: dict[tuple[str, str], str] = {}  # markets settled so far, and their winner
    cum: dict[str, float] = {}
    out: dict[str, list[Any]] = {c: [] for c in POSITION_COLUMNS}
    for r in rows.itertuples(index=False):
        key = (r.wallet, r.slug)
        pos = books.setdefault(key, MarketPosition())
        t, mark = int(r.t), float(r.mark_up) if pd.notna(r.mark_up) else math.nan
        source = None
        try:
            if r.type == "settlement":
                delta = pos.settle(t, r.outcome)
                winners[key], source = r.outcome, src.get(key)
            elif r.type == "redeem" and key not in winners:
                winners[key] = pos.infer_redeem_winner(float(r.usdc))
                delta, source = pos.settle(t, winners[key]), "redeem"
            elif r.type in ("redeem", "merge") and key in winners and pos.is_flat:
                delta, source = 0.0, "after settlement"  # shares were already valued at settlement
            else:
                if r.type == "trade":
                    delta = pos.trade(t, r.outcome, r.side, float(r.size), float(r.price))
                elif r.type == "merge":
                    delta = pos.merge(t, float(r.size), mark)
                elif r.type == "split":
                    delta = pos.split(t, float(r.size), mark)
                elif r.type == "reward":
                    delta = pos.reward(t, float(r.usdc))
                else:
                    raise LedgerError(f"unexpected activity type {r.type!r}")
                if key in winners and not pos.is_flat:  # activity after resolution settles at once
                    delta += pos.settle(t, winners[key])
                    source = "after settlement"
        except LedgerError as exc:  # validated upstream: reaching here is a bug, not bad input
            raise IngestError(f"{r.source_file} record {r.record}: {exc}") from exc
        cum[r.wallet] = cum.get(r.wallet, 0.0) + delta
        unreal = pos.unrealized(mark)
        vals = (t, r.wallet, r.slug, r.type, r.outcome, r.side, r.size, r.price, pos.q_up, pos.q_down, pos.net,
                pos.avg_up if pos.q_up else math.nan, pos.avg_down if pos.q_down else math.nan, pos.entry_price,
                mark, delta, pos.realized, unreal, pos.realized + unreal, cum[r.wallet],
                (t - pos.entry_t) / 1000.0 if pos.entry_t is not None else math.nan,
                source, pos.history_incomplete, r.source_file, r.record)
        for c, v in zip(POSITION_COLUMNS, vals):
            out[c].append(v)
    pos_df = pd.DataFrame(out)
    for c in ("wallet", "slug", "event", "outcome", "side", "resolution_source", "source_file"):
        pos_df[c] = pos_df[c].astype("str").where(pos_df[c].notna())  # one text dtype, even when all missing
    pos_df.insert(1, "ts", pd.to_datetime(pos_df["t"].astype(np.int64), unit="ms", utc=True))
    return pos_df


BAR_COLUMNS = ("wallet", "underlying", "ts", "bar_start", "bar_end", "u_open", "u_high", "u_low", "u_close",
               "u_volume", "u_bars", "slug", "mid_open", "mid_high", "mid_low", "mid_close", "bid_close", "ask_close",
               "quotes", "market_trades", "market_usdc", "wallet_trades", "wallet_flow", "wallet_buy_usdc",
               "wallet_sell_usdc", "inventory", "realized_pnl_cum", "unrealized_pnl")


def build_bars(events: pd.DataFrame, positions: pd.DataFrame, marks: pd.DataFrame,
               interval: str = "15min", offset: str = "0s") -> pd.DataFrame:
    """Bars per (wallet, underlying) at ``interval``, built only from events strictly before each close.

    A bar covers ``[bar_start, bar_end)``; a record at exactly ``bar_end`` belongs to the next bar. Bar
    boundaries are multiples of ``interval`` shifted by ``offset`` (e.g. ``"5s"`` to start one-minute
    steps at the simulated trader's decision times).
    Empty bars are kept (NaN prices, zero counts): nothing is forward-filled.

    Columns: underlying OHLCV from ``bar`` records (``u_open ... u_volume``, ``u_bars``); the Up-token
    mid OHLC, closing bid/ask and quote count of the market quoted last in the bar (``slug``); fills by
    other wallets (``market_trades``, ``market_usdc``); the studied wallet's fills (``wallet_trades``,
    ``wallet_flow`` in signed Up-equivalent shares, ``wallet_buy_usdc``, ``wallet_sell_usdc``); and its
    state at the close from records strictly before it: ``inventory`` (net Up-equivalent shares over
    open markets), ``realized_pnl_cum`` and ``unrealized_pnl`` (open markets at their last mark).
    """
    step = int(pd.Timedelta(interval).total_seconds() * 1000)
    off = int(pd.Timedelta(offset).total_seconds() * 1000)
    if step <= 0:
        raise ValueError(f"bar interval must be positive, got {interval!r}")
    if not 0 <= off < step:
        raise ValueError(f"bar offset must be in [0, interval), got {offset!r}")
    ev = events.assign(bar_end=((events["t"] - off) // step + 1) * step + off)
    frames = []
    for (wallet, und), g in ev.groupby(["wallet", "underlying"], sort=True):
        grid = np.arange(int(g["bar_end"].min()), int(g["bar_end"].max()) + step, step, dtype=np.int64)
        bars = pd.DataFrame({"wallet": wallet, "underlying": und, "bar_start": grid - step, "bar_end": grid})
        ub = g[g["type"] == "bar"].groupby("bar_end").agg(
            u_open=("open", "first"), u_high=("high", "max"), u_low=("low", "min"), u_close=("close", "last"),
            u_volume=("volume", "sum"), u_bars=("open", "size"))
        q = g[g["type"] == "price_change"]
        q = q.assign(mid=np.where(q["outcome"] == DOWN, 1 - (q["bid"] + q["ask"]) / 2, (q["bid"] + q["ask"]) / 2),
                     bid_up=np.where(q["outcome"] == DOWN, 1 - q["ask"], q["bid"]),
                     ask_up=np.where(q["outcome"] == DOWN, 1 - q["bid"], q["ask"]))
        last_slug = q.groupby("bar_end")["slug"].last()
        q = q[q["slug"].to_numpy() == q["bar_end"].map(last_slug).to_numpy()]
        qb = q.groupby("bar_end").agg(slug=("slug", "last"), mid_open=("mid", "first"), mid_high=("mid", "max"),
                                      mid_low=("mid", "min"), mid_close=("mid", "last"), bid_close=("bid_up", "last"),
                                      ask_close=("ask_up", "last"), quotes=("mid", "size"))
        mt = g[g["type"] == "last_trade_price"].groupby("bar_end").agg(market_trades=("usdc", "size"),
                                                                      market_usdc=("usdc", "sum"))
        wt = g[g["type"] == "trade"]
        buy = wt["side"] == "BUY"
        flow = np.where((buy == (wt["outcome"] == UP)).to_numpy(), wt["size"].to_numpy(), -wt["size"].to_numpy())
        wt = wt.assign(flow=flow, buy_usdc=np.where(buy, wt["usdc"], 0.0), sell_usdc=np.where(buy, 0.0, wt["usdc"]))
        wf = wt.groupby("bar_end").agg(wallet_trades=("flow", "size"), wallet_flow=("flow", "sum"),
                                       wallet_buy_usdc=("buy_usdc", "sum"), wallet_sell_usdc=("sell_usdc", "sum"))
        bars = bars.join(ub, on="bar_end").join(qb, on="bar_end").join(mt, on="bar_end").join(wf, on="bar_end")
        for c in ("u_bars", "quotes", "market_trades", "wallet_trades"):
            bars[c] = bars[c].fillna(0).astype(int)  # counts: an empty bar has zero, not NaN
        for c in ("market_usdc", "wallet_flow", "wallet_buy_usdc", "wallet_sell_usdc"):
            bars[c] = bars[c].fillna(0.0)
        bars = _bar_state(bars, positions[(positions["wallet"] == wallet)],
                          marks[marks["wallet"] == wallet], set(g["slug"].unique()))
        frames.append(bars)
    if not frames:
        return pd.DataFrame(columns=list(BAR_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    out.insert(2, "ts", pd.to_datetime(out["bar_end"], unit="ms", utc=True))
    return out


def _groups(keys: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """(key, row indices) per distinct key, first-appearance order; row order kept within a group."""
    order = np.argsort(pd.factorize(keys)[0], kind="stable")
    k_sorted = keys[order]
    cuts = np.flatnonzero(k_sorted[1:] != k_sorted[:-1]) + 1
    return [(k_sorted[idx[0]], order[idx]) for idx in np.split(np.arange(len(keys)), cuts) if len(idx)] \
        if len(keys) else []


def _bar_state(bars: pd.DataFrame, pos: pd.DataFrame, marks: pd.DataFrame, slugs: set[str]) -> pd.DataFrame:
    """Inventory, cumulative realised and unrealised P&L at each bar close, from records strictly before."""
    ends = bars["bar_end"].to_numpy()
    pos = pos[pos["slug"].isin(slugs)]
    cum = np.zeros(len(ends))
    if len(pos):
        idx = np.searchsorted(pos["t"].to_numpy(), ends, side="left") - 1  # rows strictly before the close
        cum = np.where(idx >= 0, pos["cum_realized_wallet"].to_numpy()[np.maximum(idx, 0)], 0.0)
    inventory = np.zeros(len(ends))
    unreal = np.zeros(len(ends))
    marks = marks[marks["slug"].isin(pos["slug"].unique())]
    m_t, m_v = marks["t"].to_numpy(), marks["mark_up"].to_numpy()
    mark_rows = dict(_groups(marks["slug"].to_numpy(dtype=object)))
    p_t, p_event = pos["t"].to_numpy(), pos["event"].to_numpy(dtype=object)
    p_qu, p_qd = pos["q_up"].to_numpy(), pos["q_down"].to_numpy()
    p_au, p_ad = np.nan_to_num(pos["avg_up"].to_numpy()), np.nan_to_num(pos["avg_down"].to_numpy())
    for slug, rows in _groups(pos["slug"].to_numpy(dtype=object)):
        ts = p_t[rows]
        last = rows[-1]
        closed = p_event[last] in ("settlement", "redeem") and p_qu[last] == 0 and p_qd[last] == 0
        lo = np.searchsorted(ends, ts[0], side="right")  # first close strictly after the first record
        hi = np.searchsorted(ends, ts[-1], side="right") if closed else len(ends)
        if hi <= lo:
            continue
        sel = np.arange(lo, hi)
        j = rows[np.searchsorted(ts, ends[sel], side="left") - 1]
        q_up, q_dn, a_up, a_dn = p_qu[j], p_qd[j], p_au[j], p_ad[j]
        mrows = mark_rows.get(slug, np.zeros(0, dtype=np.int64))
        k = np.searchsorted(m_t[mrows], ends[sel], side="left") - 1
        mark = np.where(k >= 0, m_v[mrows][np.maximum(k, 0)], np.nan) if len(mrows) else np.full(len(sel), np.nan)
        u = q_up * (mark - a_up) + q_dn * ((1 - mark) - a_dn)
        inventory[sel] += q_up - q_dn
        unreal[sel] += np.where((q_up == 0) & (q_dn == 0), 0.0, u)
    return bars.assign(inventory=inventory, realized_pnl_cum=cum, unrealized_pnl=unreal)


# ------------------------------------------------------------------------------------------------
# Public entry point
# ------------------------------------------------------------------------------------------------
@dataclass
class WalletData:
    """Everything ingested from one or more wallets' files. See the module docstring."""

    events: pd.DataFrame
    trades: pd.DataFrame
    positions: pd.DataFrame
    bars: pd.DataFrame
    quarantine: pd.DataFrame
    files: pd.DataFrame
    resolutions: pd.DataFrame
    bar_interval: str = "15min"

    TABLES = ("events", "trades", "positions", "bars", "quarantine", "files", "resolutions")

    def reconciliation(self) -> dict[str, int | bool]:
        """Counts: records read = kept + quarantined, and files read = parsed + quarantined; paths not read."""
        f = self.files
        level = self.quarantine["level"]
        file_q = int((level == "file").sum())
        rec_q = int((level == "record").sum())
        read = int(f["records"].sum()) if len(f) else 0
        kept = len(self.events)
        return {"files_read": len(f), "files_quarantined": file_q, "records_read": read,
                "records_kept": kept, "records_quarantined": rec_q, "paths_not_read": int((level == "path").sum()),
                "out_of_order_records": int(f["out_of_order"].sum()) if len(f) else 0,
                "outcome_defaulted": int(f["outcome_defaulted"].sum()) if len(f) else 0,
                "balanced": read == kept + rec_q and bool((f["records"] == f["kept"] + f["quarantined"]).all())}

    def check(self) -> dict[str, int | bool]:
        """Return :meth:`reconciliation`, raising :class:`ReconciliationError` when it does not balance."""
        rec = self.reconciliation()
        if not rec["balanced"]:
            bad = self.files[self.files["records"] != self.files["kept"] + self.files["quarantined"]]
            raise ReconciliationError(
                f"records read ({rec['records_read']}) != kept ({rec['records_kept']}) + quarantined "
                f"({rec['records_quarantined']}); unbalanced files: {bad['source_file'].tolist()[:5]}")
        return rec

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write every table as Parquet, all or nothing.

        :meth:`check` runs first (nothing is written when the counts do not balance). The tables and the
        completion record ``ingest.json`` (row counts and SHA-256 of every table) are written into a temporary
        sibling folder, which then replaces ``out_dir`` in one atomic exchange (:func:`workbench.atomic.replace_folder`):
        a reader sees the old complete folder or the new one, never a mix, whenever the process is killed.
        """
        rec = self.check()
        out = Path(out_dir)

        def write_all(tmp: Path) -> None:
            tables = {}
            for name in self.TABLES:
                path = tmp / f"{name}.parquet"
                getattr(self, name).to_parquet(path, index=False)
                tables[name] = {"rows": len(getattr(self, name)), "sha256": atomic.sha256_file(path)}
            meta = {"complete": True, "format": INGEST_FORMAT, "bar_interval": self.bar_interval,
                    "reconciliation": rec, "tables": tables}
            (tmp / COMPLETION_RECORD).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

        atomic.replace_folder(out, write_all)
        written = {name: out / f"{name}.parquet" for name in self.TABLES}
        written["meta"] = out / COMPLETION_RECORD
        return written

    @classmethod
    def read(cls, folder: str | os.PathLike[str], verify: bool = False) -> "WalletData":
        """Read tables written by :meth:`write`.

        Refuses (:class:`IngestError`) a folder without its completion record, or whose tables do not have the
        row counts it records (with ``verify=True`` also their SHA-256): such a folder is the remains of an
        interrupted or foreign write, and reading it could mix tables of two runs.
        """
        folder = Path(folder)
        meta_path = folder / COMPLETION_RECORD
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IngestError(f"{folder} has no completion record ({COMPLETION_RECORD}): not a finished ingest "
                              "output; run the ingestion again") from None
        except (OSError, ValueError) as exc:
            raise IngestError(f"{meta_path}: unreadable completion record: {exc}") from None
        if not isinstance(meta, dict) or meta.get("complete") is not True or not isinstance(meta.get("tables"), dict):
            raise IngestError(f"{meta_path}: the ingest output is incomplete; run the ingestion again")
        tables = {}
        for name in cls.TABLES:
            path = folder / f"{name}.parquet"
            expected = meta["tables"].get(name, {})
            if verify and atomic.sha256_file(path) != expected.get("sha256"):
                raise IngestError(f"{path} differs from the one the completion record lists")
            try:
                tables[name] = pd.read_parquet(path)
            except (OSError, ValueError) as exc:
                raise IngestError(f"{path}: unreadable table: {exc}") from None
            if len(tables[name]) != expected.get("rows"):
                raise IngestError(f"{path} has {len(tables[name])} rows, the completion record says "
                                  f"{expected.get('rows')}: tables of different runs")
        return cls(**tables, bar_interval=meta.get("bar_interval", "15min"))


def derive_tables(events: pd.DataFrame, bar_interval: str = "15min"
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From clean events, build ``(trades, positions, bars, resolutions)``. Pure and causal."""
    marks = up_marks(events)
    resolutions = infer_resolutions(events)
    trades = build_trades(events, marks)
    positions = build_positions(events, marks, resolutions)
    bars = build_bars(events, positions, marks, bar_interval)
    return trades, positions, bars, resolutions


def load_wallet(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], bar_interval: str = "15min",
                *, progress: bool = False) -> WalletData:
    """Ingest one or many wallets' files (folders or files; seed-format JSON or Data-API CSV).

    Parameters
    ----------
    paths
        Files or folders (searched recursively). A JSON file's wallet is its folder's name; a CSV row's
        wallet is its ``proxyWallet``.
    bar_interval
        Pandas offset string for :func:`build_bars` (default the design's 15 minutes).

    Returns
    -------
    WalletData
        ``.events, .trades, .positions, .bars, .quarantine, .files, .resolutions``.
    """
    events, quarantine, files = read_events(paths, progress=progress)
    trades, positions, bars, resolutions = derive_tables(events, bar_interval)
    return WalletData(events, trades, positions, bars, quarantine, files, resolutions, bar_interval)


# ------------------------------------------------------------------------------------------------
# Helpers for notebooks and reports
# ------------------------------------------------------------------------------------------------
def find_wallet_dir(merged_trades: str | os.PathLike[str], wallet: str = "") -> Path:
    """The folder of ``wallet`` under ``merged_trades``; with ``wallet=""``, the only folder there."""
    root = Path(merged_trades)
    if wallet:
        folder = root / wallet
        if not folder.is_dir():
            raise IngestError(f"no wallet folder {folder}")
        return folder
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".tmp")) if root.is_dir() else []
    if len(folders) != 1:
        raise IngestError(f"{root} holds {len(folders)} wallet folders {[p.name for p in folders]}: "
                          "set WALLET to choose one")
    return folders[0]


def preview_file(path: str | os.PathLike[str], n: int = 8) -> pd.DataFrame:
    """The first ``n`` records of a seed-format JSON file, as they are written (no validation)."""
    doc = json.loads(Path(path).read_text())
    return pd.DataFrame(doc["prices"][:n]).assign(slug=doc.get("slug"))


def wallet_summary(data: WalletData) -> pd.DataFrame:
    """One row per wallet: activity, volume and P&L (realised; unrealised on markets still open)."""
    pos = data.positions
    last = pos.groupby(["wallet", "slug"]).last()
    per_market = last["total_pnl"]
    tr = data.trades
    g = tr.groupby("wallet")
    out = pd.DataFrame({
        "first_fill": pd.to_datetime(g["t"].min(), unit="ms", utc=True),
        "last_fill": pd.to_datetime(g["t"].max(), unit="ms", utc=True),
        "markets": g["slug"].nunique(),
        "fills": g.size(),
        "buy_share": g["side"].apply(lambda s: (s == "BUY").mean()),
        "up_share": g["outcome"].apply(lambda s: (s == UP).mean()),
        "volume_usdc": g["usdc"].sum(),
        "realized_pnl": last.groupby("wallet")["realized_pnl"].sum(),
        "unrealized_pnl_open": last.groupby("wallet")["unrealized_pnl"].sum(),
        "pnl_per_market": per_market.groupby("wallet").mean(),
        "markets_won_share": (per_market > 0).groupby("wallet").mean(),
        "merges": pos[pos["event"] == "merge"].groupby("wallet").size(),
    }).fillna({"merges": 0})
    return out


def busiest_markets(trades: pd.DataFrame, n: int = 2) -> list[str]:
    """Slugs of the ``n`` markets with the most fills (ties broken by time)."""
    counts = trades.groupby("slug").size().sort_values(ascending=False, kind="stable")
    return counts.index[:n].tolist()


def rebar(data: WalletData, interval: str, offset: str = "0s") -> pd.DataFrame:
    """Bars of already-ingested data at another ``interval``/``offset`` (same rules as :func:`build_bars`)."""
    if interval == data.bar_interval and pd.Timedelta(offset) == pd.Timedelta(0) and len(data.bars):
        return data.bars
    return build_bars(data.events, data.positions, up_marks(data.events), interval, offset)
