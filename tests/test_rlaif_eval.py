"""RLAIF yardsticks: expected values and the realised-label ceiling from the simulator's truth, pairs that carry
information, baselines and intervals over decision points, outcome-based step labels, random tie-breaks."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import analysis as A
from workbench.data.simulate import load_sim_config, load_truth
from workbench.rlaif import TradingDecision, candidates_at, evaluate
from workbench.rlaif import truth as T
from workbench.rlaif import yardsticks as Y
from workbench.rlaif.store import PreferencePair


def _d(source, action="BUY", t=1000, point=0, entry=0.5, conf=0.6, fair=0.5, bid=0.49, ask=0.51, **kw):
    return TradingDecision(time=t, symbol="m", action=action, size=10.0, confidence=conf, features={"fair": fair},
                           analysis=f"{source} {action}", source=source, entry_price=entry,
                           metadata={"decision_point": point, "facts": {"fair": fair, "up_bid": bid, "up_ask": ask}},
                           **kw)


def test_a_changed_decision_gets_a_new_id_and_the_same_decision_the_same_id():
    a, b = _d("x"), _d("x")
    assert a.id == b.id
    assert _d("x", entry=0.52).id != a.id and _d("x", stop_loss=0.4).id != a.id
    assert TradingDecision(**{**a.__dict__, "id": "", "analysis": "other text"}).id != a.id


@pytest.fixture(scope="module")
def sim(small_sim):
    raw = small_sim.wallet_dir.parents[1]
    decisions, _ = load_truth(raw, small_sim.config.wallet)
    return decisions, T.TruePath(load_sim_config(raw, small_sim.config.wallet))


def test_true_probability_and_expected_values_match_the_simulator(sim):
    decisions, path = sim
    row = decisions.iloc[40]
    assert path.p_up(int(row["t"])) == pytest.approx(row["fair_true"], abs=1e-12)
    buy = _d("b", "BUY", t=int(row["t"]), entry=0.6)
    sell = _d("s", "SELL", t=int(row["t"]), entry=0.55)
    ev = T.expected_values([buy, sell, _d("h", "HOLD", t=int(row["t"]))], path)
    assert ev[buy.id] == pytest.approx(row["fair_true"] - 0.6) and ev[sell.id] == pytest.approx(0.55 - row["fair_true"])
    assert ev[_d("h", "HOLD", t=int(row["t"])).id] == 0.0


def test_ev_pairs_count_each_point_and_action_pair_once():
    ds = [_d("b1", "BUY", point=1), _d("b2", "BUY", point=1, entry=0.52), _d("h", "HOLD", point=1), _d("s", "SELL", point=1)]
    ev = {ds[0].id: 0.05, ds[1].id: 0.03, ds[2].id: 0.0, ds[3].id: -0.05}
    pairs = T.ev_pairs(ds, ev, margin=0.01)
    by_group = {}
    for hi, lo, w in pairs:
        by_group[(hi.action, lo.action)] = by_group.get((hi.action, lo.action), 0) + w
    assert by_group == {("BUY", "BUY"): 1.0, ("BUY", "HOLD"): 1.0, ("BUY", "SELL"): 1.0, ("HOLD", "SELL"): 1.0}


def test_realised_ceiling_is_a_probability_that_knows_obvious_pairs(sim):
    decisions, path = sim
    t = int(decisions["t"].iloc[30])
    f = {"up_bid": 0.49, "up_ask": 0.51}
    hold = _d("h", "HOLD", t=t)
    hold.metadata["facts"] = f
    awful = _d("bad", "BUY", t=t, entry=0.99, stop_loss=0.5, take_profit=1.0)  # pays 0.99 for a coin: loses
    awful.metadata["facts"] = f
    twin = _d("same", "HOLD", t=t + 0)
    twin.metadata["facts"] = f
    pairs = [PreferencePair(hold, awful, "risk_adjusted", 0.4, 1.0, t), PreferencePair(hold, twin, "risk_adjusted", 0, 1, t)]
    for observable in (False, True):
        c = T.realised_label_ceiling(pairs, path, margin=0.02, max_hold_ms=600_000, n_paths=200, observable=observable)
        assert c["per_pair"][0] > 0.95 and c["per_pair"][1] == 0.5  # identical decisions are a coin
        assert 0.5 <= c["ceiling"] <= 1.0


def test_pair_accuracy_resamples_points_and_counts_ties_half():
    ds = {k: (_d(f"a{k}", "BUY", point=k), _d(f"b{k}", "HOLD", point=k)) for k in range(20)}
    pairs = [PreferencePair(a, b, "m", 0.1, 1.0, 0) for a, b in ds.values()]
    scores = {a.id: 1.0 for a, _ in ds.values()} | {b.id: 0.0 for _, b in ds.values()}
    r = Y.pair_accuracy_ci(scores, pairs, n_boot=200)
    assert r["acc"] == 1.0 and r["ci"] == [1.0, 1.0] and r["points"] == 20
    tie = {i: 0.0 for i in scores}
    assert Y.pair_accuracy_ci(tie, pairs, n_boot=50)["acc"] == 0.5
    assert Y.normalised_accuracy(0.65, 0.7) == pytest.approx(0.75)


def test_baseline_scorers():
    s = Y.baseline_scorers()
    hold, buy, sell = _d("h", "HOLD"), _d("b", "BUY", entry=0.51, fair=0.6, bid=0.6, ask=0.62), _d("s", "SELL", entry=0.49)
    assert s["prefer HOLD"](hold) > s["prefer HOLD"](buy)
    assert s["HOLD, then the favourite"](hold) > s["HOLD, then the favourite"](buy) > s["HOLD, then the favourite"](
        _d("s2", "SELL", bid=0.6, ask=0.62))
    assert s["edge heuristic"](buy) == pytest.approx(0.6 - 0.51) and s["edge heuristic"](hold) == 0.0


def test_step4_is_judged_by_its_outcome_not_by_the_analyst():
    ds = [_d("b", "BUY", point=1), _d("h", "HOLD", point=1), _d("h2", "HOLD", point=2), _d("s", "SELL", point=2)]
    ev = {ds[0].id: 0.04, ds[1].id: 0.0, ds[2].id: 0.0, ds[3].id: -0.02}
    lab = Y.outcome_step4_labels(ds, ev, margin=0.01)
    assert lab == {ds[0].id: 1.0, ds[1].id: 0.0, ds[2].id: 1.0, ds[3].id: 0.0}


def test_ties_are_broken_at_random_not_by_position():
    groups = {k: [_d(f"a{k}", point=k), _d(f"b{k}", "SELL", point=k)] for k in range(200)}
    tie = {d.id: 0.0 for ds in groups.values() for d in ds}
    first = sum(p.source.startswith("a") for p in Y.pick(groups, tie, seed=1).values())
    assert 60 < first < 140  # ~half, not all 200
    assert Y.pick(groups, tie, seed=1) == Y.pick(groups, tie, seed=1)


def test_varied_candidates_state_their_own_plan_and_the_tracker_honours_the_holding_time():
    f = A.Facts(time="2026-01-05T00:00:05+00:00", market="m", minutes_left=10.0, btc_move_pct=0.1, up_bid=0.45,
                up_ask=0.47, fair=0.6, rsi=55.0, macd_bp=1.0, bb_width_pct=0.3, vol_pct=0.05, range_low=0.4,
                range_high=0.5)
    ds = candidates_at(f, 1000, A.Analyst(seed=0), np.random.default_rng(0), vary=True, decision_point=0)
    varied = [d for d in ds if d.source != "analyst" and d.action != "HOLD"]
    assert varied and len({(d.stop_loss, d.take_profit, d.metadata["hold_ms"]) for d in varied}) == len(varied)
    v = A.StepVerifier()
    for d in varied:
        if not d.metadata["mistakes"]:
            assert f"stop loss {d.stop_loss:.2f}" in d.analysis and v.verify(d.analysis, f).step_ok["risk_assessment"]

    class Flat:  # quotes that never touch stop or target, and a market ending much later
        def quotes(self, s, a, b):
            t = np.arange(a + 1000, b + 1, 1000)
            return t, np.full(len(t), 0.45), np.full(len(t), 0.47)

        def expiry(self, s):
            return 10**9, None

        def now(self):
            return 10**9

    d = varied[0]
    out, _ = evaluate(d, Flat(), max_hold_ms=3_600_000)
    assert out.reason == "time" and out.exit_time == d.time + d.metadata["hold_ms"]
