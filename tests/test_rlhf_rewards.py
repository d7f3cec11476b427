"""Reward functions of notebook 07 on crafted analyses, with hand-computed values (rlhf_config.yaml's table)."""

from __future__ import annotations

import numpy as np
import pytest
from test_analysis import FACTS, GOOD

from workbench.analysis import load_config
from workbench.rlhf import (Scheme, calibration_reward, mention_reward, outcome_reward, process_reward,
                            process_reward_from_probs, score)

CFG = load_config()
BAD_RSI = GOOD.replace("RSI(14) is 63.4, neutral", "RSI(14) is 80.0, overbought")  # one false step (technical)
# required claims left out: false under the verifier
TERSE = GOOD.replace(" MACD histogram is +1.2 bp of price, bullish momentum.", "") \
    .replace(" Bollinger width is 0.42%, normal bands.", "").replace(" Support 0.50, resistance 0.60.", "")


def test_process_reward_hand_computed():
    # all four steps true: sum of weights (1) x 0.5
    assert process_reward([GOOD], [FACTS], CFG)[0] == pytest.approx(0.5)
    # technical analysis false: 0.3 x (-0.2) + (0.25 + 0.2 + 0.25) x 0.5 = -0.06 + 0.35 = 0.29
    assert process_reward([BAD_RSI], [FACTS], CFG)[0] == pytest.approx(0.29)
    # nothing parseable: every step incorrect
    assert process_reward(["BUY now"], [FACTS], CFG)[0] == pytest.approx(-0.2)
    p = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    np.testing.assert_allclose(process_reward_from_probs(p, CFG), [0.5, 0.29, 0.15])


def test_outcome_and_calibration_rewards_hand_computed():
    np.testing.assert_allclose(outcome_reward(["BUY", "SELL", "HOLD", "HOLD", None], [0.05, -0.02, 0.0, 0.0, 0.1],
                                              [0, 0, -0.1, 0.1, 0], CFG), [0.5, -0.3, 0.2, 0.0, -0.3])
    np.testing.assert_allclose(calibration_reward(["BUY", "BUY", "SELL", "BUY", "HOLD"], [0.72, 0.45, 0.6, 0.9, 0.9],
                                                  [0.05, -0.05, 0.05, -0.05, 0.0], CFG), [0.3, 0.1, 0.0, 0.0, 0.0])


def test_keyword_rewards_cannot_outweigh_a_false_claim():
    # mentions in GOOD: RSI, MACD, Bollinger (technical step) and support/resistance (market context)
    assert mention_reward([GOOD], [FACTS], CFG)[0] == pytest.approx(0.4)
    # a false claim in the technical step voids its three mentions under the guard...
    assert mention_reward([BAD_RSI], [FACTS], CFG)[0] == pytest.approx(0.1)
    assert mention_reward([BAD_RSI], [FACTS], CFG, guarded=False)[0] == pytest.approx(0.4)
    s = score([GOOD, BAD_RSI, TERSE], [FACTS] * 3, CFG)
    naive, guarded = s.total(Scheme(outcome=0, calibration=0, guarded=False)), s.total(Scheme(outcome=0, calibration=0))
    # a terse analysis (MACD, Bollinger, support/resistance left out) is false: steps 1 and 3 miss required claims
    assert s.true_step_share.tolist() == [1.0, 0.75, 0.5]
    # the guard takes back what the keywords in the false step paid: 0.29 + 0.4 naive, 0.29 + 0.1 guarded
    np.testing.assert_allclose(naive, [0.9, 0.69, 0.25])
    np.testing.assert_allclose(guarded, [0.9, 0.39, 0.15])
    # no keyword payment lifts a false analysis to the true one's reward, under either scheme
    assert naive[0] > naive[1] > naive[2] and guarded[0] > guarded[1] > guarded[2]


def test_score_with_outcomes_and_schemes():
    def outcome_fn(text, facts, extra):
        return extra["ret"], extra["alt"]

    s = score([GOOD, GOOD], [FACTS, FACTS], CFG, outcome_fn, [{"ret": 0.04, "alt": 0.0}, {"ret": -0.04, "alt": 0.0}])
    np.testing.assert_allclose(s.outcome, [0.5, -0.3])
    np.testing.assert_allclose(s.calibration, [0.3, 0.0])  # confidence 0.72 and a winner
    np.testing.assert_allclose(s.total(Scheme.named("outcome-only")), [0.5, -0.3])
    np.testing.assert_allclose(s.total(Scheme.named("process-only")), [0.9, 0.9])  # 0.5 + mentions 0.4
    np.testing.assert_allclose(s.total(Scheme.named("combined")), [1.7, 0.6])
    with pytest.raises(ValueError, match="unknown scheme"):
        Scheme.named("vibes")
