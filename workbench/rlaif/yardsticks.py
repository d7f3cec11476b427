"""Yardsticks for reward models: trivial scorers, pair accuracy with intervals over decision points, correlation
*within* decision points, outcome-based process labels, and best-of-n pickers judged on targets no scorer was
trained on.

A Bradley-Terry reward model orders the candidates of one decision point; across points its scores are not on a
common scale. So every statistic here is computed within points, and every interval resamples decision points
(the independent units: the candidates of one point share its future price path).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from workbench import metrics
from workbench.rlaif.store import PreferencePair, TradingDecision

Scorer = Callable[[TradingDecision], float]


def _fair(d: TradingDecision) -> float:
    f = d.metadata.get("facts", {})
    return float(f.get("fair", d.features.get("fair", np.nan)))


def baseline_scorers() -> dict[str, Scorer]:
    """The cheap rules a reward model must beat (each a score per decision; higher is preferred):

    * ``prefer HOLD``: holding beats trading;
    * ``HOLD, then the favourite``: holding first, then a trade on the side the market favours (BUY when the
      Up mid is above 0.5), then the other side;
    * ``edge heuristic``: the estimated fair value (from the facts) minus the price paid, per share;
    * ``prefer higher confidence``: the stated confidence.
    """
    def hold(d: TradingDecision) -> float:
        return 1.0 if d.action == "HOLD" else 0.0

    def favourite(d: TradingDecision) -> float:
        if d.action == "HOLD":
            return 2.0
        f = d.metadata.get("facts", {})
        up_mid = (float(f.get("up_bid", 0.5)) + float(f.get("up_ask", 0.5))) / 2
        return 1.0 if (d.action == "BUY") == (up_mid >= 0.5) else 0.0

    def edge(d: TradingDecision) -> float:
        return 0.0 if d.action == "HOLD" else d.direction * (_fair(d) - d.entry_price)

    return {"prefer HOLD": hold, "HOLD, then the favourite": favourite, "edge heuristic": edge,
            "prefer higher confidence": lambda d: float(d.confidence)}


def pair_accuracy_ci(scores: dict[str, float], pairs: Sequence[Any], *, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """Weighted share of pairs whose better member scores higher (ties count half), with a bootstrap interval
    that resamples decision points. ``pairs`` are :class:`PreferencePair` (weight 1 each) or ``(better, worse,
    weight)`` tuples (:func:`workbench.rlaif.truth.ev_pairs`)."""
    rows = []
    for p in pairs:
        a, b, w = (p.chosen, p.rejected, 1.0) if isinstance(p, PreferencePair) else p
        sa, sb = scores[a.id], scores[b.id]
        rows.append((int(a.metadata["decision_point"]), 1.0 if sa > sb else 0.5 if sa == sb else 0.0, w))
    if not rows:
        return {"acc": float("nan"), "ci": [float("nan")] * 2, "pairs": 0, "points": 0}
    frame = pd.DataFrame(rows, columns=["point", "hit", "w"])
    g = frame.assign(hw=frame["hit"] * frame["w"]).groupby("point")[["hw", "w"]].sum()
    hw, w = g["hw"].to_numpy(), g["w"].to_numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(g), size=(n_boot, len(g)))
    boot = hw[idx].sum(axis=1) / w[idx].sum(axis=1)
    q = [(1 - level) / 2, (1 + level) / 2]
    return {"acc": float(hw.sum() / w.sum()), "ci": [float(v) for v in np.quantile(boot, q)], "pairs": len(frame),
            "points": int(len(g))}


def normalised_accuracy(acc: float, ceiling: float) -> float:
    """``(acc - 0.5) / (ceiling - 0.5)``: the share of the way from a coin to the best achievable."""
    return float((acc - 0.5) / (ceiling - 0.5)) if ceiling > 0.5 else float("nan")


def within_point_spearman(groups: dict[int, list[TradingDecision]], scores: dict[str, float],
                          outcome: dict[str, float], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean over decision points of the Spearman correlation between scores and outcomes of the point's
    candidates (points with at least 3 candidates and non-constant values), with a bootstrap interval."""
    rhos = []
    for ds in groups.values():
        ds = [d for d in ds if d.id in outcome]
        s = np.array([scores[d.id] for d in ds])
        o = np.array([outcome[d.id] for d in ds])
        if len(ds) >= 3 and np.ptp(s) > 0 and np.ptp(o) > 0:
            rhos.append(spearmanr(s, o).statistic)
    r = np.asarray(rhos, dtype=np.float64)
    if not len(r):
        return {"mean": float("nan"), "ci": [float("nan")] * 2, "points": 0}
    rng = np.random.default_rng(seed)
    boot = r[rng.integers(0, len(r), size=(n_boot, len(r)))].mean(axis=1)
    return {"mean": float(r.mean()), "ci": [float(v) for v in np.quantile(boot, [0.025, 0.975])], "points": len(r)}


def outcome_step4_labels(decisions: Sequence[TradingDecision], ev: dict[str, float], margin: float = 0.01
                         ) -> dict[str, float]:
    """Step 4 (the trading signal) judged by its outcome, not by agreement with an analyst: a trade is correct
    when its expected value is positive; a HOLD is correct when no trade at its decision point has an expected
    value above ``margin``. (On real data, replace the expected value by the realised return.)"""
    best: dict[int, float] = {}
    for d in decisions:
        if d.action != "HOLD" and d.id in ev:
            k = int(d.metadata["decision_point"])
            best[k] = max(best.get(k, -np.inf), ev[d.id])
    out = {}
    for d in decisions:
        if d.id not in ev:
            continue
        if d.action == "HOLD":
            out[d.id] = float(best.get(int(d.metadata["decision_point"]), -np.inf) <= margin)
        else:
            out[d.id] = float(ev[d.id] > 0)
    return out


def pick(groups: dict[int, list[TradingDecision]], score: dict[str, float], seed: int = 0) -> dict[int, TradingDecision]:
    """Best-of-n at each decision point; ties broken at random (seeded), never by the order of the list."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, ds in groups.items():
        s = np.array([score[d.id] for d in ds])
        best = np.flatnonzero(s == s.max())
        out[k] = ds[int(rng.choice(best))]
    return out


def judge_pickers(picks: dict[str, dict[int, TradingDecision]], ev: dict[str, float], realised: dict[str, float], *,
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every picker on the same targets, neither of which any scorer optimises: the expected value of the picked
    decision per share (simulator truth) and its realised return per share, means with bootstrap intervals over
    decision points; and the share of points where the pick trades."""
    rows = {}
    rng = np.random.default_rng(seed)
    for name, chosen in picks.items():
        keys = sorted(chosen)
        e = np.array([ev.get(chosen[k].id, np.nan) for k in keys])
        r = np.array([realised.get(chosen[k].id, np.nan) for k in keys])
        idx = rng.integers(0, len(keys), size=(n_boot, len(keys)))
        eb, rb = np.nanmean(e[idx], axis=1), np.nanmean(r[idx], axis=1)
        rows[name] = {"mean_ev": float(np.nanmean(e)), "ev_ci": [float(v) for v in np.quantile(eb, [0.025, 0.975])],
                      "mean_return": float(np.nanmean(r)),
                      "return_ci": [float(v) for v in np.quantile(rb, [0.025, 0.975])],
                      "trade_share": float(np.mean([chosen[k].action != "HOLD" for k in keys])), "points": len(keys)}
    return pd.DataFrame(rows).T


def paired_difference(a: dict[int, TradingDecision], b: dict[int, TradingDecision], value: dict[str, float], *,
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean over common decision points of ``value(a's pick) - value(b's pick)``, its bootstrap interval and the
    smallest difference the design can detect (80 % power at 5 %: 2.8 standard errors)."""
    keys = sorted(set(a) & set(b))
    x = np.array([value.get(a[k].id, np.nan) - value.get(b[k].id, np.nan) for k in keys])
    x = x[np.isfinite(x)]
    boot = x[np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    se = float(boot.std(ddof=1))
    return {"difference": float(x.mean()), "ci": [float(v) for v in np.quantile(boot, [0.025, 0.975])], "se": se,
            "min_detectable": metrics.detectable_difference(se), "points": int(len(x))}


def monitor_within_points(groups: dict[int, list[TradingDecision]], scores: dict[str, float],
                          outcome: dict[str, float], window: int = 50, fine: float = 0.5, retrain: float = 0.3
                          ) -> pd.DataFrame:
    """The seed's monitoring, computed correctly: over rolling windows of ``window`` consecutive decision points,
    the mean within-point Spearman correlation of reward and outcome, with the seed's reading (``> fine``: fine;
    ``< retrain``: retrain; between: watch)."""
    keys = sorted(groups, key=lambda k: groups[k][0].time)
    rho = []
    for k in keys:
        ds = [d for d in groups[k] if d.id in outcome]
        s, o = np.array([scores[d.id] for d in ds]), np.array([outcome[d.id] for d in ds])
        rho.append(spearmanr(s, o).statistic if len(ds) >= 3 and np.ptp(s) > 0 and np.ptp(o) > 0 else np.nan)
    r = pd.Series(rho).rolling(window, min_periods=max(5, window // 2)).mean()
    state = np.where(r > fine, "fine", np.where(r < retrain, "retrain", "watch"))
    return pd.DataFrame({"time": pd.to_datetime([groups[k][0].time for k in keys], unit="ms", utc=True),
                         "spearman": r.to_numpy(), "state": np.where(r.isna(), "warming up", state)})


def _z(score: dict[str, float]) -> dict[str, float]:
    v = np.array(list(score.values()), dtype=np.float64)
    mu, sd = float(np.nanmean(v)), float(np.nanstd(v)) or 1.0
    return {k: (s - mu) / sd for k, s in score.items()}


def objective_frontier(groups: dict[int, list[TradingDecision]], return_score: dict[str, float],
                       risk_score: dict[str, float], outcomes: dict[str, Any], weights: Sequence[float],
                       ev: dict[str, float] | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Design document 001's multi-objective reward: ``w * z(return model) + (1 - w) * z(risk model)`` (scores
    standardised over the decisions) picks best-of-n at each decision point, for each weight ``w``. Per weight: the
    picks' mean realised return per share, mean maximum drawdown per share and (with ``ev``) mean expected value,
    each with a bootstrap interval over decision points, and the share of picks that trade: the frontier of return
    against drawdown that the weights trace, measured rather than asserted."""
    zr, zk = _z(return_score), _z(risk_score)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), size=(n_boot, len(keys)))
    rows = []
    for w in weights:
        combined = {i: float(w) * zr[i] + (1 - float(w)) * zk[i] for i in zr}
        chosen = pick(groups, combined, seed)
        ret = np.array([outcomes[chosen[k].id].ret if chosen[k].id in outcomes else np.nan for k in keys])
        dd = np.array([abs(outcomes[chosen[k].id].max_drawdown) if chosen[k].id in outcomes else np.nan for k in keys])
        row = {"weight_on_return": float(w), "points": len(keys),
               "trades": float(np.mean([chosen[k].action != "HOLD" for k in keys]))}
        cols = [("return", ret), ("drawdown", dd)]
        if ev is not None:
            cols.append(("ev", np.array([ev.get(chosen[k].id, np.nan) for k in keys])))
        for name, x in cols:
            boot = np.nanmean(x[idx], axis=1)
            row[name], (row[f"{name}_lo"], row[f"{name}_hi"]) = float(np.nanmean(x)), np.quantile(boot, [0.025, 0.975])
        rows.append(row)
    return pd.DataFrame(rows)
