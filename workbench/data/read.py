"""Reading wallet files: seed-format JSON and Data-API activity CSV (any Unicode encoding), per-file results
with quarantine rows, exact duplicates and fills given in both formats, the time-sorted events table.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench import config
from workbench.data.columnar import TEXT_COLUMNS, Coded
from workbench.data.columnar import concat as concat_columns
from workbench.data.columnar import eligible as _columnar_eligible
from workbench.data.columnar import read_columns
from workbench.data.events_table import _drop_cross_format_fills, _drop_duplicates, _events_frame
from workbench.data.fastparse import _bulk_allocation, _fast_loads
from workbench.data.ledger import DOWN, UP
from workbench.data.schema import (_ANY_SLUG_RE, _MAX_ABS, _MAX_SLUG, _MIN_MS, _NUM_FIELDS, _WINDOW_SLACK_AFTER_MS,
                                   _WINDOW_SLACK_BEFORE_MS, EVENT_COLUMNS, MAX_FILE_BYTES, QUARANTINE_COLUMNS,
                                   IngestError, _Bad, _DupDict, _preview, _qrow, market_window)
from workbench.data.validate import _check_usdc, _outcome, _side, _validate_json_records
from workbench.data.walk import SourceFile, display_path, walk_sources


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
    """The file's bytes, or None after quarantining the file (unreadable, or larger than ``max_bytes``).

    One ``open``, ``fstat`` and ``read`` of the size it states (a buffered ``read(max_bytes + 1)`` reserves the
    whole limit per file and costs twice as much); a file that grows while it is read is read on up to the
    limit, so nothing above ``max_bytes`` is ever loaded.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                res.reject(f"file of {size:,} bytes exceeds the {max_bytes:,}-byte limit (not read)")
                return None
            chunks = [os.read(fd, size + 1)]
            total = len(chunks[0])
            while total > size and total <= max_bytes:  # it grew since fstat: read on, up to the limit
                more = os.read(fd, min(1 << 24, max_bytes + 1 - total))
                if not more:
                    break
                chunks.append(more)
                total += len(more)
        finally:
            os.close(fd)
    except OSError as exc:
        res.reject(f"cannot read the file: {exc.strerror or exc}")
        return None
    if total > max_bytes:
        res.reject(f"file of more than {max_bytes:,} bytes (it grew while read) exceeds the limit (not read)")
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
    return res if raw is None else _parse_json(res, raw, path)


def _parse_json(res: _FileResult, raw: bytes, path: Path) -> _FileResult:
    """The reference parse of one JSON file's bytes into ``res`` (its records, its window, or a reject)."""
    if not raw.strip():
        return res.reject("empty file")
    doc = _fast_loads(raw)
    try:  # bytes: json detects UTF-8 (with or without BOM), UTF-16 and UTF-32 itself
        if doc is None:
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


def _json_columns(results: list[_FileResult]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate the records of every parsed JSON file in one batch; return kept columns and quarantine rows."""
    results = [r for r in results if r.stat["status"] == "ok" and r.records]
    counts = np.array([len(r.records) for r in results], dtype=np.int64)
    recs: list[Any] = [rec for r in results for rec in r.records]
    meta, record = _file_meta(results, counts)
    lo = meta["market_start"].astype(np.int64) - _WINDOW_SLACK_BEFORE_MS if len(recs) else np.zeros(0, np.int64)
    hi = meta["market_end"].astype(np.int64) + _WINDOW_SLACK_AFTER_MS if len(recs) else np.zeros(0, np.int64)
    cols, reasons, defaulted = _validate_json_records(recs, lo, hi, meta["slug"])
    bad = np.flatnonzero(reasons != None)  # noqa: E711
    quarantine = [_qrow(meta["source_file"][i], "record", reasons[i], record=int(record[i]), raw=recs[i]) for i in bad]
    return _kept_columns(results, counts, meta, record, cols, reasons == None, defaulted), quarantine  # noqa: E711


def _file_meta(results: list[_FileResult], counts: np.ndarray, coded: bool = False
               ) -> tuple[dict[str, Any], np.ndarray]:
    """Per-record file columns (each file's value repeated on its records) and record numbers in the file.
    ``coded``: text columns as :class:`Coded` (each file's code repeated: no string per record) instead of
    object arrays (which the record path's messages index)."""
    meta: dict[str, Any] = {}
    for k in ("source_file", "wallet", "slug", "underlying", "market_start", "market_end"):
        if coded and k in TEXT_COLUMNS:
            per_file = Coded.of(np.array([r.stat[k] for r in results], dtype=object))
            meta[k] = Coded(np.repeat(per_file.codes, counts), per_file.uniques)
        else:
            meta[k] = np.repeat(np.array([r.stat[k] for r in results], dtype=object if k in TEXT_COLUMNS
                                         else np.int64), counts)
    counts = np.asarray(counts, dtype=np.int64)
    record = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return meta, record


def _kept_columns(results: list[_FileResult], counts: np.ndarray, meta: dict[str, np.ndarray], record: np.ndarray,
                  cols: dict[str, np.ndarray], ok: np.ndarray, defaulted: np.ndarray) -> dict[str, Any]:
    """The kept records' columns; sets each file's counters (records kept out of time order, fills whose
    missing outcome was taken as Up)."""
    every = bool(ok.all())  # the columnar path keeps every record it returns: no copy
    out = {k: v if every else v[ok] for k, v in cols.items()}
    out.update({k: v if every else v[ok] for k, v in meta.items()})
    out["record"] = record if every else record[ok]
    out["tx_hash"] = Coded(np.full(int(ok.sum()), -1, dtype=np.int32), np.zeros(0, dtype=object))  # none in seed JSON
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
    return out


def _read_json_files(todo: list[tuple[_FileResult, bytes, Path]], threads: bool
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Kept columns and record quarantine rows of JSON files already read into memory.

    Files the columnar path (:mod:`workbench.data.columnar`) accepts are parsed and validated by Arrow and
    numpy; every other file (anything doubtful, any record that would be quarantined) is parsed by
    :func:`_parse_json` and validated record by record, so its quarantine rows are the reference path's.
    """
    offer = [i for i, (_, raw, _) in enumerate(todo) if _columnar_eligible(raw)]
    fast = read_columns([todo[i][1] for i in offer], threads=threads) if offer else None
    taken = {offer[i] for i in fast.files} if fast is not None else set()
    slow = []
    for i, (res, raw, path) in enumerate(todo):
        if i not in taken:
            _parse_json(res, raw, path)
            slow.append(res)
    cols, quarantine = _json_columns(slow)
    if not taken:
        return cols, quarantine
    assert fast is not None
    done = [todo[offer[i]][0] for i in fast.files]
    for res, slug, start, end, under, n in zip(done, fast.slugs, fast.starts, fast.ends, fast.underlyings,
                                               fast.counts):
        res.stat.update(slug=slug, market_start=start, market_end=end, underlying=under, records=int(n))
    meta, record = _file_meta(done, fast.counts, coded=True)
    kept = _kept_columns(done, fast.counts, meta, record, fast.cols, np.ones(len(record), bool), fast.defaulted)
    if not len(cols["t"]):
        return kept, quarantine
    return {k: _concat(kept[k], cols[k]) for k in kept}, quarantine


def _rows_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Column arrays from canonical row dicts (numeric fields as floats, NaN where absent)."""
    out: dict[str, Any] = {}
    for c in EVENT_COLUMNS:
        vals = [r.get(c) for r in rows]
        out[c] = (np.array([np.nan if v is None else v for v in vals], dtype=np.float64) if c in _NUM_FIELDS
                  else np.array(vals, dtype=object))
    return out


def _concat(a: Any, b: Any) -> Any:
    """Concatenate two column arrays (or coded text columns), keeping a numeric dtype when both are numeric."""
    if len(b) == 0:
        return a
    if isinstance(a, Coded) or isinstance(b, Coded):
        return Coded.concat([x if isinstance(x, Coded) else Coded.of(x) for x in (a, b)])
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
        return np.concatenate([a, b])
    if len(b) == 0:
        return a
    return np.concatenate([a.astype(object), b.astype(object)])


@dataclass
class _Part:
    """What one worker returns for a share of the files: per-file results (JSON records dropped once
    validated), the kept JSON records as columns, and their record-level quarantine rows."""

    json_results: list[_FileResult]
    csv_results: list[_FileResult]
    other: list[_FileResult]
    jcols: dict[str, Any]
    jq: list[dict[str, Any]]


def read_part(files: Sequence[SourceFile], max_file_bytes: int = MAX_FILE_BYTES, progress: bool | None = False,
              threads: bool = True) -> _Part:
    """Read and validate a share of the files (the unit of work of a process pool or a Dask worker).

    Every record check is per record and every counter per file, so validating the files in shares and
    concatenating the shares in order gives exactly the single batch's result. ``threads``: let Arrow parse
    on every core (``False`` in a pool or Dask worker, which has a core of its own).
    """
    with _bulk_allocation():
        json_results, csv_results, other = [], [], []
        todo: list[tuple[_FileResult, bytes, Path]] = []
        shown: dict[str, str] = {}  # each wallet folder's name as text, once
        for f in config.progress(files, "files", enabled=progress):
            suffix = f.path.suffix.lower()
            wallet = shown.get(f.wallet) or shown.setdefault(f.wallet, display_path(f.wallet))
            if suffix == ".json":
                res = _FileResult(_file_stat(f.name, wallet.lower() if wallet.startswith("0x") else wallet, "json"))
                json_results.append(res)
                raw = _read_bytes(f.path, res, max_file_bytes)
                if raw is not None:
                    todo.append((res, raw, f.path))
            elif suffix == ".csv":
                csv_results.append(read_activity_csv(f.path, wallet, f.name, max_file_bytes))
            else:
                other.append(_FileResult(_file_stat(f.name, wallet, suffix)).reject(
                    f"unsupported file type {display_path(suffix)!r}"))
        jcols, jq = _read_json_files(todo, threads)
        del todo
        jcols = {k: Coded.of(v) if k in TEXT_COLUMNS and not isinstance(v, Coded) else v for k, v in jcols.items()}
        for r in json_results:
            r.records = []
        return _Part(json_results, csv_results, other, jcols, jq)


def _merge_parts(parts: Sequence[_Part]) -> tuple[list[_FileResult], list[_FileResult], list[_FileResult],
                                                  dict[str, Any], list[dict[str, Any]]]:
    """The shares concatenated in file order (as if read in one batch)."""
    filled = [p for p in parts if len(p.jcols["t"])] or list(parts[:1])  # an empty share's dtypes may differ
    jcols = {k: concat_columns([p.jcols[k] for p in filled]) for k in filled[0].jcols}
    return ([r for p in parts for r in p.json_results], [r for p in parts for r in p.csv_results],
            [r for p in parts for r in p.other], jcols, [q for p in parts for q in p.jq])


def read_events(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *, progress: bool | None = None,
                max_file_bytes: int = MAX_FILE_BYTES, workers: int | None = None,
                scheduler: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read every wallet file under ``paths``.

    Parameters
    ----------
    paths
        Files or folders: one wallet's folder, or a bucket root holding many ``<address>/`` folders.
    workers
        Processes that read and validate shares of the files (default: one per CPU core when there are at
        least :data:`workbench.data.parallel.MIN_FILES_PER_WORKER` files per worker, else this process).
        ``1`` reads in this process. The result does not depend on it.
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``): the shares are read by its workers, which must see
        the same paths. Overrides ``workers``.

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
    from workbench.data.parallel import read_parts

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files, not_read = walk_sources(paths)
    if not files:
        why = "; ".join(f"{q['source_file']}: {q['reason']}" for q in not_read[:3])
        raise IngestError(f"no data files under {[display_path(p) for p in paths]}"
                          + (f" ({len(not_read)} path(s) not read: {why})" if not_read else ""))
    parts = read_parts(files, max_file_bytes=max_file_bytes, workers=workers, scheduler=scheduler,
                       progress=progress)
    with _bulk_allocation():
        return _assemble(not_read, *_merge_parts(parts))


def _assemble(not_read: list[dict[str, Any]], json_results: list[_FileResult], csv_results: list[_FileResult],
              other: list[_FileResult], jcols: dict[str, Any], jq: list[dict[str, Any]]
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    results = json_results + csv_results + other
    quarantine = not_read + [q for r in results for q in r.quarantine]
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
