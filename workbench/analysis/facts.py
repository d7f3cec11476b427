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

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

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
    """Facts for each row of a step table (``workbench.twin.steps.build_steps``), all causal.

    ``quotes`` is a :class:`workbench.twin.backtest.QuoteBook`: the Up bid/ask are the quote strictly before
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
