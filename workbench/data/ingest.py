"""Ingestion: wallet files -> clean events, trades, position state and bars, with no look-ahead.

Two input formats are read:

* **seed-format JSON** (one file per market, the format of ``workbench.data.simulate`` and of the private
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
``events_by/``  the events again as a Hive-partitioned Parquet dataset, ``underlying=<asset>/wallet=<address>/
                day=<YYYY-MM-DD>/`` (pandas, Dask and DuckDB read it and prune partitions on filters).

Nothing is dropped silently: a record is either in ``events`` or in ``quarantine``, and
:meth:`WalletData.check` raises :class:`ReconciliationError` when the counts do not add up.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workbench import atomic
from workbench.data.ledger import UP
from workbench.data.read import read_events
from workbench.data.schema import COMPLETION_RECORD, INGEST_FORMAT, IngestError, ReconciliationError, normalise_assets
from workbench.data.tables import build_bars, build_positions, build_trades, infer_resolutions, up_marks


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
            tables[PARTITIONED] = write_partitioned(self.events, tmp / PARTITIONED)
            meta = {"complete": True, "format": INGEST_FORMAT, "bar_interval": self.bar_interval,
                    "reconciliation": rec, "tables": tables}
            (tmp / COMPLETION_RECORD).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

        atomic.replace_folder(out, write_all)
        written = {name: out / f"{name}.parquet" for name in self.TABLES}
        written["meta"] = out / COMPLETION_RECORD
        written[PARTITIONED] = out / PARTITIONED
        return written

    def select(self, assets: Sequence[str] | None) -> "WalletData":
        """The tables restricted to the markets of ``assets`` (underlyings, e.g. a notebook's ``ASSETS``).

        ``None`` returns ``self``. Files (and their quarantine rows) of other underlyings leave with their
        markets, so the counts still reconcile for what is kept; a quarantined file whose market is unknown
        is kept. A requested asset without a single market raises ``ValueError``.
        """
        if assets is None:
            return self
        wanted = set(_require_assets(self.events, assets))
        slugs = set(self.events.loc[self.events["underlying"].isin(wanted), "slug"].unique())
        other = set(self.events["slug"].unique()) - slugs
        files = self.files[~self.files["slug"].isin(other)]
        keep_src = set(files["source_file"])
        return WalletData(
            events=self.events[self.events["underlying"].isin(wanted)].reset_index(drop=True),
            trades=self.trades[self.trades["underlying"].isin(wanted)].reset_index(drop=True),
            positions=self.positions[self.positions["slug"].isin(slugs)].reset_index(drop=True),
            bars=self.bars[self.bars["underlying"].isin(wanted)].reset_index(drop=True),
            quarantine=self.quarantine[self.quarantine["source_file"].isin(keep_src)
                                       | (self.quarantine["level"] == "path")].reset_index(drop=True),
            files=files.reset_index(drop=True),
            resolutions=self.resolutions[self.resolutions["slug"].isin(slugs)].reset_index(drop=True),
            bar_interval=self.bar_interval)

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
        part = meta["tables"].get(PARTITIONED)
        if verify and part is not None and len(list((folder / PARTITIONED).rglob("*.parquet"))) != part.get("files"):
            raise IngestError(f"{folder / PARTITIONED} does not hold the {part.get('files')} files the completion "
                              "record lists")
        return cls(**tables, bar_interval=meta.get("bar_interval", "15min"))


PARTITIONED = "events_by"
PARTITION_KEYS = ("underlying", "wallet", "day")


def write_partitioned(events: pd.DataFrame, folder: Path) -> dict[str, Any]:
    """Write ``events`` as a Hive-partitioned Parquet dataset by asset, wallet and UTC day.

    Partition values are URI-encoded in the folder names (pyarrow's ``segment_encoding="uri"``), so a wallet
    name holding ``/`` or ``..`` stays one folder level inside ``folder``. Returns the row count and the files.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    frame = events.assign(day=events["ts"].dt.strftime("%Y-%m-%d"),
                          underlying=events["underlying"].fillna("unknown"),
                          row=range(len(events)))  # the events table's order, restored on reading
    ds.write_dataset(pa.Table.from_pandas(frame, preserve_index=False), folder, format="parquet",
                     partitioning=ds.partitioning(pa.schema([(k, pa.string()) for k in PARTITION_KEYS]),
                                                  flavor="hive"),
                     existing_data_behavior="error", basename_template="part-{i}.parquet")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.parquet"))
    return {"rows": len(frame), "files": len(files)}


def read_partitioned(folder: str | os.PathLike[str], **filters: str) -> pd.DataFrame:
    """Events from a :func:`write_partitioned` dataset, only the partitions matching ``filters``
    (``underlying="btc"``, ``wallet="0x..."``, ``day="2026-01-05"``), in the events' order (wallet, time)."""
    unknown = set(filters) - set(PARTITION_KEYS)
    if unknown:
        raise IngestError(f"unknown partition key(s) {sorted(unknown)}; expected {list(PARTITION_KEYS)}")
    flt = [(k, "==", str(v)) for k, v in filters.items()] or None
    df = pd.read_parquet(Path(folder), filters=flt)
    df = df.sort_values("row", kind="stable").reset_index(drop=True)
    return df.drop(columns=["day", "row"])


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
                *, progress: bool | None = None, workers: int | None = None, scheduler: Any = None) -> WalletData:
    """Ingest one or many wallets' files (folders or files; seed-format JSON or Data-API CSV).

    Parameters
    ----------
    paths
        Files or folders (searched recursively). A JSON file's wallet is its folder's name; a CSV row's
        wallet is its ``proxyWallet``.
    bar_interval
        Pandas offset string for :func:`build_bars` (default the design's 15 minutes).
    workers, scheduler
        Processes reading the files, or a Dask scheduler address (see :func:`read_events`).

    Returns
    -------
    WalletData
        ``.events, .trades, .positions, .bars, .quarantine, .files, .resolutions``.
    """
    events, quarantine, files = read_events(paths, progress=progress, workers=workers, scheduler=scheduler)
    trades, positions, bars, resolutions = derive_tables(events, bar_interval)
    return WalletData(events, trades, positions, bars, quarantine, files, resolutions, bar_interval)


# ------------------------------------------------------------------------------------------------
# Helpers for notebooks and reports
# ------------------------------------------------------------------------------------------------
def read_or_load_events(path: str | os.PathLike[str], progress: bool | None = None) -> pd.DataFrame:
    """The events of ``path``: a completed ingestion folder (notebook 01's, with ``ingest.json``) is read, anything
    else (a wallet folder, a ``merged_trades`` folder, files) is ingested."""
    p = Path(path)
    if (p / COMPLETION_RECORD).is_file():
        return WalletData.read(p).events
    return load_wallet(p, progress=progress).events


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


def _require_assets(events: pd.DataFrame, assets: Sequence[str]) -> tuple[str, ...]:
    """``assets`` normalised (:func:`normalise_assets`); ``ValueError`` naming any without a market in ``events``."""
    wanted = normalise_assets(assets)
    have = set(events["underlying"].dropna().unique())
    missing = [a for a in wanted if a not in have]
    if missing:
        raise ValueError(f"asset(s) {missing} have no market in the data; found {sorted(have)}")
    return wanted


def asset_summary(data: WalletData, assets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per underlying: markets, events, fills, volume and P&L of the wallet(s) in ``data``.

    ``assets`` (e.g. a notebook's ``ASSETS``) must all be present: a requested asset without a single market
    raises ``ValueError`` naming it and the assets found, rather than giving an empty study downstream.
    """
    ev, tr = data.events, data.trades
    slug_asset = ev.drop_duplicates("slug").set_index("slug")["underlying"]
    last = data.positions.groupby("slug").last() if len(data.positions) else pd.DataFrame(columns=["total_pnl"])
    pnl = last["total_pnl"].groupby(slug_asset.reindex(last.index)).sum() if len(last) else pd.Series(dtype=float)
    g = ev.groupby("underlying")
    out = pd.DataFrame({
        "markets": g["slug"].nunique(), "events": g.size(),
        "first": pd.to_datetime(g["t"].min(), unit="ms", utc=True),
        "last": pd.to_datetime(g["t"].max(), unit="ms", utc=True),
        "fills": tr.groupby("underlying").size(), "markets_traded": tr.groupby("underlying")["slug"].nunique(),
        "volume_usdc": tr.groupby("underlying")["usdc"].sum(), "total_pnl": pnl,
    }).fillna({"fills": 0, "markets_traded": 0, "volume_usdc": 0.0, "total_pnl": 0.0})
    out.index.name = "underlying"
    _require_assets(ev, assets or [])
    return out.astype({"fills": int, "markets_traded": int})


def busiest_markets(trades: pd.DataFrame, n: int = 2) -> list[str]:
    """Slugs of the ``n`` markets with the most fills (ties broken by time)."""
    counts = trades.groupby("slug").size().sort_values(ascending=False, kind="stable")
    return counts.index[:n].tolist()


def rebar(data: WalletData, interval: str, offset: str = "0s") -> pd.DataFrame:
    """Bars of already-ingested data at another ``interval``/``offset`` (same rules as :func:`build_bars`)."""
    if interval == data.bar_interval and pd.Timedelta(offset) == pd.Timedelta(0) and len(data.bars):
        return data.bars
    return build_bars(data.events, data.positions, up_marks(data.events), interval, offset)


def quarantine_view(data: WalletData, n: int = 20) -> Any:
    """What a notebook shows of the quarantine: its first ``n`` rows, or, when nothing was quarantined, one
    sentence with the counts (an empty table would show a bare header)."""
    if len(data.quarantine):
        return data.quarantine.head(n)
    from IPython.display import Markdown

    rec = data.reconciliation()
    return Markdown(f"**Nothing quarantined**: {rec['files_read']:,} files and {rec['records_read']:,} records read, all "
                    f"{rec['records_kept']:,} kept, no path left unread.")
