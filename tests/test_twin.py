"""Notebook 04's orchestration: split-only fitting, causal RTG evaluation, the twin trading alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from workbench import features
from workbench import twin as dt
from workbench.data import ingest
from workbench.twin import backtest
from workbench.twin import steps as S
from workbench.twin import study as twin


@pytest.fixture(scope="module")
def setup(small_sim):
    d = ingest.load_wallet(small_sim.wallet_dir)
    feat = features.price_features(features.ohlcv(ingest.rebar(d, "1min")), 0.3, vol_window=30, volume_window=60)
    steps = S.build_steps(d.events, d.positions, ingest.rebar(d, "1min", "5s"), feat, notional=5000.0)
    data = twin.prepare(steps, gap=16, window=32, train_stride=16)
    torch.manual_seed(0)
    model = dt.TraderDecisionTransformer(state_dim=17, action_dim=5, d_model=16, n_layers=1, n_heads=2, max_len=32)
    return d, steps, data, model


def test_thresholds_and_normalisation_use_the_training_part_only(setup):
    _, steps, data, _ = setup
    changed = steps.copy()
    test_rows = data.rows("test")
    changed.iloc[test_rows, changed.columns.get_loc("flow")] *= 10
    changed.iloc[test_rows, changed.columns.get_loc("rsi")] = 99.0
    other = twin.prepare(changed, gap=16, window=32, train_stride=16)
    assert other.thresholds == data.thresholds
    assert other.normalizer.mean == data.normalizer.mean
    assert {k: v["states"].shape[1:] for k, v in data.windows.items()} == {k: (32, 17) for k in ("train", "val", "test")}


def test_causal_evaluation_never_reads_future_rewards(setup):
    _, _, data, model = setup
    inf = dt.TraderInference(model)
    base = twin.twin_predictions(inf, data, "test", "causal", target=1.0)
    w = data.windows["test"]
    k = int(w["mask"][0].sum()) // 2
    changed = twin.TwinData(**{**data.__dict__, "windows": {**data.windows, "test": {**w, "rewards": w["rewards"].copy()}}})
    changed.windows["test"]["rewards"][0, k:] += 5.0  # rewards of steps >= k of the first window
    again = twin.twin_predictions(inf, changed, "test", "causal", target=1.0)
    # the first window's steps up to k (its step k sees rewards < k only) are unchanged
    np.testing.assert_array_equal(again[: k + 1], base[: k + 1])


def test_twin_trades_alone_with_window_resets(setup):
    d, steps, data, model = setup
    test_steps = steps.iloc[data.rows("test")]
    ex = backtest.ExecutionModel.fit(steps["flow"].to_numpy()[data.masks["train"]], data.actions[data.masks["train"]])
    policy = twin.TwinPolicy(model, [0.0, 2.0], horizon=32)
    res = backtest.replay(test_steps, policy, ["a", "b"], backtest.QuoteBook(d.events), ex, data.normalizer, notional=5000.0)
    assert res.equity.shape == (len(test_steps), 2) and policy.n == len(test_steps)
    assert len(policy.states) == (len(test_steps) - 1) % 32 + 1  # the context restarted every 32 steps
    r = twin.window_returns(res.equity[:, 0], 5000.0, 32)
    assert len(r) == len(test_steps) // 32


def test_verdict_is_plain():
    t = pd.DataFrame({"macro_f1": [0.25, 0.24, 0.16]}, index=["twin", "bc", "majority"])
    assert twin.verdict(t, "twin", ["bc", "majority"]).startswith("The twin beats")
    t.loc["bc", "macro_f1"] = 0.3
    assert "does NOT beat bc" in twin.verdict(t, "twin", ["bc", "majority"])
