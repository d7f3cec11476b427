"""The ingested record schema: event types and columns, limits, errors, market windows from slugs and
titles, and the quarantine row every unusable path, file or record becomes.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Sequence
from zoneinfo import ZoneInfo

import pandas as pd

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
               "sol": "sol", "xrp": "xrp", "dogecoin": "doge", "doge": "doge"}


def normalise_assets(assets: Sequence[str] | str) -> tuple[str, ...]:
    """Asset names as the simulator and the slugs spell them: ``"BTC-USD"``, ``"BTC"`` and ``"btc"`` are
    ``"btc"``, and so is ``"bitcoin"`` (document 000 writes ``--symbols BTC-USD ETH-USD``). One string is one asset."""
    items = [assets] if isinstance(assets, str) else list(assets)
    names = (str(a).strip().lower().split("-")[0] for a in items)
    return tuple(_UNDERLYING.get(n, n) for n in names)


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
