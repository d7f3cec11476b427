"""Issue 22 (part): the reward-model lifecycle. A worse model is not promoted, a better one is, rollback restores
the exact previous scores, and old versions are pruned but the current one and its rollback target are kept."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import analysis as A
from workbench.rlaif import RewardModel, RewardModelTrainer, TextEncoder
from workbench.rlaif.registry import RewardModelRegistry, ab_test
from workbench.rlaif.reward import NUMERIC_DIM
from workbench.rlaif.store import PreferencePair, TradingDecision


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


def _pairs(n: int, seed: int, analyst: A.Analyst) -> list[PreferencePair]:
    """Pairs where the trade towards the fair value is the chosen one; one decision point per pair."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = float(rng.uniform(0.1, 0.85))
        f = A.Facts(time="2026-01-05T00:00:05+00:00", market=f"m{seed}-{i}", minutes_left=float(rng.uniform(1, 14)),
                    btc_move_pct=float(rng.normal(0, 0.1)), up_bid=b, up_ask=b + 0.02, fair=float(rng.uniform(0.05, 0.95)),
                    rsi=float(rng.uniform(20, 80)), macd_bp=float(rng.normal(0, 2)), bb_width_pct=0.4, vol_pct=0.05,
                    range_low=b - 0.05, range_high=b + 0.07)
        good = "BUY" if f.gap > 0 else "SELL"
        bad = "SELL" if good == "BUY" else "BUY"
        mk = lambda s: TradingDecision(time=seed * 10_000 + i, symbol=f.market, action=s, size=10, confidence=0.6,  # noqa: E731
                                       features=f.numeric(), analysis=analyst.write(f, signal=s).text, source=s,
                                       entry_price=f.up_ask if s == "BUY" else f.up_bid,
                                       metadata={"decision_point": seed * 10_000 + i})
        out.append(PreferencePair(mk(good), mk(bad), "return", 0.1, 1.0, seed * 10_000 + i))
    return out


def _trained(pairs: list[PreferencePair], encoder: TextEncoder, seed: int) -> RewardModelTrainer:
    rm = RewardModelTrainer(RewardModel(NUMERIC_DIM, encoder.dim, seed=seed), encoder, learning_rate=3e-3, seed=seed)
    rm.train(pairs, epochs=12, batch_size=32)
    return rm


def test_promotion_refusal_rollback_and_pruning(tmp_path, encoder):
    analyst = A.Analyst(seed=1)
    train, held_out = _pairs(120, 0, analyst), _pairs(80, 1, analyst)
    flipped = [PreferencePair(p.rejected, p.chosen, p.metric, p.margin, p.weight, p.created_at) for p in train]
    good, bad = _trained(train, encoder, 0), _trained(flipped, encoder, 0)
    acc_g, acc_b, diff, lo, hi, units = ab_test(good, bad, held_out, n_boot=500)
    assert acc_g > 0.8 > 0.2 > acc_b and lo > 0 and units == 80

    reg = RewardModelRegistry(tmp_path / "rm", keep=3)
    v_bad = reg.register(bad, (0, 119), {"note": "trained on flipped pairs"})
    first = reg.promote(v_bad, held_out, encoder)
    assert first.promoted and reg.current == v_bad
    v_good = reg.register(good, (0, 119))
    rep = reg.promote(v_good, held_out, encoder, n_boot=500)
    assert rep.promoted and reg.current == v_good and rep.ci_low > 0 and reg.info(v_good)["parent"] == v_bad
    # a worse model is not promoted, and the report says why
    v_worse = reg.register(bad, (120, 199))
    refused = reg.promote(v_worse, held_out, encoder, n_boot=500)
    assert not refused.promoted and reg.current == v_good and refused.reason.startswith(f"kept {v_good}")
    # rollback restores the exact previous scores
    sample = [p.chosen for p in held_out[:10]]
    assert reg.rollback() == v_bad and reg.current == v_bad
    np.testing.assert_array_equal(reg.load(text_encoder=encoder).score(sample), bad.score(sample))
    with pytest.raises(ValueError, match="nothing to roll back"):
        reg.rollback()
    # pruning: the three most recent versions stay, and the current one even when older
    for k in range(3):
        reg.register(good, (200 + k, 300 + k))
    kept = reg.versions()
    assert v_bad in kept and len(kept) == 4 and kept[-3:] == ["rm-4", "rm-5", "rm-6"]
    assert sorted(p.name for p in (tmp_path / "rm").glob("*.pt")) == sorted(f"{v}.pt" for v in kept)
    again = RewardModelRegistry(tmp_path / "rm")  # the state survives a restart
    assert again.current == v_bad and again.versions() == kept and again.state["log"][-1]["event"] == "rollback"


def test_objective_frontier_moves_with_the_weight():
    from workbench.rlaif.store import Outcome
    from workbench.rlaif.yardsticks import objective_frontier

    groups, outs, r_score, k_score = {}, {}, {}, {}
    for k in range(4):
        bold = TradingDecision(time=k, symbol=f"m{k}", action="BUY", size=10, confidence=0.7, features={}, analysis="a",
                               source="bold")
        calm = TradingDecision(time=k, symbol=f"m{k}", action="BUY", size=10, confidence=0.6, features={}, analysis="b",
                               source="calm")
        groups[k] = [bold, calm]
        outs[bold.id] = Outcome(bold.id, k, 0.5, 0.10, 1.0, 0.5, -0.08, "time", 5)
        outs[calm.id] = Outcome(calm.id, k, 0.5, 0.03, 0.3, 1.2, -0.01, "time", 5)
        r_score.update({bold.id: 1.0, calm.id: 0.0})  # the return model prefers the bold trade
        k_score.update({bold.id: 0.0, calm.id: 1.0})  # the risk model prefers the calm one
    t = objective_frontier(groups, r_score, k_score, outs, [0.0, 1.0], n_boot=100)
    assert t.loc[0, "return"] == pytest.approx(0.03) and t.loc[0, "drawdown"] == pytest.approx(0.01)
    assert t.loc[1, "return"] == pytest.approx(0.10) and t.loc[1, "drawdown"] == pytest.approx(0.08)
    assert (t["trades"] == 1.0).all() and t.loc[1, "return_lo"] <= 0.10 <= t.loc[1, "return_hi"]


def test_replay_is_prequential_and_the_online_learner_tracks_a_flipped_preference(encoder):
    """Days 0-3 prefer the trade towards the fair value, days 4-9 the opposite (a known regime change). Both
    learners are judged on each day before they learn from it; the online one recovers within the shifted days."""
    from workbench.rlaif import replay as R

    analyst = A.Analyst(seed=2)
    days = []
    for day in range(10):
        ps = _pairs(40, 100 + day, analyst)
        ps = [PreferencePair(p.chosen.__class__(**{**p.chosen.__dict__, "time": day * R.DAY_MS + i}),
                             p.rejected.__class__(**{**p.rejected.__dict__, "time": day * R.DAY_MS + i}),
                             p.metric, p.margin, p.weight, p.created_at) for i, p in enumerate(ps)]
        days.append(ps if day < 4 else [PreferencePair(p.rejected, p.chosen, p.metric, p.margin, p.weight, p.created_at)
                                        for p in ps])
    flat_before = [p for d in days[:4] for p in d]
    flat_after = [p for d in days[4:] for p in d]
    assert [len(d) for d in R.stream(flat_before, flat_after, shift_day=4)] == [40] * 10
    probe = [p.chosen for p in days[0][:20]]
    daily, per = R.replay(days, encoder, probe=probe, warmup_days=2, retrain_every_days=3, window_days=3, epochs=8,
                          batch_size=16, learning_rate=3e-3, online_learning_rate=3e-3, online_batch=8, seed=0)
    assert list(daily["day"]) == list(range(2, 10)) and len(per) == 8 * 40
    first_shifted = daily.set_index("day").loc[4]
    assert first_shifted["online_acc"] < 0.4 and first_shifted["weekly_acc"] < 0.4  # neither has seen the change
    assert daily.set_index("day").loc[[8, 9], "online_acc"].mean() > 0.6  # the online learner has followed it
    assert daily["weekly_retrained"].sum() == 2 and (daily["weekly_churn"][~daily["weekly_retrained"]] == 0).all()
    s = R.summary(per, daily, {"after": (4, 9)}, n_boot=200)
    lo, hi = s.loc["after", "difference_ci"]
    assert lo <= s.loc["after", "online_minus_weekly"] <= hi
