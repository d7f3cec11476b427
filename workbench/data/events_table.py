"""The events table of a read: typed columns, one time order, exact repeats and fills given in both formats
quarantined (the last steps of :func:`workbench.data.read.read_events`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from workbench.data.columnar import TEXT_COLUMNS, Coded, _int_column, _text_column
from workbench.data.schema import _NUM_FIELDS, _TYPE_ORDER, EVENT_COLUMNS, _qrow

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


def _string_rank(col: Coded) -> np.ndarray:
    """Each row's rank of its value in string (code point) order, None last, as pandas sorts a string column."""
    order = sorted(range(len(col.uniques)), key=col.uniques.__getitem__)
    rank = np.empty(len(col.uniques) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = len(order)  # code -1 (None) picks the last entry
    return rank[col.codes]


def _coded_text_column(col: Coded, perm: np.ndarray) -> pd.Series:
    """A text column's rows in the order ``perm``, as pandas' string dtype."""
    return _text_column(col[perm])


def _permuted_int_column(values: Any, perm: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """An integer column's rows in the order ``perm``, as nullable Int64."""
    return _int_column(np.asarray(values)[perm])


def _run_all(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each job's result, the jobs run on :func:`pyarrow.cpu_count` threads (in this thread when that is 1)."""
    n = min(pa.cpu_count(), len(jobs))
    if n <= 1:
        return {k: f() for k, f in jobs.items()}
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = {k: pool.submit(f) for k, f in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def _events_frame(cols: dict[str, Any]) -> pd.DataFrame:
    """Typed events table from canonical column arrays, sorted by wallet, time, record type (a bar before the
    quotes and fills of its time, a resolution last), source file and record.

    The order is found on the codes and numbers (``np.lexsort``) and applied to the columns before the frame is
    built, so every column is copied once; the key is unique (a file's record numbers are), so the order does
    not depend on the sort's stability.
    """
    text = {c: cols[c] if isinstance(cols[c], Coded) else Coded.of(cols[c]) for c in TEXT_COLUMNS}
    kind = text["type"]
    type_order = np.array([_TYPE_ORDER.get(v, 0) for v in kind.uniques] + [0], dtype=np.int64)[kind.codes]
    t = np.asarray(cols["t"], dtype=np.int64)
    record = np.asarray(cols["record"], dtype=np.int64)
    perm = np.lexsort((record, _string_rank(text["source_file"]), type_order, t, _string_rank(text["wallet"])))
    # the float fields are written, in order, into one (fields, rows) block that becomes the frame's float block
    # as it is (a frame built from a dict of columns copies them all into such a block)
    block = np.empty((len(_NUM_FIELDS), len(perm)), dtype=np.float64)
    t = t[perm]
    text_names = ("wallet", "slug", "underlying", "type", "outcome", "side", "tx_hash", "source_file")
    jobs: dict[str, Callable[[], Any]] = {
        **{c: partial(np.take, np.asarray(cols[c], dtype=np.float64), perm, out=block[i])
           for i, c in enumerate(_NUM_FIELDS)},
        "ts": partial(pd.to_datetime, t, unit="ms", utc=True),
        **{c: partial(_coded_text_column, text[c], perm) for c in text_names},
        **{c: partial(_permuted_int_column, cols[c], perm) for c in ("market_start", "market_end")}}
    # numpy's take and Arrow's cast release the GIL: the columns are built on Arrow's threads (pa.cpu_count(),
    # one where Arrow is held to one)
    built = _run_all(jobs)
    df = pd.DataFrame(block.T, columns=list(_NUM_FIELDS), copy=False)
    head = {"t": t, "ts": built["ts"], **{c: built[c] for c in text_names},
            "market_start": built["market_start"], "market_end": built["market_end"]}
    for i, (c, v) in enumerate(head.items()):
        df.insert(i, c, v)
    df["record"] = record[perm]
    return df


def _drop_duplicates(events: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Quarantine exact repeats of a record (same wallet, market, time and every field), keeping the
    earliest (``events`` sorted as :func:`_events_frame` sorts). Data-API rows also compare the transaction hash,
    so distinct fills of equal size survive."""
    key = [c for c in EVENT_COLUMNS if c not in ("source_file", "record")]
    # exact repeats share wallet, market and time; the frame is sorted by wallet and time, so they sit in a run
    # of equal times: only rows with a neighbour of the same time are compared, every field only within the
    # (rare) collisions of wallet, market and time among them
    t = events["t"].to_numpy()
    same_t = t[1:] == t[:-1]
    near = np.r_[same_t, False] | np.r_[False, same_t]
    if not near.any():
        return events, []
    collide = np.zeros(len(events), dtype=bool)
    collide[near] = events.loc[near, ["t", "slug", "wallet"]].duplicated(keep=False).to_numpy()
    if not collide.any():
        return events, []
    dup = np.zeros(len(events), dtype=bool)
    dup[np.flatnonzero(collide)] = events[collide].duplicated(subset=key, keep="first").to_numpy()
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
