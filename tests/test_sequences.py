"""Step table for the trader twin: causal states, action classes, rewards, windows and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench import features
from workbench.data import ingest
from workbench.data.simulate import ACTIONS, load_truth
from workbench.twin import steps as S


@pytest.fixture(scope="module")
def steps_and_data(small_sim):
    d = ingest.load_wallet(small_sim.wallet_dir)
    feat = features.price_features(features.ohlcv(ingest.rebar(d, "1min")), 0.3, vol_window=30, volume_window=60)
    bars = ingest.rebar(d, "1min", "5s")
    return S.build_steps(d.events, d.positions, bars, feat), d, feat, bars


def test_step_table_shape_and_alignment(steps_and_data, small_sim):
    steps, d, _, bars = steps_and_data
    assert len(bars) - 2 <= len(steps) <= len(bars) and set(S.STATE_FEATURES) <= set(steps.columns)
    assert steps["slug"].isin(d.events["slug"]).all()  # no step of a market outside the data
    assert len(S.STATE_FEATURES) == 17
    assert (steps.index.second == 5).all()  # steps start at the trader's decision instants
    decisions, _ = load_truth(small_sim.wallet_dir.parents[1], small_sim.config.wallet)
    t = pd.to_datetime(decisions["t"], unit="ms", utc=True)
    assert t.isin(steps.index).all()
    # equity at the last step equals the trader's realised P&L once every market is settled
    assert steps["equity"].iloc[-1] == pytest.approx(d.positions["cum_realized_wallet"].iloc[-1], abs=1e-6)
    np.testing.assert_allclose(steps["reward"].sum() * 500.0, steps["equity"].iloc[-1], atol=1e-6)


def test_states_do_not_use_the_step_itself(steps_and_data):
    """Changing or removing everything from a step's start on leaves that step's state unchanged."""
    steps, d, feat, bars = steps_and_data
    cut = steps.index[len(steps) // 2]
    cut_ms = int(cut.value // 10**6)
    ev = d.events[d.events["t"] < cut_ms]
    trades, positions, _, _ = ingest.derive_tables(ev, "15min")
    bars_cut = bars[bars["bar_start"] <= cut_ms]  # the step grid up to and including the step at the cut
    feat_cut = features.price_features(features.ohlcv(ingest.build_bars(ev, positions, ingest.up_marks(ev), "1min")),
                                       0.3, vol_window=30, volume_window=60)
    steps_cut = S.build_steps(ev, positions, bars_cut, feat_cut)
    cols = [c for c in dict.fromkeys(S.STATE_FEATURES + S.TRADER_FEATURES + ("seconds_left",)) if c != "late"]
    a = steps.loc[:cut, cols]
    b = steps_cut.loc[:cut, cols].reindex(a.index)
    pd.testing.assert_frame_equal(a, b)


def test_action_thresholds_and_classes():
    flow = np.array([0, 0, 40, 45, 50, 120, 130, -42, -48, -125, -140, 0.0])
    th = S.fit_action_thresholds(flow)
    assert 50 < th.strong < 120
    np.testing.assert_array_equal(S.classify_flow(flow, th), [2, 2, 1, 1, 1, 0, 0, 3, 3, 4, 4, 2])
    assert list(S.class_balance(S.classify_flow(flow, th)).index) == list(ACTIONS)
    with pytest.raises(ValueError):
        S.fit_action_thresholds(np.zeros(10))


def test_split_is_chronological_with_gaps():
    sp = S.chronological_split(1000, 0.6, 0.2, gap=10)
    m = sp.masks()
    assert m["train"].sum() == 600 and not (m["train"] & m["val"]).any()
    assert np.flatnonzero(m["val"]).min() == 610 and np.flatnonzero(m["test"]).min() == 810
    assert np.flatnonzero(m["train"]).max() < np.flatnonzero(m["val"]).min() < np.flatnonzero(m["test"]).min()
    with pytest.raises(ValueError):
        S.chronological_split(100, 0.6, 0.2, gap=50)


def test_windows_and_returns_to_go():
    n, s_dim = 10, 3
    states = np.arange(n * s_dim, dtype=np.float32).reshape(n, s_dim)
    actions = np.arange(n) % 5
    rewards = np.linspace(0.01, 0.1, n)
    w = S.make_windows(states, actions, rewards, np.arange(2, 9), window=4)
    assert w["states"].shape == (2, 4, 3) and w["mask"].sum() == 8  # 7 rows: [2..5] and [5..8]
    np.testing.assert_array_equal(w["index"][0], [2, 3, 4, 5])
    r = rewards[2:6]
    np.testing.assert_allclose(w["rtg"][0], 100 * np.array([r.sum(), r[1:].sum(), r[2:].sum(), r[3:].sum()]),
                               rtol=1e-6)
    short = S.make_windows(states, actions, rewards, np.arange(0, 3), window=4)
    assert short["mask"][0].tolist() == [True, True, True, False] and short["rtg"][0, 3] == 0
    with pytest.raises(ValueError):
        S.make_windows(states, actions, rewards, np.array([0, 2, 3]), window=4)


def test_normalizer_uses_training_statistics_only(steps_and_data):
    steps, *_ = steps_and_data
    sp = S.chronological_split(len(steps), gap=30)
    train = steps.iloc[: sp.train_end]
    norm = S.Normalizer.fit(train)
    x = norm.transform(train)
    assert x.shape == (len(train), 17) and np.isfinite(x).all()
    z = x[:, S.STATE_FEATURES.index("rsi")]
    assert abs(z[train["rsi"].notna().to_numpy()].mean()) < 1e-3
    assert S.Normalizer.from_dict(norm.to_dict()).std == norm.std
    assert np.abs(x[:, S.STATE_FEATURES.index("position_size_ratio")]).max() <= 1.0 + 1e-6
