"""The analyst: four-step analyses written from facts, with controlled mistakes so that step quality
varies and the verifier has ground truth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from workbench.analysis.facts import MISTAKES, SIGNALS, STEP_TITLES, Facts
from workbench.analysis.rlconfig import STEPS, VerifierSettings

# ------------------------------------------------------------------------------------------------
# Prompt and analysis text
# ------------------------------------------------------------------------------------------------
#: Prompt styles: ``full`` (notebook 05's contract: market slug, the request to write the analysis) and
#: ``aligned`` (the facts in the order and phrases the analysis restates them, the gap fair - mid in cents
#: added, no slug or request; copying a number becomes a lookup of the same phrase in the prompt).
PROMPT_STYLES = ("full", "aligned")


def prompt_from_facts(f: Facts, style: str = "full") -> str:
    """The numbers an analyst (or a language model) gets; the completion is the four-step analysis.

    ``style``: one of :data:`PROMPT_STYLES`. Both carry the same facts (the aligned one adds the gap in cents,
    a function of two of them)."""
    pos = "flat" if abs(f.position) < 1e-9 else f"{f.position:+.0f} Up-equivalent shares"
    if style == "aligned":
        gap_c = (f.fair - f.up_mid) * 100  # one decimal: the pricing word compares it with a 3-cent threshold
        return (f"RSI(14) is {f.rsi:.1f}. MACD histogram is {f.macd_bp:+.1f} bp. Bollinger width is {f.bb_width_pct:.2f}%. "
                f"Volatility is {f.vol_pct:.3f}% per minute. Up bid {f.up_bid:.2f} ask {f.up_ask:.2f}. "
                f"BTC is {'up' if f.btc_move_pct >= 0 else 'down'} {abs(f.btc_move_pct):.2f}%, {f.minutes_left:.1f} "
                f"minutes left. Up trades at {f.up_mid:.2f}, fair value of {f.fair:.2f}, gap {gap_c:+.1f} cents. "
                f"Support {f.range_low:.2f}, resistance {f.range_high:.2f}. Position: {pos}. Capital {f.capital:.0f} USDC.")
    if style != "full":
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    return (f"Market {f.market}, {f.minutes_left:.1f} minutes left. BTC {f.btc_move_pct:+.2f}% since the open. "
            f"Up bid {f.up_bid:.2f} ask {f.up_ask:.2f}; fair value {f.fair:.2f}. RSI(14) {f.rsi:.1f}; "
            f"MACD histogram {f.macd_bp:+.1f} bp; Bollinger width {f.bb_width_pct:.2f}%; volatility "
            f"{f.vol_pct:.3f}% per minute; 5-minute Up range {f.range_low:.2f}-{f.range_high:.2f}. "
            f"Position: {pos}. Capital {f.capital:.0f} USDC. Write the four-step analysis.")


@dataclass
class TradeParams:
    """The decision an analysis ends with (Up-equivalent)."""

    signal: str  # BUY / SELL / HOLD
    confidence: float
    size: float  # shares
    entry: float  # Up price paid (ask) or received (bid); the mid for HOLD
    stop: float
    take_profit: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Analysis:
    """A written analysis: full text, text per step, its decision and the mistakes injected (if any)."""

    text: str
    steps: dict[str, str]
    params: TradeParams
    mistakes: dict[str, str] = field(default_factory=dict)  # mistake -> step it was put in


def _label_rsi(rsi: float, v: VerifierSettings) -> str:
    return "overbought" if rsi > v.rsi_overbought else ("oversold" if rsi < v.rsi_oversold else "neutral")


def _label_bb(w_pct: float, v: VerifierSettings) -> str:
    w = w_pct / 100
    return "narrow" if w < v.bb_narrow else ("wide" if w > v.bb_wide else "normal")


def _label_vol(vol_pct: float, v: VerifierSettings) -> str:
    x = vol_pct / 100
    return "low" if x < v.vol_low else ("high" if x > v.vol_high else "normal")


def _label_gap(gap: float, v: VerifierSettings) -> str:
    return "underpriced" if gap >= v.gap_neutral else ("overpriced" if gap <= -v.gap_neutral else "fairly priced")


def implied_direction(f: Facts, v: VerifierSettings) -> int:
    """Votes of the facts: mispricing (weight 2), MACD sign (1), RSI extremes (contrarian, 1)."""
    votes = 0
    if abs(f.gap) >= v.gap_neutral:
        votes += 2 * int(np.sign(f.gap))
    votes += int(np.sign(f.macd_bp)) if abs(f.macd_bp) > 0.05 else 0
    votes += -1 if f.rsi > v.rsi_overbought else (1 if f.rsi < v.rsi_oversold else 0)
    return votes


def signal_consistent(signal: str, votes: int) -> bool:
    """BUY needs bullish votes, SELL bearish ones, HOLD a weak or mixed picture (|votes| <= 2)."""
    return (signal == "BUY" and votes >= 1) or (signal == "SELL" and votes <= -1) or (signal == "HOLD" and abs(votes) <= 2)


class Analyst:
    """Writes four-step analyses from facts, by rule; optionally with controlled mistakes.

    Its own signal: BUY when the facts vote bullish by 2 or more, SELL when bearish by 2 or more, else
    HOLD; confidence grows with the mispricing; the size puts ``confidence x`` the risk budget
    (``max_risk_fraction x capital``) between the entry and a stop ``stop_distance`` away.
    """

    def __init__(self, settings: VerifierSettings | None = None, seed: int = 0, stop_distance: float = 0.10,
                 take_profit_distance: float = 0.15) -> None:
        self.v = settings or VerifierSettings()
        self.rng = np.random.default_rng(seed)
        self.stop_distance = stop_distance
        self.tp_distance = take_profit_distance

    def decide(self, f: Facts, signal: str | None = None, stop_distance: float | None = None,
               take_profit_distance: float | None = None, size_fraction: float = 1.0) -> TradeParams:
        """The analyst's decision (or the parameters of a given ``signal`` chosen by someone else).

        ``stop_distance`` / ``take_profit_distance`` (Up-price units) override the analyst's for this decision;
        ``size_fraction`` in (0, 1] takes that share of the risk-budget size (so the risk rule still holds)."""
        votes = implied_direction(f, self.v)
        if signal is None:
            signal = "BUY" if votes >= 2 else ("SELL" if votes <= -2 else "HOLD")
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
        strength = math.tanh(abs(f.gap) / 0.08)
        if signal == "HOLD":
            conf = round(0.5 + 0.15 * (1 - strength), 2)
            return TradeParams("HOLD", conf, 0.0, round(f.up_mid, 3), round(f.up_mid, 2), round(f.up_mid, 2))
        conf = round(0.5 + 0.4 * strength, 2)
        entry = f.up_ask if signal == "BUY" else f.up_bid
        sgn = 1 if signal == "BUY" else -1
        stop_d = self.stop_distance if stop_distance is None else stop_distance
        tp_d = self.tp_distance if take_profit_distance is None else take_profit_distance
        # an Up share is worth 0 to 1 (its settlement values): a stop or target at 0.00 / 1.00 is a real level, and
        # clipping them to the quotable 0.01-0.99 would put one on the entry itself for an entry at 0.01 or 0.99
        # (a target that is no gain), which the verifier rightly rejects
        stop = round(min(max(entry - sgn * stop_d, 0.0), 1.0), 2)
        tp = round(min(max(entry + sgn * tp_d, 0.0), 1.0), 2)
        budget = self.v.max_risk_fraction * f.capital * conf
        size = float(max(1, math.floor(size_fraction * budget / max(abs(entry - stop), 0.01))))
        return TradeParams(signal, conf, size, round(entry, 2), stop, tp)

    def write(self, f: Facts, signal: str | None = None, mistakes: Iterable[str] = (), **risk: Any) -> Analysis:
        """The analysis of ``f``. ``signal`` forces the decision (e.g. to explain another agent's
        action); ``mistakes`` injects errors from ``MISTAKES``; ``risk`` overrides the trade's stop, take
        profit and size (the keywords of :meth:`decide`), and the analysis states them."""
        mistakes = list(mistakes)
        unknown = set(mistakes) - set(MISTAKES)
        if unknown:
            raise ValueError(f"unknown mistakes {sorted(unknown)}; known: {MISTAKES}")
        v, rng = self.v, self.rng
        p = self.decide(f, signal, **risk)
        injected: dict[str, str] = {}
        if "inconsistent_signal" in mistakes:
            votes = implied_direction(f, v)
            flipped = "SELL" if votes > 0 else ("BUY" if votes < 0 else rng.choice(["BUY", "SELL"]))
            if abs(votes) <= 2 and p.signal != "HOLD":  # a HOLD-compatible picture: a strong call against it
                flipped = "SELL" if p.signal == "BUY" else "BUY"
            if not signal_consistent(str(flipped), votes):
                p = self.decide(f, str(flipped), **risk)
                injected["inconsistent_signal"] = "signal_generation"
        if "risk_violation" in mistakes and p.signal != "HOLD":
            p.size = float(math.ceil(p.size * 3.5))
            injected["risk_violation"] = "risk_assessment"
        # values and labels as written (possibly wrong)
        rsi, vol, fair, bb, macd = f.rsi, f.vol_pct, f.fair, f.bb_width_pct, f.macd_bp
        rsi_lab, vol_lab, gap_lab = _label_rsi(f.rsi, v), _label_vol(f.vol_pct, v), _label_gap(f.gap, v)
        macd_lab = "bullish momentum" if f.macd_bp > 0 else "bearish momentum"
        if "wrong_value" in mistakes:
            where = rng.choice(["technical_analysis", "risk_assessment", "market_context"])
            if where == "technical_analysis":
                shift = rng.uniform(8, 20)
                rsi = rsi + shift if rsi + shift <= 99 else rsi - shift
                rsi_lab = _label_rsi(rsi, v)  # the label follows the wrong number: only the value is false
            elif where == "risk_assessment":
                vol = vol * rng.choice([0.5, 1.8])
                vol_lab = _label_vol(vol, v)
            else:  # shift towards the side with room, so the written value really is wrong
                shift = rng.uniform(0.10, 0.25)
                fair = fair + shift if fair + shift <= 0.99 else fair - shift
            injected["wrong_value"] = str(where)
        if "contradiction" in mistakes:
            where = rng.choice(["technical_analysis", "risk_assessment", "market_context"])
            if where == "technical_analysis":
                rsi_lab = {"overbought": "oversold", "oversold": "overbought", "neutral": "overbought"}[rsi_lab]
            elif where == "risk_assessment":
                vol_lab = {"low": "high", "high": "low", "normal": "high"}[vol_lab]
            else:
                gap_lab = {"underpriced": "overpriced", "overpriced": "underpriced",
                           "fairly priced": "underpriced"}[gap_lab]
            injected["contradiction"] = str(where)
        gap_written = fair - f.up_mid
        steps = {
            "technical_analysis": (f"RSI(14) is {rsi:.1f}, {rsi_lab}. MACD histogram is {macd:+.1f} bp of price, "
                                   f"{macd_lab}. Bollinger width is {bb:.2f}%, {_label_bb(bb, v)} bands."),
            "risk_assessment": f"Volatility is {vol:.3f}% per minute, {vol_lab}. " + self._risk_sentence(p, f),
            "market_context": (f"BTC is {'up' if f.btc_move_pct >= 0 else 'down'} {abs(f.btc_move_pct):.2f}% since the "
                               f"market opened, {f.minutes_left:.1f} minutes left. Up trades at {f.up_mid:.2f} against "
                               f"a fair value of {fair:.2f}, {gap_lab}"
                               + (f" by {abs(gap_written) * 100:.0f} cents" if gap_lab != "fairly priced" else "")
                               + f". Support {f.range_low:.2f}, resistance {f.range_high:.2f}."),
            "signal_generation": (f"{p.signal}, confidence {p.confidence:.2f}, size {p.size:.0f} shares, "
                                  f"stop loss {p.stop:.2f}, take profit {p.take_profit:.2f}."),
        }
        text = "\n".join(f"Step {i} - {STEP_TITLES[s]}: {steps[s]}" for i, s in enumerate(STEPS, 1))
        return Analysis(text, steps, p, injected)

    def _risk_sentence(self, p: TradeParams, f: Facts) -> str:
        if p.signal == "HOLD":
            return "No position is opened, so nothing is at risk."
        risk = p.size * abs(p.entry - p.stop)
        frac = risk / f.capital
        verb = "Buying" if p.signal == "BUY" else "Selling"
        within = "within" if frac <= self.v.max_risk_fraction + 1e-9 else "above"
        return (f"{verb} {p.size:.0f} shares of Up at {p.entry:.2f} with a stop at {p.stop:.2f} risks {risk:.2f} USDC, "
                f"{100 * frac:.1f}% of capital, {within} the {100 * self.v.max_risk_fraction:.0f}% limit.")
