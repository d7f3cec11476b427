"""Four-step trading analyses whose every claim can be checked: facts, an analyst, a verifier.

An analysis has four steps (the design's): technical analysis, risk assessment, market context and a
trading signal with confidence, position size, stop loss and take profit. Example::

    Step 1 - Technical analysis: RSI(14) is 63.4, neutral. MACD histogram is +1.2 bp of price, bullish
    momentum. Bollinger width is 0.42%, normal bands.
    Step 2 - Risk assessment: Volatility is 0.056% per minute, normal. Buying 60 shares of Up at 0.56
    with a stop at 0.46 risks 6.00 USDC, 1.2% of capital, within the 2% limit.
    Step 3 - Market context: BTC is up 0.12% since the market opened, 7.5 minutes left. Up trades at 0.55
    against a fair value of 0.63, underpriced by 8 cents. Support 0.50, resistance 0.60.
    Step 4 - Trading signal: BUY, confidence 0.72, size 60 shares, stop loss 0.46, take profit 0.70.

:class:`Facts` holds what was known at decision time (from notebook 04's causal step table and the
quotes). :class:`Analyst` writes analyses from facts and can be told to make controlled mistakes
(wrong values, contradictions, a signal against its own steps, a risk-rule violation), so step quality
varies and the verifier has ground truth. :class:`StepVerifier` parses an analysis and checks each
claim against the facts; a step is correct when all its claims are true (the step-level labels of
"Let's Verify Step by Step", Lightman et al., 2023).

Why hand-written: the claims are specific to this workbench's facts; no library verifies them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from workbench.rlconfig import STEPS, VerifierSettings

SIGNALS = ("BUY", "SELL", "HOLD")
STEP_TITLES = {"technical_analysis": "Technical analysis", "risk_assessment": "Risk assessment",
               "market_context": "Market context", "signal_generation": "Trading signal"}
MISTAKES = ("wrong_value", "contradiction", "inconsistent_signal", "risk_violation")


# ------------------------------------------------------------------------------------------------
# Facts
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    """What was known at decision time (all causal). Prices are Up-token probabilities."""

    time: str  # ISO UTC time of the decision
    market: str  # slug
    minutes_left: float  # to the market's end
    btc_move_pct: float  # BTC change since the market opened, percent
    up_bid: float
    up_ask: float
    fair: float  # Up probability implied by BTC's move, volatility and time left
    rsi: float  # RSI(14) of one-minute BTC closes
    macd_bp: float  # MACD histogram in basis points of the price
    bb_width_pct: float  # Bollinger width, percent of the middle band
    vol_pct: float  # one-minute Yang-Zhang volatility, percent
    range_low: float  # lowest Up mid of the last five minutes (support)
    range_high: float  # highest Up mid of the last five minutes (resistance)
    position: float = 0.0  # net Up-equivalent shares held
    capital: float = 500.0  # USDC

    @property
    def up_mid(self) -> float:
        return (self.up_bid + self.up_ask) / 2

    @property
    def gap(self) -> float:
        """Fair value minus the quoted mid: > 0 means Up looks cheap."""
        return self.fair - self.up_mid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def numeric(self) -> dict[str, float]:
        """Numeric features for reward models (no strings)."""
        d = {k: float(v) for k, v in asdict(self).items() if isinstance(v, (int, float))}
        d.update(up_mid=self.up_mid, gap=self.gap)
        return d


def facts_from_steps(steps: pd.DataFrame, quotes: Any, capital: float = 500.0) -> list[Facts]:
    """Facts for each row of a step table (``workbench.sequences.build_steps``), all causal.

    ``quotes`` is a :class:`workbench.backtest.QuoteBook`: the Up bid/ask are the quote strictly before
    the step's start, support/resistance the range of the Up mid over the five minutes before it.
    """
    out = []
    starts = steps.index.as_unit("ms").asi8
    for s, row in zip(starts, steps.itertuples()):
        bid, ask = quotes.quote(row.slug, int(s), strict=True)
        lo, hi = quotes.mid_range(row.slug, int(s) - 300_000, int(s))
        if not np.isfinite(lo):
            lo = hi = (bid + ask) / 2
        out.append(Facts(time=pd.Timestamp(int(s), unit="ms", tz="UTC").isoformat(), market=row.slug,
                         minutes_left=float(row.time_to_expiry) * 15.0,
                         btc_move_pct=100 * (row.btc_close / row.btc_open - 1),
                         up_bid=float(bid), up_ask=float(ask), fair=float(row.fair) if np.isfinite(row.fair) else 0.5,
                         rsi=float(row.rsi), macd_bp=float(row.macd_hist_norm) * 1e4,
                         bb_width_pct=float(row.bb_width) * 100, vol_pct=float(row.yz_vol) * 100,
                         range_low=float(lo), range_high=float(hi), position=float(row.inventory), capital=capital))
    return out


# ------------------------------------------------------------------------------------------------
# Prompt and analysis text
# ------------------------------------------------------------------------------------------------
def prompt_from_facts(f: Facts) -> str:
    """The numbers an analyst (or a language model) gets; the completion is the four-step analysis."""
    pos = "flat" if abs(f.position) < 1e-9 else f"{f.position:+.0f} Up-equivalent shares"
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

    def decide(self, f: Facts, signal: str | None = None) -> TradeParams:
        """The analyst's decision (or the parameters of a given ``signal`` chosen by someone else)."""
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
        stop = round(min(max(entry - sgn * self.stop_distance, 0.01), 0.99), 2)
        tp = round(min(max(entry + sgn * self.tp_distance, 0.01), 0.99), 2)
        budget = self.v.max_risk_fraction * f.capital * conf
        size = float(max(1, math.floor(budget / max(abs(entry - stop), 0.01))))
        return TradeParams(signal, conf, size, round(entry, 2), stop, tp)

    def write(self, f: Facts, signal: str | None = None, mistakes: Iterable[str] = ()) -> Analysis:
        """The analysis of ``f``. ``signal`` forces the decision (e.g. to explain another agent's
        action); ``mistakes`` injects errors from ``MISTAKES``."""
        mistakes = list(mistakes)
        unknown = set(mistakes) - set(MISTAKES)
        if unknown:
            raise ValueError(f"unknown mistakes {sorted(unknown)}; known: {MISTAKES}")
        v, rng = self.v, self.rng
        p = self.decide(f, signal)
        injected: dict[str, str] = {}
        if "inconsistent_signal" in mistakes:
            votes = implied_direction(f, v)
            flipped = "SELL" if votes > 0 else ("BUY" if votes < 0 else rng.choice(["BUY", "SELL"]))
            if abs(votes) <= 2 and p.signal != "HOLD":  # a HOLD-compatible picture: a strong call against it
                flipped = "SELL" if p.signal == "BUY" else "BUY"
            if not signal_consistent(str(flipped), votes):
                p = self.decide(f, str(flipped))
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

    Claims checked (a claim absent from a step is not a failure, but a step needs its core claims to be
    *well formed*; a missing core claim makes the step incorrect):

    * technical analysis: RSI value and label (overbought > 70, oversold < 30), MACD sign word, MACD
      value, Bollinger width value and label.
    * risk assessment: volatility value and label; for a trade, the risk arithmetic (size x |entry -
      stop|), the capital share, the risk rule (``max_risk_fraction``) and the "within/above" word.
    * market context: BTC direction and move, minutes left, the Up price, the fair value, the
      under/over-pricing word, support <= price <= resistance and their values.
    * trading signal: a known signal, confidence in [0, 1], stop and take profit on the right sides of
      the entry, size/stop equal to the risk step's, and the signal consistent with the facts' votes
      (the same rule the steps' claims support).
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
        if macd is not None:
            claim("technical_analysis", "macd_value", abs(macd - f.macd_bp) <= max(0.1, v.relative_tolerance * abs(f.macd_bp)),
                  f"{macd} vs {f.macd_bp:.2f} bp")
        for word, sign in (("bullish", 1), ("bearish", -1)):
            if re.search(rf"\b{word}\b", s1, re.I):
                claim("technical_analysis", "macd_direction", np.sign(f.macd_bp) == sign or abs(f.macd_bp) < 0.05,
                      f"'{word}' with MACD {f.macd_bp:+.2f} bp")
        bb = num(r"Bollinger width\s*(?:is|of|at)?\s*" + _NUM, s1)
        if bb is not None:
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
        if mins is not None:
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
        if sup is not None and res is not None:
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
