"""Stage 1, ingestion: wallet files (seed JSON, Data-API CSV) -> validated events, quarantine, trades, positions and
bars with no look-ahead; the ledger, the market simulator, S3 fetch and the shipped example data.
"""

from __future__ import annotations

from workbench.data.ingest import (WalletData, busiest_markets, derive_tables, find_wallet_dir, load_wallet,
                                   preview_file, rebar, wallet_summary)
from workbench.data.ledger import DOWN, UP, LedgerError, MarketPosition
from workbench.data.read import decode_text, read_activity_csv, read_events, read_json_file
from workbench.data.schema import (COMPLETION_RECORD, DOC_SUFFIXES, EVENT_COLUMNS, EVENT_TYPES, INGEST_FORMAT,
                                   MAX_FILE_BYTES, MS_PER_DAY, QUARANTINE_COLUMNS, WALLET_ACTIVITY, IngestError,
                                   ReconciliationError, market_window)
from workbench.data.tables import (BAR_COLUMNS, POSITION_COLUMNS, build_bars, build_positions, build_trades,
                                   infer_resolutions, up_marks)
from workbench.data.walk import SourceFile, display_path, walk_sources

__all__ = ["COMPLETION_RECORD", "DOC_SUFFIXES", "EVENT_COLUMNS", "EVENT_TYPES", "INGEST_FORMAT", "IngestError",
    "MAX_FILE_BYTES", "MS_PER_DAY", "QUARANTINE_COLUMNS", "ReconciliationError", "WALLET_ACTIVITY", "market_window",
    "SourceFile", "display_path", "walk_sources", "decode_text", "read_activity_csv", "read_events",
    "read_json_file", "BAR_COLUMNS", "POSITION_COLUMNS", "build_bars", "build_positions", "build_trades",
    "infer_resolutions", "up_marks", "WalletData", "busiest_markets", "derive_tables", "find_wallet_dir",
    "load_wallet", "preview_file", "rebar", "wallet_summary", "DOWN", "LedgerError", "MarketPosition", "UP"]
