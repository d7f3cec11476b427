"""Labeling: the mlfinlab reference pipeline, hand-computed barriers, no look-ahead, the trader's trades and
exits, the AFML ch. 13 heat-maps, and the figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from references import ou_loop_exit_pnl

from workbench.config import EXTERNAL_DIR
from workbench.data import derive_tables, load_wallet
from workbench.labels import (LabelingError, add_vertical_barrier, barrier_pnl, cusum_filter, daily_vol, exit_steps,
                              fill_entries, fit_exit_barriers, label_trades, market_paths, ou_barrier_grid, ou_exit_pnl,
                              ou_optimum, ou_paths, round_trips, triple_barrier)

START = 1767600000  # 2026-01-05 08:00 UTC, a 15-minute boundary
T0 = START * 1000
WALLET = "0xabc0000000000000000000000000000000000abc"


# ------------------------------------------------------------------------------------------------
# the mlfinlab (2019) reference numbers on the E-mini dollar bars
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dollar_close() -> pd.Series:
    df = pd.read_csv(EXTERNAL_DIR / "afml_samples" / "dollar_bar_sample.csv", index_col="date_time", parse_dates=True)
    return df["close"]


def test_daily_vol_reproduces_mlfinlab(dollar_close):
    vol = daily_vol(dollar_close, lookback=100)
    assert len(vol) == 960
    assert vol.iloc[-1] == pytest.approx(0.008968238932170641, rel=1e-12)


def test_cusum_uses_log_differences(dollar_close):
    assert len(cusum_filter(dollar_close, 0.02)) == 9
    assert len(cusum_filter(dollar_close, 0.02, log=False)) == 968  # raw points: fires on almost every bar
    ev = cusum_filter(dollar_close, 0.02)
    assert ev.isin(dollar_close.index).all()


def test_triple_barrier_reproduces_mlfinlab(dollar_close):
    vol = daily_vol(dollar_close, lookback=100)
    events = cusum_filter(dollar_close, 0.02)
    vertical = add_vertical_barrier(events, dollar_close, num_days=1)
    assert vertical.isna().sum() == 1  # the last event's day runs past the data
    out = triple_barrier(dollar_close, events, [1, 1], vol, vertical=vertical, min_ret=0.005)
    assert len(out) == 8
    assert out["target"].iloc[0] == 0.010166261175903357
    assert out["target"].iloc[-1] == 0.006455887663302871
    assert out["label"].value_counts().to_dict() == {1: 3, -1: 3, 0: 2}
    assert out["barrier"].value_counts().to_dict() == {"upper": 3, "lower": 3, "vertical": 2}
    assert out["truncated"].tolist() == [False] * 7 + [True]
    # AFML's getBins convention labels the two vertical touches by the sign of their (positive) return
    signed = triple_barrier(dollar_close, events, [1, 1], vol, vertical=vertical, min_ret=0.005, vertical_label="sign")
    assert signed["label"].value_counts().to_dict() == {1: 5, -1: 3}
    # the same on a tz-aware index
    utc = dollar_close.tz_localize("UTC")
    out_utc = triple_barrier(utc, events.tz_localize("UTC"), [1, 1], daily_vol(utc), min_ret=0.005,
                             vertical=add_vertical_barrier(events.tz_localize("UTC"), utc))
    np.testing.assert_array_equal(out_utc["label"], out["label"])
    np.testing.assert_array_equal(out_utc["t1"].dt.tz_localize(None).to_numpy(), out["t1"].to_numpy())


# ------------------------------------------------------------------------------------------------
# hand-computed barriers
# ------------------------------------------------------------------------------------------------
def _series(prices: list[float], tz: str | None = None) -> pd.Series:
    idx = pd.date_range("2024-03-01 09:00", periods=len(prices), freq="min", tz=tz)
    return pd.Series(prices, index=idx, dtype=float)


def test_asymmetric_barriers_without_side():
    """pt = 1, sl = 3 target widths: the -1% dip must not stop out. (mlfinlab 2019 used pt for both
    barriers when side was None and would label this -1 at 09:01.)"""
    close = _series([100.0, 99.0, 98.5, 101.2, 95.0])
    out = triple_barrier(close, close.index[:1], (1, 3), 0.01, vertical=4)
    row = out.iloc[0]
    assert row["barrier"] == "upper" and row["t1"] == close.index[3] and row["label"] == 1
    assert row["ret"] == pytest.approx(0.012)
    assert row["upper"] == pytest.approx(0.01) and row["lower"] == pytest.approx(-0.03)
    # and the mirror image: a wide profit target does not hide a tight stop
    out = triple_barrier(close, close.index[:1], (3, 1), 0.01, vertical=4)
    assert out["barrier"].iloc[0] == "lower" and out["t1"].iloc[0] == close.index[1] and out["label"].iloc[0] == -1


def test_disabled_barriers_and_vertical_labels():
    close = _series([100.0, 99.0, 98.0, 103.0, 101.0])
    e = close.index[:1]
    only_pt = triple_barrier(close, e, (2, 0), 0.01, vertical=4)  # no stop loss: runs to +3%
    assert only_pt["barrier"].iloc[0] == "upper" and only_pt["t1"].iloc[0] == close.index[3]
    assert np.isnan(only_pt["lower"].iloc[0])
    only_sl = triple_barrier(close, e, (None, 1.5), 0.01, vertical=4)
    assert only_sl["barrier"].iloc[0] == "lower" and only_sl["t1"].iloc[0] == close.index[2]
    neither = triple_barrier(close, e, (0, 0), 0.01, vertical=2)
    assert neither["barrier"].iloc[0] == "vertical" and neither["t1"].iloc[0] == close.index[2]
    assert neither["ret"].iloc[0] == pytest.approx(-0.02) and neither["label"].iloc[0] == 0
    signed = triple_barrier(close, e, (0, 0), 0.01, vertical=2, vertical_label="sign")
    assert signed["label"].iloc[0] == -1


def test_meta_labels_with_side():
    close = _series([100.0, 99.4, 98.9, 101.0, 102.0])
    e = close.index[[0, 2]]
    out = triple_barrier(close, e, (1, 2), 0.01, vertical=2, side=pd.Series([-1, 1], index=e))
    short, long_ = out.iloc[0], out.iloc[1]
    # short from 100: profit taking at -1% in price, reached at 98.9 (09:02): meta-label 1
    assert short["barrier"] == "upper" and short["t1"] == close.index[2] and short["label"] == 1
    assert short["ret"] == pytest.approx(0.011) and short["side"] == -1
    # long from 98.9: +1% = 99.889, reached at 101.0
    assert long_["barrier"] == "upper" and long_["ret"] == pytest.approx(101.0 / 98.9 - 1) and long_["label"] == 1
    losing = triple_barrier(close, close.index[[2]], (5, 1), 0.01, vertical=2, side=-1)
    assert losing["barrier"].iloc[0] == "lower" and losing["label"].iloc[0] == 0
    assert losing["ret"].iloc[0] == pytest.approx(-(101.0 / 98.9 - 1))
    with pytest.raises(LabelingError, match="side must be"):
        triple_barrier(close, e, (1, 1), 0.01, side=[1, 0])


def test_vertical_forms_and_truncation():
    close = _series([10.0, 10.1, 10.2, 10.3, 10.4, 10.5])
    e = close.index[[1, 4]]
    by_bars = triple_barrier(close, e, (0, 0), 0.01, vertical=2, vertical_label="sign")
    assert by_bars["t1"].tolist() == [close.index[3], close.index[5]]
    assert by_bars["truncated"].tolist() == [False, True]
    assert by_bars["label"].tolist() == [1, 1]
    by_time = triple_barrier(close, e, (0, 0), 0.01, vertical=pd.Timedelta("90s"))
    assert by_time["t1"].tolist() == [close.index[2], close.index[5]]  # last bar at or before t0 + 90 s
    assert by_time["truncated"].tolist() == [False, True]  # 09:04 + 90 s is past the last bar (09:05)
    expiry = pd.Series([close.index[4], pd.NaT], index=e)  # a per-event expiry; NaT = none in the data
    by_ts = triple_barrier(close, e, (0, 0), 0.01, vertical=expiry)
    assert by_ts["t1"].tolist() == [close.index[4], close.index[5]]
    assert by_ts["truncated"].tolist() == [False, True]
    as_list = triple_barrier(close, e, (0, 0), pd.Series([0.001, 0.01], index=e), vertical=[close.index[4], pd.NaT],
                             min_ret=0.005)  # a list of barriers is aligned to the events before min_ret drops one
    assert as_list.index.tolist() == [e[1]] and as_list["truncated"].tolist() == [True]
    # an event between bars enters at the last price at or before it
    mid = pd.DatetimeIndex([close.index[1] + pd.Timedelta("30s")])
    between = triple_barrier(close, mid, (0, 0), 0.01, vertical=1, returns="absolute")
    assert between["t1"].iloc[0] == close.index[2] and between["ret"].iloc[0] == pytest.approx(0.1)
    none = triple_barrier(close, e, (0, 0), 0.01)
    assert none["truncated"].all() and (none["t1"] == close.index[-1]).all()


def test_min_ret_and_targets():
    close = _series([100.0, 101.0, 102.0, 103.0])
    e = close.index[:3]
    tgt = pd.Series([0.004, np.nan, 0.02], index=e)
    out = triple_barrier(close, e, (1, 1), tgt, vertical=1, min_ret=0.005)
    assert out.index.tolist() == [close.index[2]]  # 0.004 <= min_ret, NaN dropped
    absolute = triple_barrier(close, e, (1, 1), 0.5, vertical=3, returns="absolute")
    assert (absolute["barrier"] == "upper").all() and absolute["ret"].tolist() == [1.0, 1.0, 1.0]


def test_bad_input_is_a_clear_error():
    close = _series([1.0, 2.0, 3.0])
    dup = pd.Series([1.0, 2.0, 3.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-01", "2024-01-02"]))
    with pytest.raises(LabelingError, match="duplicate timestamps"):
        triple_barrier(dup, dup.index[:1], (1, 1), 0.1)
    with pytest.raises(LabelingError, match="not sorted"):
        triple_barrier(close.iloc[::-1], close.index[:1], (1, 1), 0.1)
    with pytest.raises(LabelingError, match="event times are not sorted"):
        triple_barrier(close, close.index[::-1], (1, 1), 0.1)
    with pytest.raises(LabelingError, match="duplicate event"):
        triple_barrier(close, close.index[[0, 0]], (1, 1), 0.1)
    with pytest.raises(LabelingError, match="precede the first price"):
        triple_barrier(close, [close.index[0] - pd.Timedelta("1min")], (1, 1), 0.1)
    with pytest.raises(LabelingError, match="tz-aware but close"):
        triple_barrier(close, close.index[:1].tz_localize("UTC"), (1, 1), 0.1)
    with pytest.raises(LabelingError, match="stop-loss multiple"):
        triple_barrier(close, close.index[:1], (1, -1), 0.1)
    with pytest.raises(LabelingError, match="NaN"):
        triple_barrier(_series([1.0, np.nan]), close.index[:1], (1, 1), 0.1)
    with pytest.raises(LabelingError, match="DatetimeIndex"):
        daily_vol(pd.Series([1.0, 2.0]))
    with pytest.raises(LabelingError, match="threshold"):
        cusum_filter(close, 0)


# ------------------------------------------------------------------------------------------------
# no look-ahead
# ------------------------------------------------------------------------------------------------
_COLS = ["t1", "barrier", "ret", "label", "truncated"]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), pt=st.sampled_from([0, 0.5, 1.0, 2.0]), sl=st.sampled_from([0, 0.7, 1.0, 3.0]),
       vertical=st.sampled_from([None, 3, 15, "20min"]), with_side=st.booleans(), pick=st.floats(0.0, 1.0),
       mode=st.sampled_from(["after_t1", "after_vertical", "append"]), returns=st.sampled_from(["simple", "absolute"]))
def test_labels_never_look_ahead(seed, pt, sl, vertical, with_side, pick, mode, returns):
    """Perturb every price after an event's first touch (or after its vertical barrier), or append bars:
    that event, and every event that had ended by then, keeps its label, return and touch time."""
    rng = np.random.default_rng(seed)
    n = 120
    idx = pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC")
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.003, n))), index=idx)
    events = idx[np.sort(rng.choice(n, 25, replace=False))]
    side = rng.choice([-1, 1], len(events)) if with_side else None
    kw = dict(vertical=vertical, side=side, returns=returns)
    base = triple_barrier(close, events, (pt, sl), 0.004 if returns == "simple" else 0.4, **kw)
    chosen = base.iloc[int(pick * (len(base) - 1))]
    if mode == "append":
        extra = pd.Series(close.iloc[-1] * np.exp(np.cumsum(rng.normal(0, 0.05, 30))),
                          index=idx[-1] + pd.to_timedelta(np.arange(1, 31), unit="min"))
        other = pd.concat([close, extra])
        final = ~base["truncated"]
    else:
        cut = chosen["t1"] if mode == "after_t1" else chosen["t_vertical"]
        later = close.index > cut
        other = close.copy()
        other[later] = other[later] * np.exp(rng.normal(0, 0.05, int(later.sum())))
        final = base["t1"] <= cut
        assert final.loc[chosen.name]
    again = triple_barrier(other, events, (pt, sl), 0.004 if returns == "simple" else 0.4, **kw)
    pd.testing.assert_frame_equal(again.loc[final, _COLS], base.loc[final, _COLS])


# ------------------------------------------------------------------------------------------------
# the trader's trades
# ------------------------------------------------------------------------------------------------
def _write_market(folder: Path, start: int, events: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"btc-updown-15m-{start}_prices.json").write_text(
        json.dumps({"slug": f"btc-updown-15m-{start}", "prices": events}))


def _q(t: int, b: float, a: float) -> dict:
    return {"t": T0 + t, "type": "price_change", "outcome": "Up", "bid": b, "ask": a}


def _f(t: int, o: str, s: str, p: float, z: float) -> dict:
    return {"t": T0 + t, "type": "trade", "outcome": o, "side": s, "price": p, "size": z, "usdc": round(p * z, 6)}


@pytest.fixture
def hand(tmp_path):
    """One market: the ingestion test's fills, quotes in between, Up wins at 900 s; a second market with
    a long round trip, then a short one (Down bought), Down wins."""
    _write_market(tmp_path / WALLET, START, [
        _q(100, 0.39, 0.41), _f(10_000, "Up", "BUY", 0.40, 100), _q(20_000, 0.54, 0.56),
        _f(30_000, "Up", "BUY", 0.55, 50), _q(40_000, 0.59, 0.61), _f(60_000, "Up", "SELL", 0.60, 60),
        _q(70_000, 0.69, 0.71), _f(80_000, "Down", "BUY", 0.30, 40), _q(100_000, 0.49, 0.51),
        {"t": T0 + 900_000, "type": "resolution", "outcome": "Up"}])
    m2 = 900_000
    _write_market(tmp_path / WALLET, START + 900, [
        _q(m2 + 100, 0.49, 0.51), _f(m2 + 1_000, "Up", "BUY", 0.50, 100), _q(m2 + 5_000, 0.59, 0.61),
        _f(m2 + 6_000, "Up", "SELL", 0.60, 100), _f(m2 + 7_000, "Down", "BUY", 0.30, 50), _q(m2 + 8_000, 0.79, 0.81),
        _f(m2 + 9_000, "Down", "SELL", 0.20, 50), {"t": T0 + 1_800_000, "type": "resolution", "outcome": "Down"}])
    return load_wallet(tmp_path / WALLET)


def test_market_paths_end_at_settlement(hand):
    p = market_paths(hand.events)
    first = p[p["slug"] == f"btc-updown-15m-{START}"]
    np.testing.assert_allclose(first["mid"], [0.40, 0.55, 0.60, 0.70, 0.50, 1.0])
    assert first["settlement"].tolist() == [False] * 5 + [True] and first["t"].iloc[-1] == T0 + 900_000
    second = p[p["slug"] == f"btc-updown-15m-{START + 900}"]
    assert second["mid"].iloc[-1] == 0.0 and second["t"].iloc[-1] == T0 + 1_800_000


def test_label_trades_exact(hand):
    lab = label_trades(hand.events, fill_entries(hand.trades), pt_sl=(0.12, 0.15), target=1.0)
    first = lab[lab["slug"] == f"btc-updown-15m-{START}"]
    assert first["side"].tolist() == [1, 1, -1, -1]
    np.testing.assert_allclose(first["entry_price"], [0.40, 0.55, 0.60, 0.70])
    assert first["barrier"].tolist() == ["upper", "upper", "lower", "upper"]
    assert first["t1"].tolist() == [T0 + 20_000, T0 + 70_000, T0 + 900_000, T0 + 100_000]
    np.testing.assert_allclose(first["ret"], [0.15, 0.15, -0.40, 0.20], atol=1e-12)
    assert first["label"].tolist() == [1, 1, 0, 1]
    assert first["settled"].tolist() == [False, False, True, False] and not first["truncated"].any()
    short = label_trades(hand.events, fill_entries(hand.trades), vertical="30s")
    s3 = short.loc[first.index[2]]  # the Up sale at 60 s, vertical at 90 s: marked at the 70 s quote
    assert s3["barrier"] == "vertical" and s3["t1"] == T0 + 70_000 and s3["ret"] == pytest.approx(-0.10)
    assert s3["label"] == 0


def test_round_trips_exact(hand):
    rt = round_trips(hand.positions)
    assert len(rt) == 3 and rt["closed"].all()
    a, b, c = (rt.iloc[i] for i in range(3))
    assert (a["t"], a["side"], a["entry_price"], a["entry_qty"], a["max_qty"]) == (T0 + 10_000, 1, 0.40, 100, 150)
    assert a["exit_reason"] == "settlement" and a["exit_t"] == T0 + 900_000 and a["exit_price"] == 1.0
    assert a["pnl"] == pytest.approx(9.0 + 49.5 - 12.0)
    assert (b["side"], b["exit_reason"], b["exit_price"], b["pnl"]) == (1, "trade", 0.60, pytest.approx(10.0))
    assert (c["side"], c["entry_price"], c["exit_price"]) == (-1, pytest.approx(0.70), pytest.approx(0.80))
    assert c["pnl"] == pytest.approx(-5.0) and c["holding_s"] == pytest.approx(2.0)


def test_exit_steps_use_the_running_average_cost(hand):
    rt = round_trips(hand.positions)
    st_ = exit_steps(hand.events, rt, hand.positions, step="60s")
    a = st_[st_["trip"] == 0]
    assert len(a) == 14 and a["exit"].sum() == 0  # settled: at risk at each step strictly before 900 s
    assert a["time"].iloc[0] == T0 + 70_000
    # at 70 s: mid 0.70, average cost 0.45 (after the 60 s sale); from 130 s: mid 0.50, cost 0.25
    np.testing.assert_allclose(a["pnl"].iloc[:3], [0.25, 0.25, 0.25])
    np.testing.assert_allclose(a["entry"].iloc[:2], [0.45, 0.25])
    b = st_[st_["trip"] == 1]  # closed by a trade 5 s after entry: one step, exiting, at the exit time
    assert b["k"].tolist() == [1] and b["exit"].tolist() == [1] and b["time"].tolist() == [T0 + 906_000]


def test_barrier_pnl_exact(hand):
    rt = round_trips(hand.positions).iloc[:1]
    pt = barrier_pnl(hand.events, rt, 0.12, 0.15)
    # first check at 70 s: mid 0.70 - 0.40 >= 0.12: sell 100 at the bid 0.69
    assert pt["rule_exit_reason"].iloc[0] == "pt" and pt["rule_pnl"].iloc[0] == pytest.approx(29.0)
    assert pt["trader_pnl"].iloc[0] == pytest.approx(46.5)
    hold = barrier_pnl(hand.events, rt, 0.5, 0.5)
    assert hold["rule_exit_reason"].iloc[0] == "settlement" and hold["rule_pnl"].iloc[0] == pytest.approx(60.0)
    timed = barrier_pnl(hand.events, rt, 0.5, 0.5, holding_s=120)
    assert timed["rule_exit_reason"].iloc[0] == "holding" and timed["rule_pnl"].iloc[0] == pytest.approx(9.0)


@pytest.fixture(scope="module")
def small_trades(small_events):
    return derive_tables(small_events, "15min")[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), vertical=st.sampled_from([None, "3min"]),
       after_vertical=st.booleans())
def test_trade_labels_never_look_ahead(small_events, small_trades, pick, seed, vertical, after_vertical):
    """Perturb every quote after a fill's first touch (or its vertical barrier) and flip later resolutions:
    every fill that had ended by then keeps its label."""
    entries = fill_entries(small_trades)
    base = label_trades(small_events, entries, vertical=vertical)
    chosen = base.iloc[int(pick * (len(base) - 1))]
    v_ms = pd.Timedelta(vertical).value // 10**6 if vertical else None
    cut = int(chosen["t"] + v_ms) if (vertical and after_vertical) else int(chosen["t1"])
    rng = np.random.default_rng(seed)
    ev = small_events.copy()
    later = (ev["t"] > cut).to_numpy()
    q = later & (ev["type"] == "price_change").to_numpy()
    shift = rng.normal(0, 0.1, int(q.sum()))
    ev.loc[q, "bid"] = np.clip(ev.loc[q, "bid"] + shift, 0, 0.98)
    ev.loc[q, "ask"] = np.clip(ev.loc[q, "bid"] + 0.02, 0, 1)
    flip = later & (ev["type"] == "resolution").to_numpy()
    ev.loc[flip, "outcome"] = np.where(ev.loc[flip, "outcome"] == "Up", "Down", "Up")
    again = label_trades(ev, entries, vertical=vertical)
    done = (base["t1"] <= cut).to_numpy(dtype=bool)  # touched by the cut
    if vertical:  # or whose vertical barrier had passed by then, whatever t1 says
        done |= (entries["t"] + v_ms <= cut).to_numpy()
    assert done[base.index.get_loc(chosen.name)]
    pd.testing.assert_frame_equal(again[done], base[done])


def test_labels_on_simulated_trades(small_events, small_trades):
    lab = label_trades(small_events, fill_entries(small_trades), pt_sl=(0.12, 0.15))
    assert len(lab) == len(small_trades) and (lab["barrier"] != "none").all()
    up, lo = lab["barrier"] == "upper", lab["barrier"] == "lower"
    assert (lab.loc[up, "ret"] >= 0.12 - 1e-9).all() and (lab.loc[lo, "ret"] <= -0.15 + 1e-9).all()
    assert (lab.loc[up, "label"] == 1).all() and (lab.loc[lo, "label"] == 0).all()
    assert (lab["t1"] > lab["t"]).all()
    end = small_trades["market_end"].to_numpy(dtype=np.int64)
    assert (lab["t1"].to_numpy(dtype=np.int64) <= end).all()
    assert (lab.loc[lab["barrier"] == "vertical", "settled"]).all()  # with no time limit, vertical = settlement


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    from workbench.data.simulate import SimConfig, simulate

    res = simulate(SimConfig(days=2, seed=7), tmp_path_factory.mktemp("raw2d"))
    return load_wallet(res.wallet_dir)


def test_fitted_exit_barriers_recover_the_hidden_policy(two_days):
    """The simulated trader takes profit at +0.12 and cuts at -0.15 per share (probabilistically)."""
    d = two_days
    trips = round_trips(d.positions)
    assert trips["closed"].all() and set(trips["exit_reason"]) == {"trade", "settlement"}
    fit = fit_exit_barriers(d.events, trips, d.positions, n_boot=100, seed=1)
    best = fit.best
    assert 0.09 <= best["pt"] <= 0.15 and 0.12 <= best["sl"] <= 0.19
    assert best["holding_s"] >= 480  # no time limit in the policy
    assert best["rate_triggered"] > 3 * best["rate_base"]  # reaching a barrier makes an exit far likelier
    assert best["explained"] > 0.4 and best["pseudo_r2"] > 0.05
    assert ((fit.region["pt"] - 0.12).abs() < 0.02).any()
    assert len(fit.grid) == 40 * 40 * 6 and fit.grid["delta_loglik"].min() == 0
    iv = fit.intervals
    assert iv.loc["pt", "boot_lo"] <= 0.12 <= iv.loc["pt", "boot_hi"] + 0.01
    pnl = barrier_pnl(d.events, trips, best["pt"], best["sl"], best["holding_s"])
    assert len(pnl) == len(trips) and pnl["rule_pnl"].notna().all()
    assert set(pnl["rule_exit_reason"]) <= {"pt", "sl", "holding", "settlement"}
    assert pnl["trader_pnl"].sum() == pytest.approx(d.positions["realized_delta"].sum())


# ------------------------------------------------------------------------------------------------
# AFML ch. 13: optimal trading rules on OU paths
# ------------------------------------------------------------------------------------------------
def test_ou_paths_follow_the_recursion():
    paths = ou_paths(5.0, 25.0, sigma=1.0, max_hp=30, n_paths=4, seed=3)
    eps = np.random.default_rng(3).standard_normal((30, 4))
    phi = 2 ** (-1 / 25)
    for k in range(4):
        p = 0.0
        for t in range(30):
            p = (1 - phi) * 5.0 + phi * p + 1.0 * eps[t, k]
            assert paths[k, t] == p


@pytest.mark.parametrize("forecast,half_life", [(0.0, 5.0), (5.0, 5.0), (5.0, 25.0)])
def test_ou_grid_matches_a_plain_loop(forecast, half_life):
    grid = np.linspace(0.5, 10, 21)
    paths = ou_paths(forecast, half_life, n_paths=60, seed=5)
    fast = ou_exit_pnl(paths, grid, grid)
    slow = ou_loop_exit_pnl(paths, grid, grid)
    np.testing.assert_array_equal(fast, slow)
    sharpe = ou_barrier_grid(forecast, half_life, n_paths=60, seed=5)
    np.testing.assert_allclose(sharpe.to_numpy(), slow.mean(-1) / slow.std(-1), rtol=1e-12)


@pytest.fixture(scope="module")
def ou_grids():
    return {k: ou_barrier_grid(*k, n_paths=10_000, seed=0) for k in [(0.0, 5.0), (5.0, 5.0), (5.0, 25.0)]}


def test_ou_optimum_where_the_book_finds_it(ou_grids):
    g = ou_grids
    assert g[(0.0, 5.0)].shape == (21, 21)
    zero = ou_optimum(g[(0.0, 5.0)])  # no forecast: small profit taking, wide stop loss
    assert zero["pt"] <= 2.5 and zero["sl"] >= 7
    assert 5 <= ou_optimum(g[(5.0, 5.0)])["pt"] <= 7  # about 6
    assert 2 <= ou_optimum(g[(5.0, 25.0)])["pt"] <= 4  # about 3


@pytest.mark.parametrize("key", [(0.0, 5.0), (5.0, 5.0), (5.0, 25.0)])
def test_ou_max_sharpe_close_to_a_loop_reference(ou_grids, key):
    grid = np.linspace(0.5, 10, 21)
    slow = ou_loop_exit_pnl(ou_paths(*key, n_paths=250, seed=11), grid, grid)
    ref_max = np.nanmax(slow.mean(-1) / slow.std(-1))
    assert ou_optimum(ou_grids[key])["sharpe"] == pytest.approx(ref_max, rel=0.2)


# ------------------------------------------------------------------------------------------------
# figures and the slider UI (headless)
# ------------------------------------------------------------------------------------------------
def test_figures_and_sliders_headless(tmp_path, dollar_close, ou_grids, hand, capsys):
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from workbench.labels import ui
    from workbench.plots import save

    vol = daily_vol(dollar_close)
    ev = cusum_filter(dollar_close, 0.01)
    fig = ui.barrier_figure(dollar_close, ev, 1.0, 2.0, 30, vol, min_ret=0.003)
    assert len(fig.axes) == 3
    assert save(fig, "barriers", tmp_path).stat().st_size > 10_000
    box = ui.barrier_sliders(dollar_close, ev, vol, pt=1.0, sl=2.0, vertical=30)
    assert isinstance(box, widgets.VBox)
    sliders = box.children[0].children
    assert [s.description for s in sliders] == ["profit taking ×target", "stop loss ×target", "vertical (bars)"]
    assert all(s.continuous_update is False for s in sliders)
    sliders[0].value = 0.5  # redraws through interactive_output without a frontend
    fig2 = ui.ou_heatmap(ou_grids[(5.0, 5.0)])
    assert "best pt 5.72" in fig2.axes[0].get_title()
    ui.ou_heatmap_panel(list(ou_grids.values()))
    rt = round_trips(hand.positions)
    fit = fit_exit_barriers(hand.events, rt, hand.positions, n_boot=5)
    ui.exit_fit_figure(fit, truth=(0.12, 0.15), pnl=barrier_pnl(hand.events, rt, 0.12, 0.15))
    plt.close("all")
    capsys.readouterr()
    assert math.isfinite(fit.best["loglik"])
