"""Notebook 05's study: replay history into decisions, outcomes, preferences, reward models, and compare.

Everything here is offline replay of the project's data, through components (store, tracker, price
source, preference generator, reward models) that would run unchanged against a live price feed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench.analysis.analyst import Analyst, prompt_from_facts
from workbench.analysis.facts import STEP_TITLES, Facts, facts_from_steps
from workbench.analysis.rlconfig import STEPS
from workbench.analysis.verifier import StepVerifier
from workbench.metrics import brier, ece
from workbench.rlaif.candidates import candidates_at
from workbench.rlaif.store import Outcome, PreferencePair, TradingDecision
from workbench.rlaif.tracker import evaluate


def decision_points(steps: pd.DataFrame, periods: pd.Series, every: int, book: Any, analyst: Analyst,
                    capital: float = 500.0) -> tuple[pd.DataFrame, list[Facts]]:
    """Every ``every``-th step (after each period's start) as a decision point, with its facts and the
    analyst's clean analysis: the table notebook 06 fine-tunes on.

    Returns the table (``time, market, facts, prompt, completion, signal, confidence, period``) and the
    facts list in the same order. Steps whose facts are incomplete (an indicator still warming up at the
    start of the data or after a gap, so a number in the prompt would read "nan") are not decision points;
    their count is in ``table.attrs["incomplete"]``.
    """
    rows = np.concatenate([np.flatnonzero((periods == p).to_numpy())[::every] for p in ("train", "val", "test")])
    rows = np.sort(rows)
    sub = steps.iloc[rows]
    facts = facts_from_steps(sub, book, capital)
    complete = np.array([all(np.isfinite(v) for v in f.to_dict().values() if isinstance(v, float)) for f in facts],
                        dtype=bool)
    sub, facts = sub[complete], [f for f, ok in zip(facts, complete) if ok]
    rows = rows[complete]
    out = []
    for f, (t, period) in zip(facts, zip(sub.index, periods.iloc[rows])):
        a = analyst.write(f)
        out.append({"time": int(t.value // 10**6), "market": f.market, "facts": json.dumps(f.to_dict()),
                    "prompt": prompt_from_facts(f), "completion": a.text, "signal": a.params.signal,
                    "confidence": a.params.confidence, "period": period})
    table = pd.DataFrame(out)
    table.attrs["incomplete"] = int((~complete).sum())
    return table, facts


def candidates(points: pd.DataFrame, facts: Sequence[Facts], analyst: Analyst, twin_actions: dict[str, np.ndarray],
               seed: int = 0, mistake_sources: int = 2, subset: np.ndarray | None = None,
               vary: bool = False, agents: dict[str, np.ndarray] | None = None) -> list[TradingDecision]:
    """All candidate decisions at the chosen decision points (``subset`` of row numbers, default all).

    ``twin_actions[name]`` holds the twin's class at each decision point (aligned with ``points``), ``agents[name]``
    another agent's (e.g. notebook 08's PPO, source ``name``); ``vary``: see
    :func:`workbench.rlaif.candidates.candidates_at`.
    """
    rng = np.random.default_rng(seed)
    idx = np.arange(len(points)) if subset is None else np.asarray(subset)
    out: list[TradingDecision] = []
    for i in idx:
        twin = {name: int(a[i]) for name, a in twin_actions.items()}
        other = {name: int(a[i]) for name, a in (agents or {}).items()}
        for d in candidates_at(facts[i], int(points["time"].iloc[i]), analyst, rng, twin, mistake_sources, int(i), vary,
                               other):
            d.metadata["period"] = points["period"].iloc[i]
            out.append(d)
    return out


def outcomes(decisions: Sequence[TradingDecision], source: Any, max_hold_ms: int) -> list[Outcome]:
    """Outcome of every decision on the replayed quotes (the source's clock bounds what is known)."""
    out = []
    for d in decisions:
        o, _ = evaluate(d, source, max_hold_ms)
        if o is not None:
            out.append(o)
    return out


def split_pairs(pairs: Sequence[PreferencePair]) -> dict[str, list[PreferencePair]]:
    """Pairs by the period of their decision point (both decisions share it)."""
    out: dict[str, list[PreferencePair]] = {"train": [], "val": [], "test": []}
    for p in pairs:
        out[p.chosen.metadata.get("period", "train")].append(p)
    return out


def step_texts(decisions: Sequence[TradingDecision]) -> list[list[str]]:
    """The four step texts of each decision's analysis (``""`` for a missing step)."""
    from workbench.analysis.verifier import split_steps

    out = []
    for d in decisions:
        st = split_steps(d.analysis)
        out.append([f"Step {i} - {STEP_TITLES[s]}: {st.get(s, '')}" for i, s in enumerate(STEPS, 1)])
    return out


def verify_decisions(decisions: Sequence[TradingDecision], verifier: StepVerifier) -> pd.DataFrame:
    """Step verdicts of every decision's analysis against its facts at decision time."""
    rows = []
    for d in decisions:
        f = Facts(**d.metadata["facts"])
        v = verifier.verify(d.analysis, f)
        rows.append({"id": d.id, **{f"ok_{s}": v.step_ok[s] for s in STEPS}, "true_step_share": v.true_step_share,
                     "self_consistent": v.self_consistent})
    return pd.DataFrame(rows).set_index("id")


def by_point(decisions: Sequence[TradingDecision]) -> dict[int, list[TradingDecision]]:
    out: dict[int, list[TradingDecision]] = {}
    for d in decisions:
        out.setdefault(int(d.metadata["decision_point"]), []).append(d)
    return out


def calibration_by_source(decisions: Sequence[TradingDecision], outs: dict[str, Outcome], n_bins: int = 10
                          ) -> pd.DataFrame:
    """Stated confidence against realised success (a trade that made money), per source: ECE and Brier."""
    rows = {}
    frame = pd.DataFrame([{"source": d.source.split(":")[0] if d.source.startswith("analyst:") else d.source,
                           "confidence": d.confidence, "success": float(outs[d.id].ret > 0)}
                          for d in decisions if d.action != "HOLD" and d.id in outs])
    for src, g in frame.groupby("source"):
        rows[src] = {"trades": len(g), "mean_confidence": g["confidence"].mean(), "success_rate": g["success"].mean(),
                     "ece": ece(g["confidence"], g["success"], n_bins), "brier": brier(g["confidence"], g["success"])}
    return pd.DataFrame(rows).T


def attach_outcomes(points: pd.DataFrame, facts: Sequence[Facts], analyst: Analyst, source: Any,
                    max_hold_ms: int) -> pd.DataFrame:
    """``outcome_ret`` of following the analyst's clean decision at every decision point (NaN if open)."""
    from workbench.rlaif.candidates import make_decision

    rets = []
    for f, t in zip(facts, points["time"]):
        o, _ = evaluate(make_decision(f, int(t), "analyst", analyst), source, max_hold_ms)
        rets.append(o.ret if o is not None else np.nan)
    return points.assign(outcome_ret=rets)


def outcome_table(decisions: Sequence[TradingDecision], outs: dict[str, Outcome]) -> tuple[pd.DataFrame, pd.Series]:
    """Per source: traded decisions, mean return per share, win rate; and exits by reason."""
    frame = pd.DataFrame([{"source": d.source, "ret": outs[d.id].ret, "reason": outs[d.id].reason}
                          for d in decisions if d.id in outs and d.action != "HOLD"])
    table = frame.groupby("source")["ret"].agg(trades="count", mean_return="mean",
                                               win_rate=lambda r: float((r > 0).mean()))
    return table, frame["reason"].value_counts().rename("exits")


@dataclass
class StepData:
    """Step texts ``(n, 4)``, numeric facts, verifier labels ``(n, 4)`` and the period of each decision."""

    texts: list[list[str]]
    features: list[dict[str, float]]
    labels: np.ndarray
    period: np.ndarray

    def part(self, name: str) -> tuple[list[list[str]], list[dict[str, float]], np.ndarray]:
        idx = np.flatnonzero(self.period == name)
        return [self.texts[i] for i in idx], [self.features[i] for i in idx], self.labels[idx]


def step_data(decisions: Sequence[TradingDecision], verdicts: pd.DataFrame) -> StepData:
    labels = verdicts.loc[[d.id for d in decisions], [f"ok_{s}" for s in STEPS]].to_numpy(float)
    return StepData(step_texts(decisions), [d.features for d in decisions], labels,
                    np.array([d.metadata["period"] for d in decisions]))


def step_evaluation(probs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per step type: share of correct steps, the process model's ROC AUC and accuracy at 0.5."""
    from sklearn.metrics import roc_auc_score

    rows = {}
    for k, s in enumerate(STEPS):
        y = labels[:, k]
        rows[s] = {"share correct": float(y.mean()),
                   "PRM AUC": float(roc_auc_score(y, probs[:, k])) if 0 < y.mean() < 1 else float("nan"),
                   "PRM accuracy": float(((probs[:, k] > 0.5) == y).mean())}
    return pd.DataFrame(rows).T


