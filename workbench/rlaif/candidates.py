"""Candidate decisions at a decision point: rule agents, the analyst (clean or with controlled mistakes),
and the trader twin at several target returns. Every candidate carries a four-step analysis: the analyst
writes it, explaining the candidate's own signal (which may then contradict the analysis' steps)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from workbench.analysis.analyst import Analyst, prompt_from_facts
from workbench.analysis.facts import MISTAKES, Facts
from workbench.rlaif.store import TradingDecision

Rule = Callable[[Facts], str]


def rule_momentum(f: Facts) -> str:
    """Follow the MACD histogram."""
    return "BUY" if f.macd_bp > 0.5 else ("SELL" if f.macd_bp < -0.5 else "HOLD")


def rule_fair_gap(f: Facts, threshold: float = 0.05) -> str:
    """Trade towards the fair value implied by BTC's move (the mispricing)."""
    return "BUY" if f.gap > threshold else ("SELL" if f.gap < -threshold else "HOLD")


def rule_contrarian_rsi(f: Facts) -> str:
    """Fade RSI extremes."""
    return "SELL" if f.rsi > 70 else ("BUY" if f.rsi < 30 else "HOLD")


RULES: dict[str, Rule] = {"rule:momentum": rule_momentum, "rule:fair_gap": rule_fair_gap,
                          "rule:contrarian_rsi": rule_contrarian_rsi}

TWIN_TO_SIGNAL = {0: "BUY", 1: "BUY", 2: "HOLD", 3: "SELL", 4: "SELL"}  # class id -> signal


def make_decision(f: Facts, time_ms: int, source: str, analyst: Analyst, signal: str | None = None,
                  mistakes: Sequence[str] = (), decision_point: int | None = None,
                  style: dict[str, float] | None = None) -> TradingDecision:
    """A decision with its analysis; ``signal=None`` lets the analyst decide. Sizes, stops and take
    profits follow the analyst's risk budget whoever chose the signal; ``style`` (from :func:`draw_style`)
    sets this candidate's stop and take-profit distances, its share of the risk budget and its holding time."""
    style = dict(style or {})
    hold_ms = style.pop("hold_ms", None)
    a = analyst.write(f, signal=signal, mistakes=mistakes, **style)
    p = a.params
    trade = p.signal != "HOLD"
    return TradingDecision(time=int(time_ms), symbol=f.market, action=p.signal, size=float(p.size),
                           confidence=float(p.confidence), features=f.numeric(), analysis=a.text, source=source,
                           entry_price=float(p.entry), stop_loss=float(p.stop) if trade else float("nan"),
                           take_profit=float(p.take_profit) if trade else float("nan"),
                           metadata={"prompt": prompt_from_facts(f), "mistakes": a.mistakes,
                                     "decision_point": decision_point, "facts": f.to_dict(),
                                     **({"hold_ms": int(hold_ms)} if hold_ms is not None else {})})


def draw_style(rng: np.random.Generator) -> dict[str, float]:
    """Trade parameters of one candidate beyond its action, so that two candidates with the same action still
    differ in outcome: stop distance 0.05-0.20, take-profit distance 0.05-0.30 (Up-price units), 40-100 % of
    the risk-budget size, holding time 3, 5, 10 or 15 minutes."""
    return {"stop_distance": round(float(rng.uniform(0.05, 0.20)), 2),
            "take_profit_distance": round(float(rng.uniform(0.05, 0.30)), 2),
            "size_fraction": round(float(rng.uniform(0.4, 1.0)), 2),
            "hold_ms": int(rng.choice([3, 5, 10, 15]) * 60_000)}


def candidates_at(f: Facts, time_ms: int, analyst: Analyst, rng: np.random.Generator, twin_actions: dict[str, int] | None = None,
                  mistake_sources: int = 2, decision_point: int | None = None, vary: bool = False,
                  agents: dict[str, int] | None = None) -> list[TradingDecision]:
    """All candidates at one decision point.

    * ``analyst``: the analyst's own decision, clean;
    * ``analyst:mistakes:<k>``: ``mistake_sources`` analyses with one or two random controlled mistakes;
    * the rule agents of :data:`RULES` (analysis written by the analyst for their signal);
    * ``twin@<name>``: the twin's class at each target return (``twin_actions[name]``);
    * ``<name>``: any other agent's class (``agents[name]``, e.g. ``{"ppo": ...}``: notebook 08's PPO agent).

    With ``vary=True`` every candidate but the clean analyst also draws its own stop, take profit, size and
    holding time (:func:`draw_style`).
    """
    def style() -> dict[str, float] | None:
        return draw_style(rng) if vary else None

    out = [make_decision(f, time_ms, "analyst", analyst, decision_point=decision_point)]
    for k in range(mistake_sources):
        ms = list(rng.choice(MISTAKES, size=int(rng.integers(1, 3)), replace=False))
        out.append(make_decision(f, time_ms, f"analyst:mistakes:{k}", analyst, mistakes=ms, decision_point=decision_point,
                                 style=style()))
    for name, rule in RULES.items():
        out.append(make_decision(f, time_ms, name, analyst, signal=rule(f), decision_point=decision_point, style=style()))
    for name, cls in (twin_actions or {}).items():
        out.append(make_decision(f, time_ms, f"twin@{name}", analyst, signal=TWIN_TO_SIGNAL[int(cls)],
                                 decision_point=decision_point, style=style()))
    for name, cls in (agents or {}).items():
        out.append(make_decision(f, time_ms, name, analyst, signal=TWIN_TO_SIGNAL[int(cls)],
                                 decision_point=decision_point, style=style()))
    return out
