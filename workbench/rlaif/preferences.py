"""Turn market outcomes into preference pairs: which of two comparable decisions did better?

Two decisions are comparable when they were made on the same market at the same decision point (or
within ``window_ms`` of each other): apples to apples. A pair is made only from outcomes known by
``as_of`` (no future outcome is used before it is known), is kept when the metric difference reaches
``min_preference_margin``, and is weighted by its margin (normalised to mean 1). The report says how
many pairs were made, kept, and why the others were dropped.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

import numpy as np

from workbench.rlaif.store import Outcome, PreferencePair, Store, TradingDecision
from workbench.rlaif.tracker import path_metrics

Metric = Callable[[TradingDecision, Outcome], float]
METRICS: dict[str, Metric] = {
    "return": lambda d, o: o.ret,
    "sharpe": lambda d, o: o.sharpe,
    "risk_adjusted": lambda d, o: o.risk_adjusted,
}


class DecisionOutcome:
    """A decision together with its outcome, as the design's custom scorers read it: ``realized_return``,
    ``max_drawdown``, ``sharpe``, ``agent_response.confidence`` / ``.reasoning``, and every field of the
    decision (``action``, ``size``, ``features``...) and of the outcome (``exit_price``, ``reason``...)."""

    def __init__(self, decision: TradingDecision, outcome: Outcome) -> None:
        from types import SimpleNamespace

        self.decision, self.outcome = decision, outcome
        self.realized_return = outcome.ret
        self.max_drawdown = outcome.max_drawdown
        self.sharpe = outcome.sharpe
        self.agent_response = SimpleNamespace(confidence=decision.confidence, reasoning=decision.analysis)

    def __getattr__(self, name: str) -> Any:
        if name in ("decision", "outcome"):
            raise AttributeError(name)
        for obj in (self.decision, self.outcome):
            if hasattr(obj, name):
                return getattr(obj, name)
        raise AttributeError(f"a decision with its outcome has no attribute {name!r}")


def custom_metric(scorer: Callable[[Any], float]) -> Metric:
    """The :data:`Metric` of a design-style scorer ``f(decision) -> float`` (see :class:`DecisionOutcome`)."""
    def metric(d: TradingDecision, o: Outcome) -> float:
        return float(scorer(DecisionOutcome(d, o)))

    metric.__name__ = getattr(scorer, "__name__", "custom")
    return metric


@dataclass
class PairingReport:
    decisions: int = 0
    with_outcome: int = 0
    groups: int = 0
    candidate_pairs: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "with_outcome_known": self.with_outcome, "comparable_groups": self.groups,
                "pairs_made": self.candidate_pairs, "pairs_kept": self.kept, **{f"dropped: {k}": v for k, v in
                                                                               sorted(self.dropped.items())}}


#: Design document 001's default store location: a folder.
DEFAULT_STORAGE = Path("data") / "rlaif"


def store_file(storage_path: str | Path) -> Path:
    """The SQLite file of ``storage_path``: ``<path>/rlaif.db`` for a folder (an existing folder, or a path without
    a file suffix), else the path itself."""
    p = Path(storage_path)
    return p / "rlaif.db" if p.is_dir() or not p.suffix else p


def _field(obj: Any, name: str, default: Any) -> Any:
    """``obj.name`` or ``obj[name]`` (an agent's response object or dict), else ``default``."""
    if obj is None or isinstance(obj, str):
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class PreferenceGenerator:
    """Record decisions and outcomes; generate preference pairs (the design's API).

    Parameters
    ----------
    storage_path : a folder holding the store (``<folder>/rlaif.db``; default ``./data/rlaif``, as in design
        document 001) -- any path without a file suffix, or an existing folder, is a folder -- or an SQLite file
        (a path with a suffix such as ``.db``). Created if missing.
    min_preference_margin : smallest metric difference for a kept pair.
    hold_period_days : default holding time of tracked positions, in days (fractions allowed).
    """

    def __init__(self, storage_path: str | Path = DEFAULT_STORAGE, min_preference_margin: float = 0.05,
                 hold_period_days: float = 5) -> None:
        self.store = Store(store_file(storage_path))
        self.min_preference_margin = float(min_preference_margin)
        self.hold_period_days = float(hold_period_days)
        self.last_report = PairingReport()

    # ---- recording ---------------------------------------------------------------------------------
    def record_decision(self, symbol: str, action: str, confidence: float | None = None,
                        features: dict[str, float] | None = None, analysis: str | None = None, source: str = "agent",
                        time: int | None = None, size: float = 1.0, entry_price: float = float("nan"),
                        stop_loss: float = float("nan"), take_profit: float = float("nan"),
                        metadata: dict[str, Any] | None = None, *, agent_response: Any = None,
                        position_size: float | None = None, market_data: dict[str, Any] | None = None) -> TradingDecision:
        """Record one decision (idempotent: the same source, symbol and time give the same record).

        Also takes design document 001's form, ``record_decision(symbol=, agent_response=, action="buy",
        position_size=, market_data=, features=)``: the action in any case; ``agent_response`` an object or dict
        whose ``confidence`` and ``analysis`` / ``reasoning`` (or a plain string) fill those fields when not
        given; ``position_size`` the size; ``market_data["close"]`` the entry price and ``market_data["time"]``
        (UTC ms) the time when not given, else the current time; ``market_data`` itself is kept in ``metadata``.
        """
        import time as _time

        md = dict(market_data or {})
        conf = confidence if confidence is not None else _field(agent_response, "confidence", 0.5)
        text = analysis if analysis is not None else (
            agent_response if isinstance(agent_response, str) else
            _field(agent_response, "analysis", _field(agent_response, "reasoning", "")))
        when = time if time is not None else md.get("time", int(_time.time() * 1000))
        if position_size is not None:
            size = float(position_size)
        if not np.isfinite(float(entry_price)) and isinstance(md.get("close"), (int, float)):
            entry_price = float(md["close"])
        meta = dict(metadata or {})
        if md:
            meta.setdefault("market_data", {k: v for k, v in md.items() if isinstance(v, (int, float, str, bool))})
        d = TradingDecision(time=int(when), symbol=symbol, action=str(action).upper(), size=float(size),
                            confidence=float(conf), features=dict(features or {}), analysis=str(text), source=source,
                            entry_price=entry_price, stop_loss=stop_loss, take_profit=take_profit, metadata=meta)
        self.store.add_decisions([d])
        return d

    def record_decisions(self, decisions: Iterable[TradingDecision]) -> int:
        """Record many decisions in one transaction; returns how many were new."""
        return self.store.add_decisions(decisions)

    def update_outcome(self, decision_id: str, exit_price: float, price_history: Any, exit_time: int | None = None,
                       reason: str = "manual") -> Outcome:
        """Store the outcome of a decision closed at ``exit_price`` after the marks ``price_history``."""
        d = self.store.decision(decision_id)
        marks = np.asarray(price_history if price_history is not None else [], float)
        ret, sharpe, mdd = path_metrics(d.direction, d.entry_price, marks, exit_price) if d.direction else (0.0, 0.0, 0.0)
        o = Outcome(decision_id, int(exit_time if exit_time is not None else d.time), float(exit_price), ret,
                    ret * d.size, sharpe, mdd, reason, len(marks) + 1)
        self.store.add_outcomes([o])
        return o

    # ---- pairing -----------------------------------------------------------------------------------
    def generate_preferences(self, comparison_metric: str | Metric = "risk_adjusted", min_samples: int = 10,
                             as_of: int | None = None, window_ms: int = 0, store: bool = True,
                             ids: Collection[str] | None = None,
                             custom_scorer: Callable[[Any], float] | None = None) -> list[PreferencePair]:
        """Pairs of comparable decisions whose outcomes are known by ``as_of`` (default: all known).

        Parameters
        ----------
        comparison_metric : ``"return"``, ``"sharpe"``, ``"risk_adjusted"``, ``f(decision, outcome)``, or
            ``"custom"`` with ``custom_scorer``.
        min_samples : fewer decisions with known outcomes than this gives no pairs.
        as_of : UTC ms; outcomes that exit after it are unknown (default: no limit).
        window_ms : decisions on the same market within this many ms of each other are comparable.
        ids : only these decisions (e.g. this run's, when the store also holds an earlier run's with other
            parameters); default: every decision in the store.
        custom_scorer : the design's ``f(decision) -> float``, where ``decision`` carries its outcome
            (``realized_return``, ``max_drawdown``, ``agent_response.confidence``; see :class:`DecisionOutcome`);
            the pairs' metric is then the scorer's name.
        """
        if custom_scorer is not None:
            if comparison_metric not in ("custom", "risk_adjusted"):  # risk_adjusted: the default, not a choice
                raise ValueError(f"custom_scorer given with comparison_metric={comparison_metric!r}: pass "
                                 "comparison_metric='custom'")
            comparison_metric = custom_metric(custom_scorer)
        elif comparison_metric == "custom":
            raise ValueError("comparison_metric='custom' needs custom_scorer=f, a function of a decision with its "
                             "outcome (decision.realized_return, decision.max_drawdown, decision.agent_response)")
        if isinstance(comparison_metric, str) and comparison_metric not in METRICS:
            raise ValueError(f"comparison_metric must be one of {sorted(METRICS)}, 'custom' or a function, got "
                             f"{comparison_metric!r}")
        metric = METRICS[comparison_metric] if isinstance(comparison_metric, str) else comparison_metric
        name = comparison_metric if isinstance(comparison_metric, str) else getattr(comparison_metric, "__name__", "custom")
        decisions = self.store.decisions()
        if ids is not None:
            decisions = [d for d in decisions if d.id in ids]
        outcomes = self.store.outcomes()
        rep = PairingReport(decisions=len(decisions))
        known = {}
        for d in decisions:
            o = outcomes.get(d.id)
            if o is None:
                rep.dropped["outcome not recorded"] += 1
            elif as_of is not None and o.exit_time > as_of:
                rep.dropped["outcome not known yet at as_of"] += 1
            else:
                known[d.id] = (d, o)
        rep.with_outcome = len(known)
        if len(known) < min_samples:
            rep.dropped[f"fewer than min_samples={min_samples} outcomes"] += len(known)
            self.last_report = rep
            return []
        groups: dict[tuple[str, int], list[tuple[TradingDecision, Outcome]]] = {}
        for d, o in known.values():
            key = (d.symbol, int(d.time // window_ms) if window_ms else int(d.time))
            groups.setdefault(key, []).append((d, o))
        pairs: list[PreferencePair] = []
        for members in groups.values():
            if len(members) < 2:
                rep.dropped["no comparable decision (alone in its market and time)"] += 1
                continue
            rep.groups += 1
            for (da, oa), (db, ob) in itertools.combinations(members, 2):
                rep.candidate_pairs += 1
                if da.id == db.id:
                    rep.dropped["same decision"] += 1
                    continue
                ma, mb = metric(da, oa), metric(db, ob)
                if not (np.isfinite(ma) and np.isfinite(mb)):
                    rep.dropped["metric not finite"] += 1
                    continue
                margin = abs(ma - mb)
                if margin < self.min_preference_margin:
                    rep.dropped["margin below min_preference_margin"] += 1
                    continue
                chosen, rejected = (da, db) if ma > mb else (db, da)
                pairs.append(PreferencePair(chosen, rejected, name, float(margin), float(margin),
                                            int(max(oa.exit_time, ob.exit_time))))
        if pairs:
            mean = float(np.mean([p.margin for p in pairs]))
            for p in pairs:
                p.weight = p.margin / mean
        pairs.sort(key=lambda p: (p.created_at, p.id))
        rep.kept = len(pairs)
        self.last_report = rep
        if store and pairs:
            self.store.add_preferences(pairs)
        return pairs

    def decisions_with_outcomes(self, since: int | None = None) -> list[DecisionOutcome]:
        """Decisions (made at or after ``since``, UTC ms) whose outcome is recorded, each with its outcome
        (``realized_return``...): what the design's monitoring example reads, in time order."""
        outs = self.store.outcomes()
        return [DecisionOutcome(d, outs[d.id]) for d in sorted(self.store.decisions(), key=lambda d: (d.time, d.id))
                if d.id in outs and (since is None or d.time >= since)]

    def get_training_data(self, min_confidence: float = 0.0, max_samples: int | None = None) -> list[PreferencePair]:
        """Stored pairs whose chosen decision states at least ``min_confidence``, largest margins first."""
        cache: dict[str, TradingDecision] = {}

        def dec(i: str) -> TradingDecision:
            if i not in cache:
                cache[i] = self.store.decision(i)
            return cache[i]

        pairs = [PreferencePair(dec(c), dec(r), m, mg, w, t) for c, r, m, mg, w, t in self.store.preference_rows()]
        pairs = [p for p in pairs if p.chosen.confidence >= min_confidence]
        pairs.sort(key=lambda p: -p.margin)
        return pairs[:max_samples] if max_samples else pairs

    def get_stats(self) -> dict[str, Any]:
        counts = self.store.counts()
        outs = list(self.store.outcomes().values())
        traded = [o for o in outs if o.reason != "hold"]
        rets = np.array([o.ret for o in traded])
        return {**counts, "traded_outcomes": len(traded),
                "win_rate": float((rets > 0).mean()) if len(rets) else float("nan"),
                "mean_return": float(rets.mean()) if len(rets) else float("nan"),
                "last_pairing": self.last_report.as_dict()}
