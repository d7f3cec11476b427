"""Reward functions for RL on trading analyses, with the values of ``rlhf_config.yaml``.

* **process**: per step, ``correct_step`` if every claim of the step is true else ``incorrect_step``,
  weighted by the step weights (``process_reward``); or the same with a process reward model's step
  probabilities in place of the verifier's verdicts (``process_reward_from_probs``).
* **outcome**: the realised result of following the analysis' signal on the replayed market:
  ``profitable_trade`` / ``losing_trade``; a HOLD earns ``avoided_loss`` when the trade the facts pointed
  to would have lost.
* **calibration**: ``high_confidence_correct`` for a confident (>= 0.7) winner, ``low_confidence_incorrect``
  for an unconfident (< 0.5) loser.
* **mentions**: the guide's step-specific rewards for mentioning RSI, MACD, Bollinger bands and support /
  resistance. **Guard against reward hacking**: a mention pays only in a step whose claims are all true,
  so stuffing keywords into a false analysis earns nothing (``guarded=False`` gives the naive version
  the notebook uses to show what the guard prevents).

Every function takes analysis texts and their facts (and outcomes where needed) and returns floats, so
the same functions score held-out analyses and serve as trl ``GRPOTrainer`` reward functions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from workbench.analysis import STEPS, Facts, StepVerifier, implied_direction, split_steps
from workbench.rlconfig import RLConfig

MENTIONS = {"mentions_rsi": (r"\bRSI\b", "technical_analysis"),
            "mentions_macd": (r"\bMACD\b", "technical_analysis"),
            "mentions_bollinger": (r"\bBollinger\b", "technical_analysis"),
            "mentions_support_resistance": (r"\bsupport\b.{0,40}?\bresistance\b|\bresistance\b.{0,40}?\bsupport\b",
                                            "market_context")}  # bounded, not [^.]*: prices have decimal points


@dataclass(frozen=True)
class Scheme:
    """Weights of the reward components (the schemes compared in notebook 07)."""

    process: float = 1.0
    outcome: float = 1.0
    calibration: float = 1.0
    mentions: float = 1.0
    guarded: bool = True

    @classmethod
    def named(cls, name: str) -> "Scheme":
        schemes = {"outcome-only": cls(process=0.0, outcome=1.0, calibration=0.0, mentions=0.0),
                   "process-only": cls(process=1.0, outcome=0.0, calibration=0.0, mentions=1.0),
                   "combined": cls(process=1.0, outcome=1.0, calibration=1.0, mentions=1.0)}
        if name not in schemes:
            raise ValueError(f"unknown scheme {name!r}; known: {sorted(schemes)}")
        return schemes[name]


def process_reward(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig) -> np.ndarray:
    """``sum_s w_s * (correct_step if step s is true else incorrect_step)``; a missing step is incorrect."""
    ver = StepVerifier(cfg.verifier)
    r = cfg.rewards
    out = np.empty(len(texts))
    for i, (t, f) in enumerate(zip(texts, facts)):
        ok = ver.verify(t, f).step_ok
        out[i] = sum(cfg.step_weight(s) * (r.correct_step if ok[s] else r.incorrect_step) for s in STEPS)
    return out


def process_reward_from_probs(step_probs: np.ndarray, cfg: RLConfig) -> np.ndarray:
    """Expected process reward under a process reward model's step probabilities ``(n, 4)``."""
    r = cfg.rewards
    p = np.nan_to_num(np.asarray(step_probs, float))
    w = np.array([cfg.step_weight(s) for s in STEPS])
    return (p * r.correct_step + (1 - p) * r.incorrect_step) @ w


def mention_reward(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig, guarded: bool = True) -> np.ndarray:
    """The guide's step-specific keyword rewards; ``guarded``: only in steps whose claims are all true."""
    ver = StepVerifier(cfg.verifier)
    table = cfg.rewards.step_specific
    out = np.zeros(len(texts))
    for i, (t, f) in enumerate(zip(texts, facts)):
        steps = split_steps(t)
        ok = ver.verify(t, f).step_ok if guarded else dict.fromkeys(STEPS, True)
        for name, (pattern, step) in MENTIONS.items():
            if ok.get(step, False) and re.search(pattern, steps.get(step, ""), re.I):
                out[i] += getattr(table, name)
    return out


def outcome_reward(signals: Sequence[str | None], returns: Sequence[float], alternative_returns: Sequence[float],
                   cfg: RLConfig) -> np.ndarray:
    """``profitable_trade`` / ``losing_trade`` for a trade by the sign of its return; for a HOLD,
    ``avoided_loss`` if the alternative trade (the one the facts pointed to) lost, else 0. An unparseable
    analysis (no signal) gets ``losing_trade``."""
    r = cfg.rewards
    out = np.zeros(len(signals))
    for i, (s, ret, alt) in enumerate(zip(signals, returns, alternative_returns)):
        if s is None:
            out[i] = r.losing_trade
        elif s == "HOLD":
            out[i] = r.avoided_loss if np.isfinite(alt) and alt < 0 else 0.0
        elif np.isfinite(ret):
            out[i] = r.profitable_trade if ret > 0 else (r.losing_trade if ret < 0 else 0.0)
    return out


def calibration_reward(signals: Sequence[str | None], confidences: Sequence[float | None], returns: Sequence[float],
                       cfg: RLConfig) -> np.ndarray:
    """``high_confidence_correct`` for confidence >= 0.7 on a winning trade, ``low_confidence_incorrect`` for
    confidence < 0.5 on a losing one, 0 otherwise (HOLDs and unparseable analyses included)."""
    r = cfg.rewards
    out = np.zeros(len(signals))
    for i, (s, c, ret) in enumerate(zip(signals, confidences, returns)):
        if s in (None, "HOLD") or c is None or not np.isfinite(ret):
            continue
        if c >= 0.7 and ret > 0:
            out[i] = r.high_confidence_correct
        elif c < 0.5 and ret < 0:
            out[i] = r.low_confidence_incorrect
    return out


@dataclass
class Scored:
    """All components for a batch of analyses (arrays of length n) and the parsed decisions."""

    process: np.ndarray
    outcome: np.ndarray
    calibration: np.ndarray
    mentions: np.ndarray
    naive_mentions: np.ndarray
    signals: list[str | None]
    confidences: list[float | None]
    returns: np.ndarray
    true_step_share: np.ndarray
    self_consistent: np.ndarray

    def total(self, scheme: Scheme) -> np.ndarray:
        m = self.mentions if scheme.guarded else self.naive_mentions
        return scheme.process * self.process + scheme.outcome * self.outcome + scheme.calibration * self.calibration \
            + scheme.mentions * m


OutcomeFn = Callable[[str, Facts, dict[str, Any]], tuple[float, float]]


def score(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig, outcome_fn: OutcomeFn | None = None,
          extras: Sequence[dict[str, Any]] | None = None) -> Scored:
    """Every reward component of each analysis.

    ``outcome_fn(text, facts, extra) -> (return of following the analysis' signal, return of the
    alternative trade)``; without it, outcome and calibration rewards are 0 (returns NaN).
    """
    ver = StepVerifier(cfg.verifier)
    extras = extras or [{} for _ in texts]
    verdicts = [ver.verify(t, f) for t, f in zip(texts, facts)]
    signals = [v.parsed.get("signal") for v in verdicts]
    confs = [v.parsed.get("confidence") for v in verdicts]
    rets, alts = np.full(len(texts), np.nan), np.full(len(texts), np.nan)
    if outcome_fn is not None:
        for i, (t, f, e) in enumerate(zip(texts, facts, extras)):
            rets[i], alts[i] = outcome_fn(t, f, e)
    r = cfg.rewards
    process = np.array([sum(cfg.step_weight(s) * (r.correct_step if v.step_ok[s] else r.incorrect_step) for s in STEPS)
                        for v in verdicts])
    return Scored(process=process, outcome=outcome_reward(signals, rets, alts, cfg),
                  calibration=calibration_reward(signals, confs, rets, cfg),
                  mentions=mention_reward(texts, facts, cfg, guarded=True),
                  naive_mentions=mention_reward(texts, facts, cfg, guarded=False), signals=signals, confidences=confs,
                  returns=rets, true_step_share=np.array([v.true_step_share for v in verdicts]),
                  self_consistent=np.array([v.self_consistent for v in verdicts]))


def alternative_signal(f: Facts, cfg: RLConfig) -> str:
    """The trade the facts point to (used to credit a HOLD that avoided its loss)."""
    return "BUY" if implied_direction(f, cfg.verifier) >= 0 else "SELL"


def facts_column(values: Sequence[Any]) -> list[Facts]:
    """Facts from a dataset column of JSON strings or dicts (as trl passes extra columns)."""
    return [Facts(**(json.loads(v) if isinstance(v, str) else v)) for v in values]
