"""The twin's yardsticks: one decision rule, market-bootstrap intervals, the ceilings, the trader features,
steering statistics, the stacked booster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from workbench import features
from workbench.data import ingest
from workbench.data.simulate import ACTIONS, load_sim_config, load_truth
from workbench.twin import baselines as B
from workbench.twin import ceiling as C
from workbench.twin import evaluate as E
from workbench.twin import steering as ST
from workbench.twin import steps as S
from workbench.twin import study


def _probs(rng, n, k=5, sharp=2.0):
    logits = rng.normal(0, sharp, size=(n, k))
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def test_macro_f1_matches_scikit_learn_and_the_rule_nests_the_argmax():
    rng = np.random.default_rng(0)
    y = rng.choice(5, p=[0.05, 0.1, 0.7, 0.1, 0.05], size=2000)
    p = _probs(rng, 2000)
    pred = p.argmax(1)
    assert E.macro_f1(y, pred) == pytest.approx(f1_score(y, pred, labels=range(5), average="macro", zero_division=0))
    prior = E.class_prior(y)
    np.testing.assert_array_equal(E.decide(p, prior, 0.0), pred)
    a = E.fit_exponent(p, y, prior)
    assert E.macro_f1(y, E.decide(p, prior, a)) == max(E.macro_f1(y, E.decide(p, prior, g)) for g in E.EXPONENTS)


def test_the_prior_correction_lifts_macro_f1_of_true_probabilities():
    """The argmax of the true class probabilities rarely names a rare class; the rule fitted on one sample
    improves macro-F1 on another: the reason every model is scored with it."""
    rng = np.random.default_rng(1)
    p = _probs(rng, 6000, sharp=1.0) * np.array([0.05, 0.15, 1.0, 0.15, 0.05])
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=r) for r in p])
    prior = E.class_prior(y[:3000])
    a = E.fit_exponent(p[:3000], y[:3000], prior)
    assert a > 0
    assert E.macro_f1(y[3000:], E.decide(p[3000:], prior, a)) > E.macro_f1(y[3000:], p[3000:].argmax(1)) + 0.02


def test_intervals_resample_markets_and_identical_models_do_not_differ():
    rng = np.random.default_rng(2)
    n = 1500
    y = rng.integers(0, 5, n)
    p = _probs(rng, n)
    groups = np.repeat(np.arange(100), 15)
    prior = E.class_prior(y)
    r = E.score(y, p, groups, prior, 0.5, n_boot=200)
    for k in ("macro_f1", "accuracy", "log_loss"):
        lo, hi = r[f"{k}_ci"]
        assert lo <= r[k] <= hi and hi > lo
    c = E.compare(y, p, p, groups, prior, 0.5, 0.5, n_boot=50)
    assert c["difference"] == 0 and c["ci"] == [0.0, 0.0] and c["min_detectable"] == 0


@pytest.fixture(scope="module")
def truth(small_sim):
    raw = small_sim.wallet_dir.parents[1]
    decisions, _ = load_truth(raw, small_sim.config.wallet)
    return decisions, load_sim_config(raw, small_sim.config.wallet)


def test_the_ceiling_recomputes_the_hidden_policy_exactly_from_the_true_prices(truth):
    decisions, cfg = truth
    d = decisions.sort_values("t").reset_index(drop=True)
    active = d["active"].to_numpy(bool)
    recomputed = C.policy_given_prices(decisions, cfg)
    np.testing.assert_allclose(recomputed[active], d[[f"p_{a}" for a in ACTIONS]].to_numpy()[active], atol=1e-9)


def test_the_observable_ceiling_is_a_distribution_below_the_full_one(truth):
    decisions, cfg = truth
    idx = pd.DatetimeIndex(pd.to_datetime(decisions["t"].sort_values(), unit="ms", utc=True))
    obs = C.observable_probabilities(decisions, cfg, idx, n_mc=64)
    full = C.full_probabilities(decisions, idx)
    np.testing.assert_allclose(obs.sum(1), 1.0, atol=1e-9)
    y = decisions.sort_values("t")["action_id"].to_numpy()
    ll = lambda p: -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()  # noqa: E731
    assert ll(full) < ll(obs)  # the truth explains the drawn actions better than any observable summary
    assert C.observable_probabilities(decisions, cfg, idx, n_mc=64, seed=3).shape == obs.shape


@pytest.fixture(scope="module")
def twin_data(small_sim):
    d = ingest.load_wallet(small_sim.wallet_dir)
    feat = features.price_features(features.ohlcv(ingest.rebar(d, "1min")), 0.3, vol_window=30, volume_window=60)
    steps = S.build_steps(d.events, d.positions, ingest.rebar(d, "1min", "5s"), feat, notional=5000.0)
    return d, study.prepare(steps, gap=8, window=16, train_stride=8, features="trader", rtg_scale="auto",
                            rtg_mode="window")


def test_trader_features_follow_the_position_and_the_fitted_levels(twin_data):
    _, data = twin_data
    st = data.steps
    held = st["inventory"].abs() > 1e-9
    assert (st.loc[~held, ["upnl_per_share", "tp_distance", "sl_distance", "exit_signal"]] == 0).all().all()
    reached = held & ((st["upnl_per_share"] >= 0.12 - 1e-12) | (st["upnl_per_share"] <= -0.15 + 1e-12))
    np.testing.assert_array_equal(st["exit_signal"].to_numpy(), np.where(reached, -np.sign(st["inventory"]), 0.0))
    assert data.features == S.TRADER_FEATURES and set(st["late"].unique()) <= {0.0, 1.0}
    assert np.std(data.windows["train"]["rtg"][:, 0]) == pytest.approx(1.0, rel=1e-6)  # RTG scaled to unit variance
    w = data.windows["train"]
    assert (w["rtg"] == np.where(w["mask"], w["rtg"][:, :1], 0)).all()  # "window": one target per window


def test_agent_state_is_the_same_function_for_the_trader_and_the_replay():
    lv = S.ExitLevels(0.1, 0.2)
    out = S.agent_state(np.array([10.0, 0.0]), np.array([0.0, 0.0]), np.array([0.4, 0.0]), np.array([0.0, 0.0]),
                        np.array([1000.0, np.nan]), np.array([2, 0]), np.array([0.55, 0.5]), np.array([61_000, 0]),
                        100.0, lv)
    assert out["upnl_per_share"][0] == pytest.approx(0.15) and out["exit_signal"][0] == -1.0
    assert out["tp_distance"][0] == pytest.approx(0.05) and out["sl_distance"][0] == pytest.approx(0.35)
    assert out["time_since_entry"][0] == pytest.approx(60 / 900) and out["exit_signal"][1] == 0
    assert out["trades_in_market"].tolist() == [2.0, 0.0]


def test_late_window_fit_finds_the_change_of_rate():
    rng = np.random.default_rng(4)
    left = rng.uniform(0, 900, 20_000)
    traded = rng.random(20_000) < np.where(left < 60, 0.0, np.where(left < 240, 0.05, 0.3))
    assert S.fit_late_window(left, traded) == 240


def test_stacked_booster_is_out_of_fold_on_training(twin_data):
    _, data = twin_data
    probs, full = B.stacked_gbm(data, seed=0, n_folds=3, n_estimators=20)
    tr = data.rows("train")
    in_sample = full.predict_proba(B.history_features(data.states, data.actions, tr))
    assert probs.shape == (len(data.actions), 5) and not np.allclose(probs[tr], in_sample)
    te = data.rows("test")
    np.testing.assert_allclose(probs[te], full.predict_proba(B.history_features(data.states, data.actions, te)))
    aug, stats = study.augment(data, probs)
    assert aug.states.shape[1] == data.states.shape[1] + 5 and aug.features[-5:] == tuple(
        f"{study.STACK_PREFIX}{a}" for a in ACTIONS)
    assert np.allclose(aug.states[tr, -5:].mean(0), 0, atol=1e-5)


def test_steering_statistics():
    pnl = pd.DataFrame(np.tile(np.arange(5.0), (40, 1)))  # 40 markets, 5 agents: return rises with the target
    st = ST.steering(pnl, [-2, -1, 0, 1, 2], 10.0, n_boot=100)
    assert st["spearman"] == pytest.approx(1.0) and st["spearman_ci"][0] == pytest.approx(1.0)
    assert st["p_no_steering"] < 0.02
    r = ST.returns_with_ci(pnl, 10.0, list("abcde"), n_boot=100)
    assert r.loc["c", "return"] == pytest.approx(40 * 2 / 10) and r["markets"].iloc[0] == 40
    eq = np.cumsum(np.ones((30, 2)), axis=0)
    m = ST.market_pnl(eq, np.repeat(["a", "b", "c"], 10))
    assert m.to_numpy().sum(0).tolist() == [30.0, 30.0]


def test_probability_policy_acts_by_the_decision_rule(twin_data):
    _, data = twin_data
    fits = B.fit_baselines(data, seed=0, gbm=False)
    b = fits["BC MLP"]
    prior = E.class_prior(data.actions[data.rows("train")])
    rows = data.rows("test")
    pol = B.ProbabilityPolicy(b, sample=False, adjustment=-0.8 * np.log(prior))
    pol.reset(1)
    acted = np.array([pol.act(i, data.states[r: r + 1])[0] for i, r in enumerate(rows)])
    np.testing.assert_array_equal(acted, E.decide(b.proba(data, "test"), prior, 0.8))
