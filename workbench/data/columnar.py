"""The columnar path of JSON ingestion: many clean market files parsed by Arrow's C++ JSON reader straight into
columns, validated with numpy masks, no Python object per record.

The per-record Python path (``orjson`` or the stdlib parser, then :func:`workbench.data.validate.
_validate_json_records`) spends most of its time building a dict and a float object per field and reading
them back. Arrow's reader parses newline-delimited documents into typed columns in C++ (threaded across
blocks), so a file that is one JSON object on one line is one row whose ``prices`` list becomes a list of
structs. What no library does is the *proof* that a file read this way gives exactly what the reference path
gives; that is written here:

* A file is offered to Arrow only when it is ASCII (no encoding question), holds no backslash (no escapes: no
  lone surrogates, no ``\\"`` inside a string), no line break (one file, one row), and starts with ``{``.
* Arrow's reader is strict where the stdlib's is: repeated keys, trailing commas, leading zeros, control
  characters in strings, a number where an object is expected all raise, and the batch is split in halves
  (at most six times) until the piece holding the offending file is small (its files then take the reference
  path). Numbers are parsed to the correctly
  rounded double, as ``float()`` does (a test checks decimal strings and integers beyond 64 bits); an integer
  beyond the double range becomes infinite, fails the finiteness check and sends its file to the reference
  path, which keeps the integer and words the quarantine message.
* After parsing, a file is accepted only when its row holds a non-empty ``slug`` string and a non-empty
  ``prices`` list of objects, its count of ``":`` byte pairs equals the number of non-null fields parsed (so
  there is no unknown key, no explicit null, no ``":`` inside a string: every key token is one parsed value),
  its market window is known, and *every* record passes the checks of the reference validator. A file with
  any doubtful record is read again by the reference path, so quarantine rows and messages are the
  reference's; the columnar path only ever produces kept records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from workbench.data.ledger import DOWN, UP
from workbench.data.schema import (_MAX_ABS, _MAX_MS, _MIN_MS, _NUM_FIELDS, _WINDOW_SLACK_AFTER_MS,
                                   _WINDOW_SLACK_BEFORE_MS, market_window)
from workbench.data.validate import CARRIED_BY

_TEXT = ("type", "outcome", "side")
_EXTRA = ("start",)  # a bar's start time: carried by the simulator's files, not read (counted as a key)
_FLOATS = ("t",) + _NUM_FIELDS + _EXTRA
_EVENT = pa.struct([(k, pa.string()) for k in _TEXT] + [(k, pa.float64()) for k in _FLOATS])
_SCHEMA = pa.schema([("slug", pa.string()), ("prices", pa.list_(_EVENT))])
_PARSE = pj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")


def eligible(raw: bytes) -> bool:
    """Whether a file's bytes may be offered to the columnar reader (see the module docstring)."""
    body = raw.rstrip()
    return body[:1] == b"{" and body.isascii() and b"\\" not in body and b"\n" not in body and b"\r" not in body


def _read_table(raws: Sequence[bytes], threads: bool) -> pa.Table | None:
    """One Arrow table with a row per document, or None when Arrow refuses the batch."""
    longest = max(len(r) for r in raws)
    block = max(1 << 20, 1 << int(longest + 2).bit_length())  # a document never straddles two blocks
    try:
        table = pj.read_json(pa.BufferReader(b"\n".join(r.rstrip() for r in raws)),
                             read_options=pj.ReadOptions(use_threads=threads, block_size=block),
                             parse_options=_PARSE)
    except (pa.ArrowException, ValueError):  # any refusal or failure of the reader: the reference path
        return None
    return table if table.num_rows == len(raws) else None


_MAX_SPLITS = 6  # a refused batch is halved at most this often: at most 64 pieces, parse work at most 7x


def _tables(raws: Sequence[bytes], first: int, threads: bool, out: list[tuple[int, int, pa.Table]],
            depth: int = 0) -> None:
    """Parse ``raws`` (input positions ``first``...). A refused batch is halved, up to :data:`_MAX_SPLITS`
    times, so the files around a refused one are still read here; a piece still refused is left out (its files
    take the reference path), which bounds the cost of a bucket full of files Arrow refuses."""
    if not raws:
        return
    table = _read_table(raws, threads)
    if table is not None:
        out.append((first, len(raws), table))
    elif len(raws) > 1 and depth < _MAX_SPLITS:
        mid = len(raws) // 2
        _tables(raws[:mid], first, threads, out, depth + 1)
        _tables(raws[mid:], first + mid, threads, out, depth + 1)


def _floats(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values (NaN where null) and presence of a float64 column."""
    values = arr.to_numpy(zero_copy_only=False)
    present = np.ones(len(arr), bool) if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    return values.astype(np.float64, copy=False), present


class _Text:
    """A text column as codes into its distinct values (the last code, -1, is null)."""

    def __init__(self, arr: pa.Array) -> None:
        enc = arr.dictionary_encode()
        self.codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        self.values: list[str | None] = enc.dictionary.to_pylist() + [None]

    def coded(self, canonical: Sequence[str] | None = None) -> "Coded":
        """The column as :class:`Coded`; with ``canonical``, each value folded (blanks stripped, lower case)
        onto the canonical value it names (code -1 when it names none)."""
        if canonical is None:
            return Coded(self.codes, np.array(self.values[:-1], dtype=object))
        index = {c.lower(): i for i, c in enumerate(canonical)}
        remap = np.array([index.get(v.strip().lower(), -1) for v in self.values[:-1]] + [-1], dtype=np.int32)
        return Coded(remap[self.codes], np.array(canonical, dtype=object))

    def missing(self) -> np.ndarray:
        return self.codes == -1

    def isin(self, names: Sequence[str]) -> np.ndarray:
        """Whether each value is one of ``names`` (exactly): a lookup of each code in a table of the distinct
        values (its last entry, picked by code -1, is null: never in ``names``)."""
        return np.array([v is not None and v in names for v in self.values], dtype=bool)[self.codes]


@dataclass
class Columns:
    """The accepted files of a batch and their records as columns.

    Attributes
    ----------
    files : ndarray of int, shape (n_files,)
        Positions (in the input list) of the accepted files, increasing.
    slugs, starts, ends, underlyings : list, length n_files
        Each accepted file's slug and market window (UTC ms) and underlying.
    counts : ndarray of int, shape (n_files,)
        Records per accepted file.
    cols : dict of ndarray, shape (n_records,)
        ``t`` (int64 ms) and the canonical columns of :func:`workbench.data.validate._validate_json_records`.
    defaulted : ndarray of bool, shape (n_records,)
        Fills and quotes whose missing outcome was taken as Up.
    """

    files: np.ndarray
    slugs: list[str]
    starts: list[int]
    ends: list[int]
    underlyings: list[str]
    counts: np.ndarray
    cols: dict[str, np.ndarray]
    defaulted: np.ndarray


def _in_unit(x: np.ndarray) -> np.ndarray:
    return (x >= 0) & (x <= 1)


def _validate(f: dict[str, np.ndarray], p: dict[str, np.ndarray], text: dict[str, _Text], lo: np.ndarray,
              hi: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Every check of the reference validator as one mask (True: the record is kept), and the canonical
    columns. A field is read only for the record types that carry it, as in the reference."""
    kind = text["type"].coded()
    n = len(kind)
    fill = text["type"].isin(("trade", "last_trade_price"))
    quote = text["type"].isin(("price_change",))
    bar = text["type"].isin(("bar",))
    resolution = text["type"].isin(("resolution",))
    ok = fill | quote | bar | resolution
    t = f["t"]
    with np.errstate(invalid="ignore"):
        ok &= p["t"] & np.isfinite(t) & (np.abs(t) >= _MIN_MS) & (np.abs(t) <= _MAX_MS)
    t_ms = np.where(ok, np.round(np.where(ok, t, 0.0)), 0).astype(np.int64)
    ok &= (t_ms >= lo) & (t_ms <= hi)
    carried = {name: text["type"].isin(CARRIED_BY[name]) for name in _NUM_FIELDS}  # the reference's table
    required = {"price": fill, "size": fill, "bid": quote, "ask": quote, "open": bar, "high": bar, "low": bar,
                "close": bar}
    cols: dict[str, np.ndarray] = {"t": t_ms, "type": kind}
    with np.errstate(invalid="ignore"):
        for name in _NUM_FIELDS:
            x, present = f[name], p[name]
            read = carried[name]
            ok &= ~(read & present) | (np.abs(x) <= _MAX_ABS)  # NaN and infinities compare False
            ok &= ~required.get(name, np.zeros(n, bool)) | present
            cols[name] = np.where(read & present, x, np.nan)
        price, size, usdc = cols["price"], cols["size"], cols["usdc"]
        ok &= ~fill | (_in_unit(price) & (size > 0))
        expected = price * size
        given = fill & p["usdc"]
        ok &= ~given | ((usdc >= 0) & (np.abs(usdc - expected) <= np.maximum(1e-4, 0.005 * expected)))
        cols["usdc"] = np.where(fill & ~p["usdc"], expected, usdc)
        ok &= ~quote | (_in_unit(cols["bid"]) & _in_unit(cols["ask"]) & ~(cols["bid"] > cols["ask"]))
        ok &= ~(quote & p["price"]) | _in_unit(price)
        rows = np.flatnonzero(bar)  # the bar checks on the bars only
        o, h, lw, c = (cols[k][rows] for k in ("open", "high", "low", "close"))
        ok[rows] &= ((np.minimum(np.minimum(o, h), np.minimum(lw, c)) > 0) & (lw <= np.minimum(o, c))
                     & (np.maximum(o, c) <= h) & ~(cols["volume"][rows] < 0))
    outcome = text["outcome"].coded((UP, DOWN)).codes
    side = text["side"].coded(("BUY", "SELL"))
    o_missing = text["outcome"].missing()
    ok &= ~(fill | quote | resolution) | o_missing | (outcome >= 0)
    ok &= ~resolution | ~o_missing
    ok &= ~fill | (side.codes >= 0)
    defaulted = (fill | quote) & o_missing
    cols["outcome"] = Coded(np.where(fill | quote | resolution, np.where(defaulted, 0, outcome), -1),
                            np.array([UP, DOWN], dtype=object))
    cols["side"] = Coded(np.where(fill, side.codes, -1), side.uniques)
    return ok, cols, defaulted


def read_columns(raws: Sequence[bytes], *, threads: bool = True) -> Columns:
    """Parse and validate the given files' bytes; the files the columnar path accepts, as columns.

    Parameters
    ----------
    raws : sequence of bytes
        Whole files, each expected to be one seed-format JSON object (``{"slug": ..., "prices": [...]}``).
        Pass only files for which :func:`eligible` holds.
    threads
        Let Arrow parse blocks on all cores (one process); ``False`` inside a pool or Dask worker.

    Returns
    -------
    Columns
        Files not accepted (refused by Arrow, a doubtful key count, an unknown window, any record the
        reference validator would quarantine) are simply absent: the caller reads them by the reference path.
    """
    parsed: list[tuple[int, int, pa.Table]] = []
    _tables(list(raws), 0, threads, parsed)
    keep_files: list[np.ndarray] = []
    slugs: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    unders: list[str] = []
    counts_out: list[np.ndarray] = []
    parts: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
    for first, n_docs, table in parsed:
        prices = table.column("prices").combine_chunks()
        slug_list = table.column("slug").to_pylist()
        lengths = prices.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        events = prices.flatten()
        f, p, text = {}, {}, {}
        for name, arr in zip(_EVENT.names, events.flatten()):
            if name in _TEXT:
                text[name] = _Text(arr)
            else:
                f[name], p[name] = _floats(arr)
        n_fields = sum(p[k].astype(np.int64) for k in _FLOATS) + sum(~text[k].missing() for k in _TEXT)
        record_ok = (events.is_valid().to_numpy(zero_copy_only=False) if events.null_count
                     else np.ones(len(events), bool))  # a null record is not an object: reference path
        # per document: a slug, records that are all objects, the key count, a known window
        doc_of = np.repeat(np.arange(n_docs), lengths)
        fields_per_doc = np.bincount(doc_of, weights=n_fields, minlength=n_docs).astype(np.int64)
        null_records = np.bincount(doc_of, weights=~record_ok, minlength=n_docs)
        doc_ok = np.zeros(n_docs, bool)
        lo_doc = np.zeros(n_docs, np.int64)
        hi_doc = np.zeros(n_docs, np.int64)
        windows: list[tuple[int, int, str] | None] = [None] * n_docs
        for d in np.flatnonzero((lengths > 0) & (null_records == 0)).tolist():
            slug = slug_list[d]
            if not slug or raws[first + d].count(b'":') != 2 + int(fields_per_doc[d]):
                continue
            start, end, underlying = market_window(slug)
            if start is None:
                continue
            windows[d] = (start, end, underlying)
            lo_doc[d], hi_doc[d] = start - _WINDOW_SLACK_BEFORE_MS, end + _WINDOW_SLACK_AFTER_MS
            doc_ok[d] = True
        lo, hi = lo_doc[doc_of], hi_doc[doc_of]
        ok, cols, defaulted = _validate(f, p, text, lo, hi)
        ok &= doc_ok[doc_of]
        bad_docs = np.unique(doc_of[~ok])
        doc_ok[bad_docs] = False
        take = doc_ok[doc_of]
        accepted = np.flatnonzero(doc_ok)
        keep_files.append(first + accepted)
        for d in accepted:
            s, e, u = windows[d]  # type: ignore[misc]
            slugs.append(slug_list[d])
            starts.append(s)
            ends.append(e)
            unders.append(u)
        counts_out.append(lengths[accepted])
        every = bool(take.all())
        parts.append(({k: v if every else v[take] for k, v in cols.items()}, defaulted if every else defaulted[take]))
    if not parts:
        empty = {"t": np.zeros(0, np.int64), **{k: np.zeros(0) for k in _NUM_FIELDS},
                 **{k: Coded(np.zeros(0, np.int32), np.zeros(0, object)) for k in _TEXT}}
        parts.append((empty, np.zeros(0, bool)))
    # the halves of a refused batch are parsed first half first: the accepted files stay in input order
    return Columns(np.concatenate(keep_files) if keep_files else np.zeros(0, np.int64), slugs, starts, ends, unders,
                   np.concatenate(counts_out) if counts_out else np.zeros(0, np.int64),
                   {k: concat([c[k] for c, _ in parts]) for k in parts[0][0]},
                   concat([d for _, d in parts]))


# ------------------------------------------------------------------------------------------------
# Typed columns of the events frame (both paths)
# ------------------------------------------------------------------------------------------------
TEXT_COLUMNS = ("wallet", "slug", "underlying", "type", "outcome", "side", "tx_hash", "source_file")


class Coded:
    """A text column as int32 codes into its distinct values (code -1: None).

    Columns repeat few values (a file's slug and name on each of its records), so they travel between
    processes, are concatenated and become pandas columns as codes: a string is handled once per distinct
    value, not once per record.
    """

    def __init__(self, codes: np.ndarray, uniques: np.ndarray) -> None:
        self.codes, self.uniques = codes.astype(np.int32, copy=False), np.asarray(uniques, dtype=object)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: Any) -> "Coded":
        """The rows selected by a boolean mask or integer index."""
        return Coded(self.codes[index], self.uniques)

    @classmethod
    def of(cls, values: np.ndarray) -> "Coded":
        """Factorise an object array of str/None. Values that come in runs are factorised one per run (a
        comparison of neighbours costs a tenth of a hash)."""
        values = np.asarray(values, dtype=object)
        heads = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, np.int64)
        if len(heads) * 4 < len(values):
            head_codes, uniques = pd.factorize(values[heads], use_na_sentinel=True)
            return cls(np.repeat(head_codes, np.diff(np.r_[heads, len(values)])), uniques)
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return cls(codes, uniques)

    @classmethod
    def concat(cls, parts: Sequence["Coded"]) -> "Coded":
        """The parts one after another, with one set of distinct values."""
        if len(parts) == 1:
            return parts[0]
        remap, uniques = pd.factorize(np.concatenate([p.uniques for p in parts] + [np.zeros(0, object)]),
                                      use_na_sentinel=True)
        offsets = np.cumsum([0] + [len(p.uniques) for p in parts])
        remap = remap.astype(np.int32)
        codes = np.empty(sum(len(p) for p in parts), dtype=np.int32)
        at = 0
        for p, o in zip(parts, offsets):
            # one lookup per part, straight into the result: the part's codes index its slice of the new codes,
            # and code -1 (None) picks the appended -1
            np.take(np.r_[remap[o:o + len(p.uniques)], np.int32(-1)], p.codes, out=codes[at:at + len(p)])
            at += len(p)
        return cls(codes, uniques)

    def expand(self) -> np.ndarray:
        """The object array of str/None."""
        return np.r_[self.uniques, np.array([None], dtype=object)][self.codes]


def concat(parts: Sequence["Coded | np.ndarray"]) -> "Coded | np.ndarray":
    """Columns of the same kind one after another: coded text columns by :meth:`Coded.concat`, arrays by numpy
    (one part is returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    return Coded.concat(parts) if isinstance(parts[0], Coded) else np.concatenate(parts)


def _text_column(values: "Coded | np.ndarray") -> pd.Series:
    """pandas' string dtype from a coded column or an object array of str/None (None becomes missing).

    The string column is built by Arrow from the codes: the strings are converted once per distinct value
    instead of once per record (several times faster than ``Series(values, dtype="str")``).
    """
    col = values if isinstance(values, Coded) else Coded.of(values)
    dictionary = pa.array(list(col.uniques), type=pa.large_string())
    indices = pa.array(col.codes, mask=col.codes < 0)
    arr = pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.large_string())
    return arr.to_pandas(types_mapper={pa.large_string(): pd.StringDtype(na_value=np.nan)}.get)


def _int_column(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Nullable Int64 from an integer array, or from an object array with None (the slower general path)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return pd.array(values.astype(np.int64), dtype="Int64")
    try:
        return pd.array(values.astype(np.int64), dtype="Int64")
    except (TypeError, ValueError):
        return pd.array(values, dtype="Int64")
