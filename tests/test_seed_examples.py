"""Issue 18: the design documents' own examples (``../shared/seeds``), written from the documents with only the
module prefix changed (``src.rlaif`` -> ``workbench.rlaif``) and paths under a temporary folder.

Covered so far: document 001's PreferenceGenerator example and its OutcomeTracker close_position bug; the
rest of the documents' examples are still to come (see the issue).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.rlaif import OutcomeTracker, PreferenceGenerator


class AgentOutput:
    """What document 001's multi-agent manager returns: a confidence and its reasoning."""

    def __init__(self, confidence: float, reasoning: str) -> None:
        self.confidence, self.reasoning = confidence, reasoning


def test_001_preference_generator_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent_output = AgentOutput(0.8, "RSI oversold, MACD turning up: buy.")
    technical_indicators = {"rsi": 28.0, "macd": 0.4}
    price_series = np.linspace(175.0, 185.0, 12)

    pref_gen = PreferenceGenerator(
        storage_path=Path("./data/rlaif"),
        min_preference_margin=0.05,  # 5% minimum difference
        hold_period_days=5,
    )

    # Record a decision
    decision = pref_gen.record_decision(
        symbol="AAPL",
        agent_response=agent_output,
        action="buy",
        position_size=100,
        market_data={"close": 175.0},
        features=technical_indicators,
    )

    # Later, update with outcome
    pref_gen.update_outcome(
        decision_id=decision.decision_id,
        exit_price=185.0,
        price_history=price_series,
    )

    # Generate preference pairs
    preferences = pref_gen.generate_preferences(
        comparison_metric="risk_adjusted",
        min_samples=10,
    )
    assert preferences == []  # one decision: fewer than min_samples, no pairs
    assert (tmp_path / "data" / "rlaif").is_dir() and (tmp_path / "data" / "rlaif" / "rlaif.db").is_file()
    d = pref_gen.store.decision(decision.decision_id)
    assert (d.action, d.size, d.entry_price, d.confidence) == ("BUY", 100.0, 175.0, 0.8)
    assert d.analysis == agent_output.reasoning and d.features == technical_indicators
    assert pref_gen.store.outcomes()[decision.decision_id].ret == pytest.approx(10.0)
    # the folder form works for an existing folder and for the default
    again = PreferenceGenerator(storage_path=Path("./data/rlaif"))
    assert again.store.decision(decision.decision_id).id == decision.id
    assert PreferenceGenerator().store.path == Path("data") / "rlaif" / "rlaif.db"


def test_001_outcome_tracker_close_position(tmp_path):
    pref_gen = PreferenceGenerator(storage_path=tmp_path / "rlaif")
    decision = pref_gen.record_decision(symbol="AAPL", agent_response=AgentOutput(0.7, "buy"), action="buy",
                                        position_size=100, market_data={"close": 175.0, "time": 1_000})
    tracker = OutcomeTracker(pref_gen)
    position_id = tracker.track_decision(decision)
    tracker.close_position(position_id, exit_price=180.0)
    stats = tracker.get_stats()
    assert (stats["open"], stats["closed"]) == (0, 1)
    tracker.update_positions()
    assert pref_gen.store.outcomes()[position_id].reason == "manual"
