"""Records of decisions, outcomes and preferences, and the SQLite store that keeps them.

Every write is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): a crash mid-batch loses the open
batch and nothing committed before it, and readers never see half a batch (SQLite's atomic commit,
with the write-ahead log). Decision ids are derived from (source, market, time), and inserts ignore
rows that already exist, so re-running a notebook is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

_NS = uuid.UUID("6f1c2a7e-3b7d-4c55-9e0f-2a1d8b9c4e11")


@dataclass
class TradingDecision:
    """One recorded decision (Up-equivalent for prediction markets).

    Attributes
    ----------
    id : deterministic id from ``source``, ``symbol`` and ``time``.
    time : decision time, UTC epoch milliseconds.
    symbol : the market (slug) or ticker.
    action : ``BUY``, ``SELL`` or ``HOLD`` (``STRONG_*`` are folded into BUY/SELL with a larger size).
    size : shares; confidence : stated confidence in [0, 1].
    entry_price, stop_loss, take_profit : Up-equivalent prices (entry = ask for BUY, bid for SELL).
    features : numeric features at decision time (name -> value).
    analysis : the analysis text; source : who decided (``twin@rtg=2``, ``rule:fair_gap``, ``analyst``...).
    metadata : anything else (injected mistakes, decision point id, prompt...).
    """

    time: int
    symbol: str
    action: str
    size: float
    confidence: float
    features: dict[str, float]
    analysis: str
    source: str
    entry_price: float = float("nan")
    stop_loss: float = float("nan")
    take_profit: float = float("nan")
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if self.action not in ("BUY", "SELL", "HOLD"):
            raise ValueError(f"action must be BUY, SELL or HOLD, got {self.action!r}")
        if not 0.0 <= float(self.confidence) <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if not self.id:  # the content is part of the id: a changed decision is a new decision, not a silent no-op
            content = (f"{self.action}|{float(self.size):g}|{float(self.entry_price):g}|{float(self.stop_loss):g}|"
                       f"{float(self.take_profit):g}|{self.metadata.get('hold_ms', '')}|"
                       + hashlib.sha1(self.analysis.encode()).hexdigest())
            self.id = decision_id(self.source, self.symbol, self.time, content)

    @property
    def direction(self) -> int:
        return {"BUY": 1, "SELL": -1, "HOLD": 0}[self.action]

    @property
    def decision_id(self) -> str:
        """The id under the name design document 001 uses (``decision.decision_id``)."""
        return self.id


def decision_id(source: str, symbol: str, time: int, content: str = "") -> str:
    """Deterministic id of a decision: who decided, on what, when, and (``content``) what exactly was decided, so
    that recording the same decision twice is idempotent while a different decision never takes an old one's id."""
    return uuid.uuid5(_NS, f"{source}|{symbol}|{int(time)}|{content}").hex


@dataclass
class Outcome:
    """How a decision's position ended. Returns are P&L per share in Up-price units (USDC per share)."""

    decision_id: str
    exit_time: int
    exit_price: float
    ret: float
    pnl: float
    sharpe: float
    max_drawdown: float
    reason: str  # stop / target / expiry / time / manual / hold
    n_periods: int

    @property
    def risk_adjusted(self) -> float:
        """The design's risk-adjusted return: ``return / (1 + |max drawdown|)``."""
        return self.ret / (1.0 + abs(self.max_drawdown))


@dataclass
class PreferencePair:
    """``chosen`` beat ``rejected`` on ``metric`` by ``margin``; ``weight`` scales its loss."""

    chosen: TradingDecision
    rejected: TradingDecision
    metric: str
    margin: float
    weight: float
    created_at: int

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.chosen.id}|{self.rejected.id}|{self.metric}".encode()).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
  id TEXT PRIMARY KEY, time INTEGER NOT NULL, symbol TEXT NOT NULL, action TEXT NOT NULL, size REAL,
  confidence REAL, entry_price REAL, stop_loss REAL, take_profit REAL, features TEXT, analysis TEXT,
  source TEXT NOT NULL, metadata TEXT);
CREATE INDEX IF NOT EXISTS decisions_symbol_time ON decisions(symbol, time);
CREATE TABLE IF NOT EXISTS outcomes (
  decision_id TEXT PRIMARY KEY REFERENCES decisions(id), exit_time INTEGER, exit_price REAL, ret REAL, pnl REAL,
  sharpe REAL, max_drawdown REAL, reason TEXT, n_periods INTEGER);
CREATE TABLE IF NOT EXISTS positions (
  id TEXT PRIMARY KEY REFERENCES decisions(id), status TEXT NOT NULL, opened_at INTEGER, last_update INTEGER,
  entry_price REAL, direction INTEGER, size REAL, path TEXT);
CREATE TABLE IF NOT EXISTS preferences (
  id TEXT PRIMARY KEY, chosen_id TEXT REFERENCES decisions(id), rejected_id TEXT REFERENCES decisions(id),
  metric TEXT, margin REAL, weight REAL, created_at INTEGER);
CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, model TEXT, dim INTEGER, vector BLOB);
"""


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


class Store:
    """SQLite-backed store of decisions, outcomes, positions, preferences and text embeddings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)  # explicit transactions
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together, or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- decisions -------------------------------------------------------------------------------
    def add_decisions(self, decisions: Iterable[TradingDecision]) -> int:
        """Insert decisions in one transaction; existing ids are left unchanged. Returns rows inserted."""
        rows = [(d.id, int(d.time), d.symbol, d.action, float(d.size), float(d.confidence),
                 _nan_to_none(d.entry_price), _nan_to_none(d.stop_loss), _nan_to_none(d.take_profit),
                 json.dumps(d.features), d.analysis, d.source, json.dumps(d.metadata, default=str)) for d in decisions]
        with self.transaction() as c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            return c.total_changes - before

    def decisions(self, where: str = "", params: tuple[Any, ...] = ()) -> list[TradingDecision]:
        cur = self.conn.execute(f"SELECT * FROM decisions {where} ORDER BY time, id", params)
        return [self._decision(r) for r in cur.fetchall()]

    def decision(self, decision_id: str) -> TradingDecision:
        r = self.conn.execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        if r is None:
            raise KeyError(f"no decision {decision_id}")
        return self._decision(r)

    @staticmethod
    def _decision(r: tuple[Any, ...]) -> TradingDecision:
        nan = float("nan")
        return TradingDecision(time=r[1], symbol=r[2], action=r[3], size=r[4], confidence=r[5],
                               entry_price=nan if r[6] is None else r[6], stop_loss=nan if r[7] is None else r[7],
                               take_profit=nan if r[8] is None else r[8], features=json.loads(r[9]), analysis=r[10],
                               source=r[11], metadata=json.loads(r[12]), id=r[0])

    # ---- outcomes --------------------------------------------------------------------------------
    def add_outcomes(self, outcomes: Iterable[Outcome]) -> int:
        rows = [(o.decision_id, int(o.exit_time), o.exit_price, o.ret, o.pnl, o.sharpe, o.max_drawdown, o.reason,
                 o.n_periods) for o in outcomes]
        with self.transaction() as c:
            before = c.total_changes
            c.executemany("INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?,?,?,?,?)", rows)
            return c.total_changes - before

    def outcomes(self) -> dict[str, Outcome]:
        cur = self.conn.execute("SELECT * FROM outcomes")
        return {r[0]: Outcome(*r) for r in cur.fetchall()}

    # ---- preferences -----------------------------------------------------------------------------
    def add_preferences(self, pairs: Iterable[PreferencePair]) -> int:
        rows = [(p.id, p.chosen.id, p.rejected.id, p.metric, p.margin, p.weight, p.created_at) for p in pairs]
        with self.transaction() as c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO preferences VALUES (?,?,?,?,?,?,?)", rows)
            return c.total_changes - before

    def preference_rows(self) -> list[tuple[Any, ...]]:
        return self.conn.execute("SELECT chosen_id, rejected_id, metric, margin, weight, created_at FROM preferences "
                                 "ORDER BY created_at, id").fetchall()

    # ---- embeddings cache ------------------------------------------------------------------------
    def get_embeddings(self, keys: list[str], model: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), 900):  # SQLite's parameter limit
            chunk = keys[i: i + 900]
            q = f"SELECT key, vector FROM embeddings WHERE model = ? AND key IN ({','.join('?' * len(chunk))})"
            for k, blob in self.conn.execute(q, (model, *chunk)):
                out[k] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_embeddings(self, vectors: dict[str, np.ndarray], model: str) -> None:
        rows = [(k, model, int(v.shape[0]), np.asarray(v, np.float32).tobytes()) for k, v in vectors.items()]
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?)", rows)

    def counts(self) -> dict[str, int]:
        return {t: self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("decisions", "outcomes", "positions", "preferences", "embeddings")}


def decision_to_dict(d: TradingDecision) -> dict[str, Any]:
    return asdict(d)
