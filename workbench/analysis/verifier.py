"""The step verifier: parse an analysis and check every claim against the facts; a step is correct when all
its claims are true (the step-level labels of "Let's Verify Step by Step", Lightman et al., 2023).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench.analysis.analyst import (_label_bb, _label_gap, _label_rsi, _label_vol, implied_direction,
                                        signal_consistent)
from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import STEPS, VerifierSettings


# ------------------------------------------------------------------------------------------------
# Verifier
# ------------------------------------------------------------------------------------------------
@dataclass
class Claim:
    step: str
    name: str
    ok: bool
    detail: str


@dataclass
class Verification:
    """Per-step verdicts of one analysis."""

    claims: list[Claim]
    step_ok: dict[str, bool]
    parsed: dict[str, Any]
    self_consistent: bool  # the signal agrees with the analysis' own steps
    well_formed: bool  # all four steps present and parseable

    @property
    def true_step_share(self) -> float:
        return float(np.mean(list(self.step_ok.values()))) if self.step_ok else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step_ok": self.step_ok, "self_consistent": self.self_consistent, "well_formed": self.well_formed,
                "true_step_share": self.true_step_share,
                "claims": [asdict(c) for c in self.claims]}


_NUM = r"([+-]?\d+(?:\.\d+)?)"
_STEP_RE = re.compile(r"Step\s*(\d)\s*-\s*([A-Za-z ]+):\s*(.*?)(?=\s*Step\s*\d\s*-|\Z)", re.S)


def split_steps(text: str) -> dict[str, str]:
    """Step name -> its text, for the steps present (by number 1-4)."""
    out = {}
    for m in _STEP_RE.finditer(text):
        k = int(m.group(1))
        if 1 <= k <= 4 and STEPS[k - 1] not in out:
            out[STEPS[k - 1]] = m.group(3).strip()
    return out


class StepVerifier:
    """Checks every claim of an analysis against the facts at decision time.

    Claims checked. Every step must state its *required* claims -- a missing one is a false claim
    (``*_present``), so a terse analysis cannot pass: the RSI, MACD and Bollinger values (step 1); the
    volatility and either a sized trade or "no position" (step 2); the BTC move, the minutes left, the Up
    price and fair value, support and resistance (step 3); the signal and confidence, and for a trade its
    size and stop loss (step 4). A label that is stated is checked; a label left out is not required.

    * technical analysis: RSI value and label (overbought > 70, oversold < 30), MACD sign word, MACD
      value, Bollinger width value and label.
    * risk assessment: volatility value and label; for a trade, the risk arithmetic (size x |entry -
      stop|), the capital share, the risk rule (``max_risk_fraction``) and the "within/above" word.
    * market context: BTC direction and move, minutes left, the Up price, the fair value, the
      under/over-pricing word, support <= price <= resistance and their values.
    * trading signal: a known signal, confidence in [0, 1], stop and take profit on the right sides of
      the entry, size/stop equal to the risk step's, and the signal consistent with the facts' votes
      (the same rule the steps' claims support). A HOLD must justify itself: size 0, no sized trade in the
      risk step, and (as any signal) consistent with the facts.
    """

    def __init__(self, settings: VerifierSettings | None = None) -> None:
        self.v = settings or VerifierSettings()

    def verify(self, text: str, f: Facts) -> Verification:
        v = self.v
        steps = split_steps(text)
        claims: list[Claim] = []
        parsed: dict[str, Any] = {}

        def claim(step: str, name: str, ok: bool, detail: str) -> None:
            claims.append(Claim(step, name, bool(ok), detail))

        def num(pattern: str, s: str) -> float | None:
            m = re.search(pattern, s, re.I)
            return float(m.group(1)) if m else None

        # ---- step 1
        s1 = steps.get("technical_analysis", "")
        rsi = num(r"RSI(?:\(14\))?\s*(?:is|of|at)?\s*" + _NUM, s1)
        if rsi is None:
            claim("technical_analysis", "rsi_present", False, "no RSI value")
        else:
            claim("technical_analysis", "rsi_value", abs(rsi - f.rsi) <= v.rsi_tolerance, f"{rsi} vs {f.rsi:.1f}")
            lab = re.search(r"RSI(?:\(14\))?\s*(?:is|of|at)?\s*[+-]?\d+(?:\.\d+)?\s*,?\s*(?:and\s+)?"
                            r"(overbought|oversold|neutral)", s1, re.I)
            if lab:
                word = lab.group(1).lower()
                claim("technical_analysis", "rsi_label", word == _label_rsi(f.rsi, v), f"'{word}' with RSI {f.rsi:.1f}")
        macd = num(r"MACD histogram\s*(?:is|of|at)?\s*" + _NUM, s1)
        if macd is None:
            claim("technical_analysis", "macd_present", False, "no MACD histogram value")
        else:
            claim("technical_analysis", "macd_value", abs(macd - f.macd_bp) <= max(0.1, v.relative_tolerance * abs(f.macd_bp)),
                  f"{macd} vs {f.macd_bp:.2f} bp")
        for word, sign in (("bullish", 1), ("bearish", -1)):
            if re.search(rf"\b{word}\b", s1, re.I):
                claim("technical_analysis", "macd_direction", np.sign(f.macd_bp) == sign or abs(f.macd_bp) < 0.05,
                      f"'{word}' with MACD {f.macd_bp:+.2f} bp")
        bb = num(r"Bollinger width\s*(?:is|of|at)?\s*" + _NUM, s1)
        if bb is None:
            claim("technical_analysis", "bb_present", False, "no Bollinger width value")
        else:
            claim("technical_analysis", "bb_value", abs(bb - f.bb_width_pct) <= max(0.01, v.relative_tolerance * f.bb_width_pct),
                  f"{bb}% vs {f.bb_width_pct:.2f}%")
            for word in ("narrow", "normal", "wide"):
                if re.search(rf"\b{word}\b bands", s1, re.I):
                    claim("technical_analysis", "bb_label", word == _label_bb(f.bb_width_pct, v), f"'{word}' bands")
        # ---- step 2
        s2 = steps.get("risk_assessment", "")
        vol = num(r"Volatility\s*(?:is|of|at)?\s*" + _NUM, s2)
        if vol is None:
            claim("risk_assessment", "vol_present", False, "no volatility value")
        else:
            claim("risk_assessment", "vol_value", abs(vol - f.vol_pct) <= max(0.001, v.relative_tolerance * f.vol_pct),
                  f"{vol}% vs {f.vol_pct:.3f}%")
            for word in ("low", "normal", "high"):
                if re.search(rf"per minute,\s*{word}\b", s2, re.I):
                    claim("risk_assessment", "vol_label", word == _label_vol(f.vol_pct, v), f"'{word}' volatility")
        trade = re.search(r"(Buying|Selling)\s+" + _NUM + r"\s+shares[^.]*?at\s+" + _NUM + r"\s+with a stop at\s+" + _NUM +
                          r"\s+risks\s+" + _NUM + r"\s+USDC,\s*" + _NUM + r"% of capital,\s*(within|above)", s2, re.I)
        if trade:
            side, size, entry, stop, risk, pct, word = (trade.group(1).lower(), float(trade.group(2)), float(trade.group(3)),
                                                        float(trade.group(4)), float(trade.group(5)), float(trade.group(6)),
                                                        trade.group(7).lower())
            parsed.update(risk_side=side, risk_size=size, risk_entry=entry, risk_stop=stop)
            true_entry = f.up_ask if side == "buying" else f.up_bid
            claim("risk_assessment", "entry_price", abs(entry - true_entry) <= v.price_tolerance, f"{entry} vs {true_entry:.2f}")
            exact = size * abs(entry - stop)
            claim("risk_assessment", "risk_arithmetic", abs(risk - exact) <= max(0.01, 0.01 * exact), f"{risk} vs {exact:.2f}")
            claim("risk_assessment", "risk_share", abs(pct - 100 * risk / f.capital) <= 0.1, f"{pct}% of {f.capital:.0f}")
            within = exact <= v.max_risk_fraction * f.capital + 1e-9
            claim("risk_assessment", "risk_rule", within, f"risk {exact:.2f} vs limit {v.max_risk_fraction * f.capital:.2f}")
            claim("risk_assessment", "risk_rule_word", (word == "within") == within, f"says '{word}'")
        elif not re.search(r"No position is opened", s2, re.I):
            claim("risk_assessment", "risk_present", False, "neither a sized trade nor 'no position'")
        # ---- step 3
        s3 = steps.get("market_context", "")
        mv = re.search(r"BTC is (up|down)\s+" + _NUM + r"%", s3, re.I)
        if mv:
            signed = float(mv.group(2)) * (1 if mv.group(1).lower() == "up" else -1)
            claim("market_context", "btc_move", abs(signed - f.btc_move_pct) <= v.move_tolerance_pct,
                  f"{signed:+.2f}% vs {f.btc_move_pct:+.2f}%")
        else:
            claim("market_context", "btc_move_present", False, "no BTC move")
        mins = num(_NUM + r"\s*minutes left", s3)
        if mins is None:
            claim("market_context", "minutes_present", False, "no minutes left")
        else:
            claim("market_context", "minutes_left", abs(mins - f.minutes_left) <= v.minutes_tolerance,
                  f"{mins} vs {f.minutes_left:.1f}")
        px = num(r"Up trades at\s*" + _NUM, s3)
        fair = num(r"fair value of\s*" + _NUM, s3)
        if px is None or fair is None:
            claim("market_context", "prices_present", False, "no Up price or fair value")
        else:
            claim("market_context", "up_price", abs(px - f.up_mid) <= v.price_tolerance, f"{px} vs {f.up_mid:.3f}")
            claim("market_context", "fair_value", abs(fair - f.fair) <= 2 * v.price_tolerance, f"{fair} vs {f.fair:.3f}")
            for word in ("underpriced", "overpriced", "fairly priced"):
                if re.search(rf"\b{word}\b", s3, re.I):
                    claim("market_context", "pricing_word", word == _label_gap(f.gap, v), f"'{word}' with gap {f.gap:+.3f}")
        sup, res = num(r"Support\s*" + _NUM, s3), num(r"resistance\s*" + _NUM, s3)
        if sup is None or res is None:
            claim("market_context", "support_resistance_present", False, "no support and resistance")
        else:
            claim("market_context", "support_resistance",
                  abs(sup - f.range_low) <= v.price_tolerance and abs(res - f.range_high) <= v.price_tolerance,
                  f"{sup}-{res} vs {f.range_low:.2f}-{f.range_high:.2f}")
        # ---- step 4
        s4 = steps.get("signal_generation", "")
        sig = re.search(r"\b(BUY|SELL|HOLD)\b", s4)
        conf = num(r"confidence\s*" + _NUM, s4)
        size = num(r"size\s*" + _NUM, s4)
        stop = num(r"stop loss\s*" + _NUM, s4)
        tp = num(r"take profit\s*" + _NUM, s4)
        signal = sig.group(1) if sig else None
        parsed.update(signal=signal, confidence=conf, size=size, stop=stop, take_profit=tp)
        if signal is None or conf is None:
            claim("signal_generation", "signal_present", False, "no signal or confidence")
        else:
            claim("signal_generation", "confidence_range", 0.0 <= conf <= 1.0, f"confidence {conf}")
            votes = implied_direction(f, v)
            claim("signal_generation", "consistent_with_facts", signal_consistent(signal, votes), f"{signal} with votes {votes:+d}")
            if signal != "HOLD" and stop is not None and tp is not None:
                entry = f.up_ask if signal == "BUY" else f.up_bid
                good = (stop < entry < tp) if signal == "BUY" else (tp < entry < stop)
                claim("signal_generation", "stop_take_profit_sides", good, f"stop {stop} entry {entry:.2f} tp {tp}")
            if "risk_size" in parsed and size is not None:
                same = abs(parsed["risk_size"] - size) < 1e-9 and (stop is None or abs(parsed["risk_stop"] - stop) < 1e-9)
                side_ok = (parsed["risk_side"] == "buying") == (signal == "BUY") and signal != "HOLD"
                claim("signal_generation", "matches_risk_step", same and side_ok, "size/stop/side as in step 2")
            elif signal != "HOLD" and "risk_size" not in parsed:
                claim("signal_generation", "matches_risk_step", False, "a trade without a sized risk step")
            if signal != "HOLD":
                if size is None or stop is None:
                    claim("signal_generation", "size_stop_present", False, "a trade without a size or a stop loss")
            else:  # a HOLD justifies itself: no size, no sized trade in the risk step
                claim("signal_generation", "hold_no_size", size is not None and abs(size) < 1e-9,
                      "no size stated" if size is None else f"size {size} with HOLD")
                claim("signal_generation", "hold_no_risk", "risk_size" not in parsed,
                      "risk step says no position" if "risk_size" not in parsed else "HOLD after a sized trade")
        step_ok = {s: s in steps and all(c.ok for c in claims if c.step == s) for s in STEPS}
        self_consistent = self._self_consistent(steps, signal)
        return Verification(claims, step_ok, parsed, self_consistent, all(s in steps for s in STEPS))

    @staticmethod
    def _self_consistent(steps: dict[str, str], signal: str | None) -> bool:
        """Does the signal follow from what the analysis itself says (whether or not it is true)?"""
        if signal is None:
            return False
        votes = 0
        s1, s3 = steps.get("technical_analysis", ""), steps.get("market_context", "")
        if re.search(r"\bunderpriced\b", s3, re.I):
            votes += 2
        elif re.search(r"\boverpriced\b", s3, re.I):
            votes -= 2
        votes += 1 if re.search(r"\bbullish\b", s1, re.I) else (-1 if re.search(r"\bbearish\b", s1, re.I) else 0)
        votes += -1 if re.search(r"\boverbought\b", s1, re.I) else (1 if re.search(r"\boversold\b", s1, re.I) else 0)
        return signal_consistent(signal, votes)


def verify_many(texts: Sequence[str], facts: Sequence[Facts], settings: VerifierSettings | None = None) -> pd.DataFrame:
    """One row per analysis: step verdicts, true-step share, self-consistency, well-formedness."""
    ver = StepVerifier(settings)
    rows = []
    for text, f in zip(texts, facts):
        r = ver.verify(text, f)
        rows.append({**{f"ok_{s}": r.step_ok[s] for s in STEPS}, "true_step_share": r.true_step_share,
                     "self_consistent": r.self_consistent, "well_formed": r.well_formed,
                     "signal": r.parsed.get("signal"), "confidence": r.parsed.get("confidence")})
    return pd.DataFrame(rows)
