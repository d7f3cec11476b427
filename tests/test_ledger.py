"""Position accounting on hand-computed trades (every expected value worked out by hand below)."""

import math

import pytest

from workbench.data import DOWN, UP, LedgerError, MarketPosition


def test_average_cost_sequence_hand_computed():
    p = MarketPosition()
    # buy 100 Up @ 0.40: cost 40.00
    assert p.trade(1_000, UP, "BUY", 100, 0.40) == 0.0
    assert (p.q_up, p.avg_up, p.entry_t) == (100, 0.40, 1_000)
    # buy 50 Up @ 0.55: average (40 + 27.5) / 150 = 0.45
    p.trade(2_000, UP, "BUY", 50, 0.55)
    assert p.q_up == 150 and p.avg_up == pytest.approx(0.45, abs=1e-15)
    # sell 60 Up @ 0.60: realised 60 * (0.60 - 0.45) = 9.00
    assert p.trade(3_000, UP, "SELL", 60, 0.60) == pytest.approx(9.0)
    assert p.q_up == 90 and p.avg_up == pytest.approx(0.45)
    # buy 40 Down @ 0.30: net Up-equivalent 90 - 40 = 50,
    # entry e = (90 * 0.45 - 40 * (1 - 0.30)) / 50 = (40.5 - 28) / 50 = 0.25
    p.trade(4_000, DOWN, "BUY", 40, 0.30)
    assert p.net == 50
    assert p.entry_price == pytest.approx(0.25)
    # unrealised at Up mark 0.5: 90 * 0.05 + 40 * 0.20 = 12.5 = net * (m - e) = 50 * 0.25
    assert p.unrealized(0.5) == pytest.approx(12.5)
    # merge 40 at mark 0.5: Up 40 * (0.5 - 0.45) = 2, Down 40 * (0.5 - 0.30) = 8
    assert p.merge(5_000, 40, 0.5) == pytest.approx(10.0)
    assert (p.q_up, p.q_down) == (50, 0) and p.realized == pytest.approx(19.0)
    # settle Up: 50 * (1 - 0.45) = 27.5; total realised 46.5
    assert p.settle(6_000, UP) == pytest.approx(27.5)
    assert p.realized == pytest.approx(46.5) and p.is_flat and p.entry_t is None and p.settled
    # the same total from cash flows: -40 - 27.5 + 36 - 12 + 40 (merge) + 50 (settlement) = 46.5
    assert -40 - 27.5 + 36 - 12 + 40 + 50 == pytest.approx(p.realized)


def test_crossing_zero_and_incomplete_history():
    p = MarketPosition()
    p.trade(0, UP, "BUY", 10, 0.5)
    # sell 15 @ 0.6: closes 10 (realised 1.0), opens -5 at 0.6 (shares never seen bought)
    assert p.trade(1, UP, "SELL", 15, 0.6) == pytest.approx(1.0)
    assert p.q_up == -5 and p.avg_up == 0.6 and p.history_incomplete
    # covering the short at 0.5 realises 5 * (0.6 - 0.5) = 0.5
    assert p.trade(2, UP, "BUY", 5, 0.5) == pytest.approx(0.5)
    assert p.is_flat


def test_split_then_settle_down_and_reward():
    p = MarketPosition()
    assert p.split(0, 10, 0.7) == 0.0  # $10 -> 10 Up @ 0.7 + 10 Down @ 0.3
    assert p.net == 0 and math.isnan(p.entry_price)
    assert p.unrealized(0.9) == pytest.approx(0.0)  # hedged: value does not move
    assert p.settle(1, DOWN) == pytest.approx(10 * (0 - 0.7) + 10 * (1 - 0.3))
    assert p.reward(2, 0.25) == 0.25 and p.realized == pytest.approx(0.25)


def test_redeem_winner_inference():
    p = MarketPosition()
    p.trade(0, UP, "BUY", 30, 0.4)
    p.trade(1, DOWN, "BUY", 12, 0.5)
    assert p.infer_redeem_winner(30.0) == UP
    assert p.infer_redeem_winner(12.0) == DOWN


@pytest.mark.parametrize("call", [
    lambda p: p.trade(0, "Maybe", "BUY", 1, 0.5),
    lambda p: p.trade(0, UP, "HOLD", 1, 0.5),
    lambda p: p.trade(0, UP, "BUY", -1, 0.5),
    lambda p: p.settle(0, "Draw"),
])
def test_ledger_rejects_bad_activity(call):
    with pytest.raises(LedgerError):
        call(MarketPosition())
