"""The rule card (workbench.rules): the estimator recovers a policy drawn from its own model, model choice drops
an unused term and keeps a used one, change points are found by profile likelihood, terms and predictions are
causal, and the card's outputs hold together."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from workbench.rules import card as C
from workbench.rules import model as RM
from workbench.rules import search, study, terms

K = terms.K_STEPS
TRUE = {"edge": 0.25, "momentum": 0.35, "inventory": -0.33, "exit_push": 2.5, "late_damp": 0.35,
        "theta_1": -3.6, "theta_2": -2.0, "theta_3": 2.0, "theta_4": 3.6, "participation_logit": math.log(0.9 / 0.1),
        "log_base_size": math.log(40.0), "size_conviction": 0.4, "log_strong_mult": math.log(2.5),
        "log_size_noise": math.log(0.25)}


def synthetic(n_markets: int = 400, seed: int = 0, cand_coef: float = 0.0, tp: float = 0.12, sl: float = 0.15,
              late: float = 180.0, stop: float = 60.0) -> terms.PolicyData:
    """Markets drawn from the card's own model with the terms observed exactly (one draw per step)."""
    rng = np.random.default_rng(seed)
    M = n_markets
    left = np.tile(895.0 - 60.0 * np.arange(K), (M, 1))
    edge = rng.normal(0, 4.0, (M, K))
    mom = rng.normal(0, 1.0, (M, K))
    cand = rng.normal(0, 1.0, (M, K))
    inv, upnl = np.zeros((M, K)), np.zeros((M, K))
    direction, size, cls = np.zeros((M, K), int), np.zeros((M, K)), np.full((M, K), 2)
    active = rng.random(M) < 0.9
    strong = math.exp(TRUE["log_base_size"] + 0.5 * TRUE["log_strong_mult"] + 0.6)
    for k in range(K):
        if k:
            inv[:, k] = inv[:, k - 1] + direction[:, k - 1] * size[:, k - 1]
        held = np.abs(inv[:, k]) > 1e-9
        upnl[:, k] = np.where(held, rng.normal(0, 0.12, M), 0.0)
        hit = held & ((upnl[:, k] >= tp) | (upnl[:, k] <= -sl))
        s = (TRUE["edge"] * edge[:, k] + TRUE["momentum"] * mom[:, k] + TRUE["inventory"] * inv[:, k] / 100
             + TRUE["exit_push"] * np.where(hit, -np.sign(inv[:, k]), 0.0) + cand_coef * cand[:, k])
        s = s * (TRUE["late_damp"] if left[0, k] < late else 1.0)
        cdf = expit(np.array([TRUE[f"theta_{j}"] for j in (1, 2, 3, 4)])[None, :] - s[:, None])
        u = rng.random(M)
        latent = 4 - (u[:, None] > cdf).sum(1)  # 0 STRONG_BUY .. 4 STRONG_SELL
        latent = np.where(active & (left[:, k] >= stop), latent, 2)
        d = np.where(latent <= 1, 1, np.where(latent >= 3, -1, 0))
        q = np.exp(TRUE["log_base_size"] + np.log1p(TRUE["size_conviction"] * np.abs(s))
                   + np.where(np.isin(latent, (0, 4)), TRUE["log_strong_mult"], 0.0)
                   + rng.normal(0, math.exp(TRUE["log_size_noise"]), M))
        direction[:, k], size[:, k] = d, np.where(d != 0, q, 0.0)
        cls[:, k] = np.where(d == 0, 2, np.where(q >= strong, np.where(d > 0, 0, 4), np.where(d > 0, 1, 3)))
    idx = np.arange(M * K).reshape(M, K)
    return terms.PolicyData(slugs=np.array([f"m-{i}" for i in range(M)], dtype=object), index=idx,
                            ok=np.ones((M, K), bool), seconds_left=left, direction=direction, size=size,
                            observed_class=cls, inventory=inv, upnl=upnl, edge=edge[..., None], momentum=mom[..., None],
                            weights=np.ones((M, K, 1)), extras={"quote_change": cand}, strong=strong)


@pytest.fixture(scope="module")
def data() -> terms.PolicyData:
    return synthetic(500, seed=1)


@pytest.fixture(scope="module")
def fitted(data: terms.PolicyData) -> RM.Fit:
    return RM.fit(data, RM.ChangePoints(0.12, 0.15, 205.0, 85.0), RM.Spec(), covariance=True)


def test_maximum_likelihood_recovers_the_generating_policy(fitted: RM.Fit) -> None:
    """Every continuous parameter within 3.5 sandwich standard errors of the value the data were drawn with."""
    for name, true in TRUE.items():
        se = fitted.se(name)
        assert math.isfinite(se) and se > 0, name
        assert abs(fitted.params[name] - true) < 3.5 * se, (name, fitted.params[name], true, se)


def test_sandwich_errors_match_the_spread_of_refits(data: terms.PolicyData, fitted: RM.Fit) -> None:
    card = search.CardFit(fitted)
    boot = search.bootstrap(data, card, n_boot=12, seed=0)
    for name in ("edge", "exit_push", "theta_3"):
        width_wald = 2 * 1.96 * fitted.se(name)
        width_boot = boot.loc[name, "hi"] - boot.loc[name, "lo"]
        assert 0.3 < width_boot / width_wald < 3.0, (name, width_boot, width_wald)


def test_a_trade_inside_the_stop_window_makes_that_stop_impossible(data: terms.PolicyData) -> None:
    f = RM.fit(data, RM.ChangePoints(0.12, 0.15, 205.0, 145.0), RM.Spec())  # trades happen 115 s before expiry
    assert f.loglik == -math.inf and not f.converged


def test_the_card_finds_the_change_points_and_drops_the_unused_term() -> None:
    d = synthetic(400, seed=2)
    cardfit = search.fit_card(d, candidates=("quote_change",), level_grid=(0.06, 0.24, 0.06), fine_step=0.01,
                              late_grid=(145, 205, 265), covariance=False)
    lo, hi = cardfit.intervals["take_profit"]
    assert lo <= 0.12 <= hi and hi - lo < 0.06
    lo, hi = cardfit.intervals["stop_loss"]
    assert lo <= 0.15 <= hi and hi - lo < 0.06
    lo, hi = cardfit.intervals["late_window"]
    assert lo < 180 <= hi
    lo, hi = cardfit.intervals["stop"]
    assert lo < 60 <= hi
    assert "quote_change" in cardfit.fit.spec.dropped
    assert not ({"edge", "momentum", "inventory", "exit", "late", "activity"} & set(cardfit.fit.spec.dropped))


def test_a_term_the_trader_uses_is_kept() -> None:
    d = synthetic(300, seed=3, cand_coef=0.4)
    cp = RM.ChangePoints(0.12, 0.15, 205.0, 85.0)
    spec = RM.Spec(candidates=("quote_change",))
    full = RM.fit(d, cp, spec)
    without = RM.fit(d, cp, spec.without("quote_change"), start=full.params)
    assert 2 * (full.loglik - without.loglik) > 30
    assert abs(full.params["cand_quote_change"] - 0.4) < 0.15


def test_predictions_are_causal_within_a_market(data: terms.PolicyData, fitted: RM.Fit) -> None:
    card = search.CardFit(fitted)
    p = C.predict(card, data)
    assert np.allclose(p.sum(-1), 1.0)
    changed = data.subset(np.arange(data.n_markets))
    changed.observed_class = data.observed_class.copy()
    changed.observed_class[:, 8:] = 0  # the market's later steps change
    q = C.predict(card, changed)
    assert np.array_equal(p[:, :9], q[:, :9])  # step 8's prediction uses steps before it only


def test_table_and_sentences_state_the_kept_terms_with_units(data: terms.PolicyData, fitted: RM.Fit) -> None:
    card = search.CardFit(fitted, intervals={"take_profit": (0.115, 0.125), "stop_loss": (0.145, 0.155),
                                             "late_window": (175.0, 235.0), "stop": (55.0, 115.0)})
    truth = {k: v for k, v in TRUE.items()}
    truth.update({"participation_logit": 0.9, "log_base_size": 40.0, "take_profit": 12.0, "stop_loss": 15.0,
                  "late_window": 180.0, "stop": 60.0})
    tab = C.table(card, truth_values=truth)
    assert tab.loc["participation_logit", "estimate"] == pytest.approx(expit(fitted.params["participation_logit"]))
    assert tab.loc["take_profit", "unit"] == "cents per share" and tab.loc["take_profit", "estimate"] == pytest.approx(12.0)
    assert bool(tab.loc["late_window", "covered"]) and bool(tab.loc["stop", "covered"])
    text = " ".join(C.sentences(card, tab, data, agreement=0.7))
    assert "Takes profit at +12.0" in text and "70.0%" in text


def test_truth_in_card_units() -> None:
    from workbench.data.simulate import TraderPolicy

    t = C.truth(TraderPolicy())
    assert t["edge"] == pytest.approx(0.25) and t["inventory"] == pytest.approx(-2.0 / 6.0)
    assert t["take_profit"] == pytest.approx(12.0) and t["stop"] == 60.0 and t["cand_rsi"] == 0.0


def _toy_steps(n_markets: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows, events = [], []
    t0 = 1_767_571_200_000
    for m in range(n_markets):
        start = t0 + m * 900_000
        slug = f"btc-updown-15m-{start // 1000}"
        for k in range(K):
            ts = start + 5_000 + 60_000 * k
            rows.append({"step_start": pd.Timestamp(ts, unit="ms", tz="UTC"), "slug": slug, "seconds_left": 895.0 - 60 * k,
                         "up_mid": 0.5 + 0.01 * rng.standard_normal(), "quote_change": 0.0, "btc_close": 95_000 + rng.normal(0, 20),
                         "btc_open": 95_000.0, "yz_vol": 6e-4, "mom_z": rng.standard_normal(), "inventory": 0.0,
                         "upnl_per_share": 0.0, "flow": 0.0, "rsi": 50.0, "volume_z": 0.0})
            events.append({"type": "price_change", "slug": slug, "t": ts - 3_000})
    return pd.DataFrame(rows).set_index("step_start"), pd.DataFrame(events)


def test_terms_of_a_step_never_change_when_later_markets_are_appended_or_edited() -> None:
    steps, events = _toy_steps(3)
    steps = terms.with_quote_age(steps, events)
    kw = dict(strong=100.0, quote_noise=2.0, quote_lag=2.0, n_draws=16)
    short = terms.policy_data(steps.iloc[:2 * K], np.full(2 * K, 2), **kw)
    edited = steps.copy()
    edited.iloc[2 * K:, edited.columns.get_loc("btc_close")] *= 1.1  # the future market changes
    full = terms.policy_data(edited, np.full(3 * K, 2), **kw)
    for name in ("edge", "momentum", "weights"):
        assert np.array_equal(getattr(short, name), getattr(full, name)[:2]), name
    assert np.allclose(steps["quote_age_s"], 3.0)


def test_volatility_is_causal() -> None:
    rng = np.random.default_rng(0)
    idx = pd.date_range("2026-01-05", periods=200, freq="1min", tz="UTC")
    close = 95_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, 200)))
    ohlcv = pd.DataFrame({"open": close * (1 - 1e-4), "high": close * (1 + 3e-4), "low": close * (1 - 3e-4),
                          "close": close}, index=idx)
    a, scale = terms.volatility(ohlcv.iloc[:120])
    b, _ = terms.volatility(ohlcv, scale=scale)
    assert np.allclose(a.to_numpy(), b.iloc[:120].to_numpy(), equal_nan=True)


def test_real_wallet_card_reports_its_sample_and_refuses_too_little() -> None:
    t0 = 1_767_571_200_000
    rows = []
    rng = np.random.default_rng(0)
    for m in range(6):
        start = t0 + m * 900_000
        for j in range(40):
            up = rng.random() < 0.5
            price = float(rng.uniform(0.2, 0.8))
            rows.append({"wallet": "0xabc", "slug": f"btc-updown-15m-{start // 1000}", "t": start + int(rng.integers(0, 900_000)),
                         "market_start": start, "market_end": start + 900_000, "outcome": "Up" if up else "Down",
                         "size": 10.0, "up_equiv_qty": 10.0 if up else -10.0, "up_equiv_price": price if up else 1 - price})
    out = study.real_wallet_card(pd.DataFrame(rows), "0xabc")
    assert out["sample"]["markets"] == 6 and out["sample"]["fills"] == 240 and out["sample"]["steps"] == 6 * 90
    assert set(out["tests"]["term"]) == {"price_c", "imbalance", "minutes_left"}
    few = study.real_wallet_card(pd.DataFrame(rows[:5]), "0xabc")
    assert few["note"].startswith("too few buys") and few["table"].empty


def test_calibration_yardstick_tells_calibrated_intervals_from_a_bias() -> None:
    import numpy as np
    import pandas as pd

    from workbench.rules import study

    rng = np.random.default_rng(0)
    rows = []
    for run in range(40):
        for p, bias in (("fair", 0.0), ("other", 0.0), ("biased", 2.5)):
            est = 1.0 + rng.normal(bias * 0.1, 0.1)
            rows.append({"run": run, "parameter": p, "estimate": est, "lo": est - 0.196, "hi": est + 0.196,
                         "true": 1.0, "covered": abs(est - 1.0) <= 0.196})
    c = study.calibration(pd.DataFrame(rows))
    assert c["bias"].loc["fair", "mean_z"] == pytest.approx(0.0, abs=0.5)
    assert c["bias"].loc["biased", "mean_z"] > 1.5 and c["bias"].loc["biased", "share_below_truth"] < 0.2
    fair = study.calibration(pd.DataFrame([r for r in rows if r["parameter"] != "biased"]))
    assert fair["pooled"]["ci"][0] <= 0.95 <= fair["pooled"]["ci"][1]
    # calibrated intervals, 5 runs, 21 parameters: P(Bin(5, .95) = 5) ** 21
    five = pd.DataFrame([{"run": r, "parameter": f"p{k}", "estimate": 0.0, "lo": -1.0, "hi": 1.0, "true": 0.0,
                          "covered": True} for r in range(5) for k in range(21)])
    assert study.calibration(five)["target_probability"] == pytest.approx(0.95 ** 105, rel=1e-9)
