"""The four-step analysis contract: config validation, the analyst, the step verifier on crafted texts."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import analysis as A
from workbench.analysis import ConfigError, load_config

FACTS = A.Facts(time="2026-01-05T08:05:30+00:00", market="btc-updown-15m-1767600000", minutes_left=9.5,
                btc_move_pct=0.12, up_bid=0.54, up_ask=0.56, fair=0.63, rsi=63.4, macd_bp=1.2, bb_width_pct=0.42,
                vol_pct=0.056, range_low=0.50, range_high=0.60, position=0.0, capital=500.0)
GOOD = """Step 1 - Technical analysis: RSI(14) is 63.4, neutral. MACD histogram is +1.2 bp of price, bullish momentum. Bollinger width is 0.42%, normal bands.
Step 2 - Risk assessment: Volatility is 0.056% per minute, normal. Buying 60 shares of Up at 0.56 with a stop at 0.46 risks 6.00 USDC, 1.2% of capital, within the 2% limit.
Step 3 - Market context: BTC is up 0.12% since the market opened, 9.5 minutes left. Up trades at 0.55 against a fair value of 0.63, underpriced by 8 cents. Support 0.50, resistance 0.60.
Step 4 - Trading signal: BUY, confidence 0.72, size 60 shares, stop loss 0.46, take profit 0.70."""


# ---- config ---------------------------------------------------------------------------------------
def test_config_has_the_guides_values():
    c = load_config()
    assert (c.rlhf.learning_rate, c.rlhf.reward_learning_rate, c.rlhf.batch_size, c.rlhf.reward_epochs,
            c.rlhf.rl_epochs) == (1e-5, 1e-4, 4, 10, 5)
    assert c.process_supervision.steps == ("technical_analysis", "risk_assessment", "market_context",
                                           "signal_generation")
    assert c.process_supervision.step_weights == {"technical_analysis": 0.3, "risk_assessment": 0.25,
                                                  "market_context": 0.2, "signal_generation": 0.25}
    r = c.rewards
    assert (r.correct_step, r.incorrect_step, r.high_confidence_correct, r.low_confidence_incorrect,
            r.profitable_trade, r.losing_trade, r.avoided_loss) == (0.5, -0.2, 0.3, 0.1, 0.5, -0.3, 0.2)
    assert r.step_specific.mentions_rsi == 0.1 and r.step_specific.mentions_support_resistance == 0.1
    assert load_config(profile="cpu").rlhf.rl_epochs == 1


@pytest.mark.parametrize("patch,message", [
    ("rlhf:\n  learning_rate: 1.0e-5\n  momentum: 0.9\n", r"rlhf: unknown key\(s\) \['momentum'\]"),
    ("rlhf:\n  batch_size: four\n", r"rlhf.batch_size: expected an integer"),
    ("rlhf:\n  batch_size: 4.5\n", r"rlhf.batch_size: expected an integer"),
    ("rewards:\n  correct_step: yes\n", r"rewards.correct_step: expected a number"),
    ("extra_section: 1\n", r"unknown key\(s\) \['extra_section'\]"),
    ("process_supervision:\n  steps: [technical_analysis]\n", r"step_weights keys"),
    ("process_supervision:\n  step_weights: {technical_analysis: 0.5, risk_assessment: 0.25, market_context: 0.2,"
     " signal_generation: 0.25}\n", r"sum to 1"),
    ("cpu:\n  rlhf:\n    rl_epochs: many\n", r"cpu.rlhf.rl_epochs: expected an integer"),
])
def test_config_errors_name_the_key(tmp_path, patch, message):
    p = tmp_path / "bad.yaml"
    p.write_text(patch)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


# ---- verifier on crafted analyses -----------------------------------------------------------------------
def test_a_true_analysis_passes_every_claim():
    v = A.StepVerifier().verify(GOOD, FACTS)
    assert v.step_ok == dict.fromkeys(A.STEPS, True) and v.self_consistent and v.well_formed
    assert {c.name for c in v.claims} >= {"rsi_value", "rsi_label", "macd_direction", "bb_value", "vol_value",
                                         "risk_arithmetic", "risk_rule", "btc_move", "up_price", "fair_value",
                                         "pricing_word", "support_resistance", "consistent_with_facts",
                                         "matches_risk_step"}
    assert v.parsed["signal"] == "BUY" and v.parsed["confidence"] == 0.72


@pytest.mark.parametrize("old,new,bad_step,claim", [
    ("RSI(14) is 63.4, neutral", "RSI(14) is 66.0, neutral", "technical_analysis", "rsi_value"),
    ("RSI(14) is 63.4, neutral", "RSI(14) is 63.4, overbought", "technical_analysis", "rsi_label"),
    ("bullish momentum", "bearish momentum", "technical_analysis", "macd_direction"),
    ("0.42%, normal bands", "0.42%, wide bands", "technical_analysis", "bb_label"),
    ("0.056% per minute, normal", "0.070% per minute, normal", "risk_assessment", "vol_value"),
    ("risks 6.00 USDC, 1.2%", "risks 4.00 USDC, 0.8%", "risk_assessment", "risk_arithmetic"),
    ("BTC is up 0.12%", "BTC is down 0.12%", "market_context", "btc_move"),
    ("fair value of 0.63", "fair value of 0.80", "market_context", "fair_value"),
    ("underpriced by 8 cents", "overpriced by 8 cents", "market_context", "pricing_word"),
    ("Support 0.50", "Support 0.40", "market_context", "support_resistance"),
    ("take profit 0.70", "take profit 0.50", "signal_generation", "stop_take_profit_sides"),
    ("size 60 shares", "size 90 shares", "signal_generation", "matches_risk_step"),
])
def test_each_false_claim_fails_exactly_its_step(old, new, bad_step, claim):
    text = GOOD.replace(old, new)
    assert text != GOOD
    v = A.StepVerifier().verify(text, FACTS)
    assert not v.step_ok[bad_step]
    assert [c.name for c in v.claims if not c.ok] == [claim]
    assert all(ok for s, ok in v.step_ok.items() if s != bad_step)


def test_risk_rule_and_signal_consistency():
    big = GOOD.replace("Buying 60 shares", "Buying 150 shares").replace("risks 6.00 USDC, 1.2% of capital, within",
                                                                          "risks 15.00 USDC, 3.0% of capital, within")
    big = big.replace("size 60 shares", "size 150 shares")
    v = A.StepVerifier().verify(big, FACTS)
    assert {c.name for c in v.claims if not c.ok} == {"risk_rule", "risk_rule_word"}
    sell = GOOD.replace("BUY, confidence", "SELL, confidence")
    v = A.StepVerifier().verify(sell, FACTS)
    assert not v.step_ok["signal_generation"] and not v.self_consistent  # against its own steps and the facts
    hold = GOOD.replace("BUY, confidence 0.72, size 60", "HOLD, confidence 0.55, size 0")
    assert A.StepVerifier().verify(hold, FACTS).self_consistent is False  # underpriced + bullish: votes +3


def test_missing_steps_and_garbage():
    v = A.StepVerifier().verify("Step 1 - Technical analysis: RSI(14) is 63.4, neutral.", FACTS)
    assert not v.well_formed and not any(v.step_ok[s] for s in A.STEPS)
    # a true but terse step fails: MACD and Bollinger are required claims of step 1
    missing = {c.name for c in v.claims if c.step == "technical_analysis" and not c.ok}
    assert missing == {"macd_present", "bb_present"}
    full = A.StepVerifier().verify(GOOD, FACTS)
    assert full.step_ok["technical_analysis"]
    v = A.StepVerifier().verify("BUY BUY BUY to the moon", FACTS)
    assert v.true_step_share == 0.0 and not v.self_consistent


def test_analyst_clean_and_with_each_mistake():
    analyst, ver = A.Analyst(seed=3), A.StepVerifier()
    rng = np.random.default_rng(0)
    facts = [A.Facts(**{**FACTS.to_dict(), "fair": float(fair), "rsi": float(rsi), "macd_bp": float(m),
                        "up_bid": float(b), "up_ask": float(b) + 0.02})
             for fair, rsi, m, b in zip(rng.uniform(0.05, 0.95, 40), rng.uniform(15, 85, 40), rng.normal(0, 2, 40),
                                        rng.uniform(0.05, 0.9, 40))]
    for f in facts:
        a = analyst.write(f)
        v = ver.verify(a.text, f)
        assert v.true_step_share == 1.0 and v.self_consistent, a.text
        assert A.prompt_from_facts(f).startswith(f"Market {f.market}")
    for mistake in A.MISTAKES:
        caught = []
        for f in facts:
            a = analyst.write(f, mistakes=[mistake])
            if mistake in a.mistakes:
                caught.append(not ver.verify(a.text, f).step_ok[a.mistakes[mistake]])
        assert caught and all(caught), mistake
    with pytest.raises(ValueError, match="unknown mistakes"):
        analyst.write(facts[0], mistakes=["typo"])
