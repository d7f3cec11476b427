"""Curriculum for RL on trading analyses: clear, calm scenarios first, then mixed, then adversarial ones.

The difficulty of a decision point is read from its facts alone (no outcome, no look-ahead), as a weighted
mean of five components, each in [0, 1]:

* ``ambiguity``: a small mispricing, ``1 - min(|fair - mid| / (3 gap_neutral), 1)``: with |gap| >= 9 cents
  the facts point one way;
* ``volatility``: one-minute volatility between the verifier's ``vol_low`` (0) and ``vol_high`` (1);
* ``conflict``: the facts' votes (mispricing x 2, MACD sign, contrarian RSI; :func:`implied_direction`)
  disagree: ``2 min(bull, bear) / (bull + bear)``, 1 when they cancel;
* ``near_threshold``: share of the labels that sit within a hair of their threshold (RSI within 2 points
  of 70/30, |gap| within 1 cent of ``gap_neutral``, volatility and Bollinger width within 10 % of their
  bounds): a small copying error flips the label, which makes these the adversarial cases for the verifier;
* ``expiry``: little time left, ``1 - minutes_left / 15``.

Weights (``DIFFICULTY_WEIGHTS``): 0.30, 0.20, 0.25, 0.15, 0.10. The stages are the tertiles of the
difficulty over the pool: ``clear`` (lowest third), ``mixed``, ``adversarial`` (highest third).
:func:`curriculum` draws the same number of prompts from each stage (seeded) and orders them by stage,
then by difficulty, so an RL run that reads its prompts in order (``shuffle_dataset=False``) sees the easy
ones first (curriculum learning, Bengio et al. 2009).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import RLConfig, VerifierSettings

STAGES = ("clear", "mixed", "adversarial")
DIFFICULTY_WEIGHTS = {"ambiguity": 0.30, "volatility": 0.20, "conflict": 0.25, "near_threshold": 0.15, "expiry": 0.10}


def difficulty_components(f: Facts, v: VerifierSettings) -> dict[str, float]:
    """The five components of :data:`DIFFICULTY_WEIGHTS` for one decision point, each in [0, 1]."""
    gap = f.gap
    amb = 1.0 - min(abs(gap) / (3 * v.gap_neutral), 1.0)
    vol = float(np.clip((f.vol_pct / 100 - v.vol_low) / max(v.vol_high - v.vol_low, 1e-12), 0.0, 1.0))
    votes = []
    if abs(gap) >= v.gap_neutral:
        votes.append(2.0 * np.sign(gap))
    if abs(f.macd_bp) > 0.05:
        votes.append(float(np.sign(f.macd_bp)))
    if f.rsi > v.rsi_overbought:
        votes.append(-1.0)
    elif f.rsi < v.rsi_oversold:
        votes.append(1.0)
    bull, bear = sum(x for x in votes if x > 0), -sum(x for x in votes if x < 0)
    conflict = 2 * min(bull, bear) / (bull + bear) if bull + bear > 0 else 0.0
    w = f.bb_width_pct / 100
    near = [min(abs(f.rsi - v.rsi_overbought), abs(f.rsi - v.rsi_oversold)) < 2.0,
            abs(abs(gap) - v.gap_neutral) < 0.01,
            min(abs(f.vol_pct / 100 - v.vol_low) / v.vol_low, abs(f.vol_pct / 100 - v.vol_high) / v.vol_high) < 0.10,
            min(abs(w - v.bb_narrow) / v.bb_narrow, abs(w - v.bb_wide) / v.bb_wide) < 0.10]
    expiry = 1.0 - float(np.clip(f.minutes_left / 15.0, 0.0, 1.0))
    return {"ambiguity": float(amb), "volatility": vol, "conflict": float(conflict),
            "near_threshold": float(np.mean(near)), "expiry": expiry}


def difficulty_table(facts: Sequence[Facts], cfg: RLConfig) -> pd.DataFrame:
    """One row per decision point: the components, ``difficulty`` (their weighted mean, in [0, 1]) and
    ``stage`` (tertiles of the difficulty over these points)."""
    rows = [difficulty_components(f, cfg.verifier) for f in facts]
    df = pd.DataFrame(rows, columns=list(DIFFICULTY_WEIGHTS))
    w = pd.Series(DIFFICULTY_WEIGHTS)
    df["difficulty"] = df[list(w.index)].to_numpy() @ w.to_numpy() / w.sum() if len(df) else []
    df["stage"] = stage_of(df["difficulty"].to_numpy())
    return df


def stage_of(difficulty: np.ndarray) -> np.ndarray:
    """``clear`` / ``mixed`` / ``adversarial`` by the tertiles of ``difficulty`` (ties broken by rank)."""
    d = np.asarray(difficulty, float)
    if not len(d):
        return np.array([], dtype=object)
    if not np.isfinite(d).all():
        raise ValueError(f"difficulty is not finite for {int((~np.isfinite(d)).sum())} of {len(d)} decision points: "
                         "their facts are incomplete (NaN indicators); notebook 05 skips such steps, re-run it")
    rank = pd.Series(d).rank(method="first").to_numpy() - 1
    k = np.minimum((3 * rank / len(d)).astype(int), 2)
    return np.array(STAGES, dtype=object)[k]


def curriculum(points: pd.DataFrame, cfg: RLConfig, n: int | None = None, seed: int = 0,
               order: str = "curriculum") -> pd.DataFrame:
    """The RL prompts: ``n`` decision points (all when None) drawn evenly from the three stages, ordered.

    Parameters
    ----------
    points : decision points with a ``facts`` column (JSON of :class:`Facts`); only the rows given are used
        (pass the train/val periods: the RL prompts never come from the test period).
    cfg : the configuration (thresholds of the verifier).
    n : number of prompts; drawn ``n / 3`` per stage (the remainder from the earliest stages), seeded.
    order : ``"curriculum"`` (stage, then difficulty, ascending), ``"reverse"`` (hardest first) or
        ``"random"`` (a seeded shuffle: the control without a curriculum).

    Returns
    -------
    The chosen rows with the difficulty components, ``difficulty``, ``stage`` and ``order`` (0, 1, ...).
    """
    if order not in ("curriculum", "reverse", "random"):
        raise ValueError(f"order must be curriculum, reverse or random, got {order!r}")
    from workbench.rlhf.rewards import facts_column

    pts = points.reset_index(drop=True)
    table = difficulty_table(facts_column(pts["facts"]), cfg)
    full = pd.concat([pts, table], axis=1)
    rng = np.random.default_rng(seed)
    if n is not None and n < len(full):
        per = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
        chosen = []
        for s, k in zip(STAGES, per):
            idx = np.flatnonzero(full["stage"].to_numpy() == s)
            chosen.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
        sel = np.concatenate(chosen)
        short = n - len(sel)  # a stage with too few rows: fill from the rest
        if short > 0:
            rest = np.setdiff1d(np.arange(len(full)), sel)
            sel = np.concatenate([sel, rng.choice(rest, size=short, replace=False)])
        full = full.iloc[np.sort(sel)]
    rank = full["stage"].map({s: i for i, s in enumerate(STAGES)})
    if order == "random":
        full = full.iloc[rng.permutation(len(full))]
    else:
        full = full.assign(_r=rank).sort_values(["_r", "difficulty"], ascending=order == "curriculum",
                                                kind="stable").drop(columns="_r")
    return full.reset_index(drop=True).assign(order=lambda d: np.arange(len(d)))


#: The same function under a name that does not clash with the module (``workbench.rlhf.build_curriculum``).
build_curriculum = curriculum


def stage_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per stage: count, difficulty range and the mean of each component (what makes a stage hard)."""
    cols = list(DIFFICULTY_WEIGHTS) + ["difficulty"]
    g = table.groupby("stage", sort=False)
    out = g[cols].mean()
    out.insert(0, "n", g.size())
    out["min_difficulty"], out["max_difficulty"] = g["difficulty"].min(), g["difficulty"].max()
    return out.reindex([s for s in STAGES if s in out.index])
