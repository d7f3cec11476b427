"""Change points by profile likelihood, model choice by likelihood-ratio tests, intervals over markets.

* **Change points** (:func:`fit_card`): the stop window is the largest the data allow (no trade inside it); the
  late window, take profit and stop loss are profiled on grids (coarse, then fine around the best), each
  re-maximising every continuous parameter. A change point's interval is the set of grid values whose profile
  log-likelihood is within ``chi2_1(0.95) / 2 = 1.92`` of the best, widened by half a grid step; a window on
  the decision grid is only identified up to the grid (the interval says so).
* **Model choice**: backward elimination over term groups; a group leaves when its likelihood-ratio test has
  ``p > alpha`` (the largest p first), so a term the trader does not use is dropped, not reported.
* **Intervals**: sandwich (Wald) intervals over markets from the final fit, and :func:`bootstrap` percentile
  intervals from refits on markets drawn with replacement (change points and terms held at the fit's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from workbench.rules import model as RM
from workbench.rules.terms import PolicyData

HALF_CHI2 = 0.5 * chi2.ppf(0.95, 1)
GROUPS: tuple[str, ...] = ("edge", "momentum", "inventory", "exit", "late", "activity", "conviction")


@dataclass
class CardFit:
    """The rule card's estimate: the final fit, the change points' profiles and intervals, the selection."""

    fit: RM.Fit
    profiles: dict[str, pd.DataFrame] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def change_points(self) -> RM.ChangePoints:
        return self.fit.change_points


def _grid_interval(values: np.ndarray, ll: np.ndarray, step: float) -> tuple[float, float]:
    ok = np.isfinite(ll) & (ll >= np.nanmax(ll) - HALF_CHI2)
    return float(values[ok].min() - step / 2), float(values[ok].max() + step / 2)


def _profile(d: PolicyData, base: RM.Fit, field_: str, values: np.ndarray) -> pd.DataFrame:
    rows = []
    for v in values:
        f = RM.fit(d, replace(base.change_points, **{field_: float(v)}), base.spec, start=base.params)
        rows.append({field_: float(v), "loglik": f.loglik, "fit": f})
    return pd.DataFrame(rows)


def _best(prof: pd.DataFrame) -> RM.Fit:
    return prof.loc[prof["loglik"].idxmax(), "fit"]


def _level_search(d: PolicyData, base: RM.Fit, field_: str, coarse: np.ndarray, fine_step: float
                  ) -> tuple[RM.Fit, pd.DataFrame, tuple[float, float]]:
    prof = _profile(d, base, field_, coarse)
    best = float(prof.loc[prof["loglik"].idxmax(), field_])
    step = float(np.diff(coarse).min()) if len(coarse) > 1 else fine_step
    fine = np.round(np.arange(best - step / 2, best + step / 2 + 1e-9, fine_step), 6)
    fine = fine[(fine > 0) & ~np.isin(np.round(fine, 6), np.round(prof[field_].to_numpy(), 6))]
    prof = pd.concat([prof, _profile(d, _best(prof), field_, fine)], ignore_index=True).sort_values(field_)
    near = prof[np.abs(prof[field_] - best) <= step + 1e-9]
    return _best(prof), prof, _grid_interval(near[field_].to_numpy(), near["loglik"].to_numpy(), fine_step)


def window_class(left_grid: np.ndarray, c: float) -> tuple[float, float]:
    """The interval of windows ``w`` giving the same steps ``seconds_left < w`` as ``c``: (below, above]."""
    g = np.unique(left_grid)
    below, above = g[g < c], g[g >= c]
    return (float(below.max()) if len(below) else 0.0, float(above.min()) if len(above) else math.inf)


def fit_card(d: PolicyData, *, candidates: tuple[str, ...] = (), alpha: float = 0.01,
             level_grid: tuple[float, float, float] = (0.03, 0.30, 0.03), fine_step: float = 0.005,
             late_grid: tuple[float, ...] = (145, 205, 265, 325, 385), stop_grid: tuple[float, ...] = (0, 85, 145, 205),
             covariance: bool = True) -> CardFit:
    """Estimate the rule card on ``d``: change points, model choice, the final fit with its covariance.

    Parameters
    ----------
    d : the terms (:func:`workbench.rules.terms.policy_data`), usually of the training period.
    candidates : candidate terms in the starting model (names of ``terms.CANDIDATES``).
    alpha : level of the likelihood-ratio tests of model choice.
    level_grid : (first, last, step) of the coarse take-profit / stop-loss grid (price units per share).
    fine_step : step of the fine grid around the best coarse value.
    late_grid, stop_grid : candidate windows (seconds before expiry).
    """
    left = d.seconds_left[d.index >= 0]
    spec = RM.Spec(candidates=tuple(candidates))
    feasible = [s for s in stop_grid if not bool(((d.seconds_left < s) & (d.index >= 0) & (d.direction != 0)).any())]
    stop = max(feasible) if feasible else 0.0
    cp = RM.ChangePoints(0.10, 0.10, float(late_grid[min(1, len(late_grid) - 1)]), float(stop))
    base = RM.fit(d, cp, spec)
    profiles: dict[str, pd.DataFrame] = {}
    intervals: dict[str, tuple[float, float]] = {"stop": window_class(left, stop)}
    late = _profile(d, base, "late_window", np.asarray(late_grid, float))
    profiles["late_window"] = late
    base = _best(late)
    keep = late["loglik"] >= late["loglik"].max() - HALF_CHI2
    cls = [window_class(left, c) for c in late.loc[keep, "late_window"]]
    intervals["late_window"] = (min(c[0] for c in cls), max(c[1] for c in cls))
    coarse = np.round(np.arange(level_grid[0], level_grid[1] + 1e-9, level_grid[2]), 6)
    for field_ in ("take_profit", "stop_loss"):
        base, prof, iv = _level_search(d, base, field_, coarse, fine_step)
        profiles[field_], intervals[field_] = prof, iv
    sel_rows: list[dict[str, Any]] = []
    current = base
    groups = [g for g in GROUPS] + list(candidates)
    round_ = 0
    settled: set[str] = set()  # groups with p < 1e-6: dropping another group will not rescue them
    while True:
        round_ += 1
        tests = []
        for g in groups:
            if g in current.spec.dropped or g in settled:
                continue
            r = RM.fit(d, current.change_points, current.spec.without(g), start=current.params)
            lr = max(2 * (current.loglik - r.loglik), 0.0)
            df = current.n_free - r.n_free
            tests.append({"round": round_, "term": g, "LR": lr, "df": df, "p": float(chi2.sf(lr, df)),
                          "delta_BIC": r.bic - current.bic, "fit": r})
        if not tests:
            break
        settled |= {t["term"] for t in tests if t["p"] < 1e-6}
        worst = max(tests, key=lambda t: t["p"])
        for t in tests:
            t["decision"] = "dropped" if (t is worst and t["p"] > alpha) else "kept"
        sel_rows.extend({k: v for k, v in t.items() if k != "fit"} for t in tests)
        if worst["p"] <= alpha:
            break
        current = worst["fit"]
    final = RM.fit(d, current.change_points, current.spec, start=current.params, covariance=covariance)
    return CardFit(final, profiles, intervals, pd.DataFrame(sel_rows))


def bootstrap(d: PolicyData, card: CardFit, n_boot: int = 100, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Percentile intervals of every free parameter from ``n_boot`` refits on markets drawn with replacement
    (change points and terms held at ``card``'s). Rows: parameters; columns ``lo, hi, n_ok``."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        m = rng.integers(0, d.n_markets, d.n_markets)
        f = RM.fit(d.subset(m), card.fit.change_points, card.fit.spec, start=card.fit.params)
        if f.converged:
            draws.append([f.params[n] for n in card.fit.free_names])
    arr = np.asarray(draws)
    q = [(1 - level) / 2, (1 + level) / 2]
    out = pd.DataFrame(np.quantile(arr, q, axis=0).T if len(arr) else np.full((len(card.fit.free_names), 2), np.nan),
                       index=card.fit.free_names, columns=["lo", "hi"])
    out["n_ok"] = len(arr)
    return out


def refit(card: CardFit, d: PolicyData, covariance: bool = True) -> CardFit:
    """The final fit of ``card``'s terms and change points on other draws of the same steps (typically more of
    them: the simulated likelihood's bias shrinks with the number of draws, while the change points and the
    model choice, sharply identified, are found on fewer)."""
    f = RM.fit(d, card.fit.change_points, card.fit.spec, start=card.fit.params, covariance=covariance)
    return CardFit(f, card.profiles, card.intervals, card.selection)
