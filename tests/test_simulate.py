"""The simulator: determinism, the exact input format, realistic BTC behaviour, the hidden policy."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.data.simulate import ACTIONS, SimConfig, load_truth, ordered_logit_probs, simulate, simulate_path


def _digest(folder) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.json")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = SimConfig(days=0.1, seed=3)
    a = simulate(cfg, tmp_path / "a")
    b = simulate(cfg, tmp_path / "b")
    c = simulate(SimConfig(days=0.1, seed=4), tmp_path / "c")
    assert _digest(a.wallet_dir) == _digest(b.wallet_dir)
    assert _digest(a.wallet_dir) != _digest(c.wallet_dir)
    da, _ = load_truth(tmp_path / "a", cfg.wallet)
    db, _ = load_truth(tmp_path / "b", cfg.wallet)
    pd.testing.assert_frame_equal(da, db)


def test_files_follow_the_input_format(small_sim):
    files = sorted(small_sim.wallet_dir.glob("*.json"))
    assert len(files) == small_sim.config.n_markets == 24
    required = {"trade": {"price", "side", "size", "usdc", "outcome"}, "last_trade_price": {"price", "side", "size"},
                "price_change": {"bid", "ask"}, "bar": {"open", "high", "low", "close", "volume"},
                "resolution": {"outcome"}}
    for f in files:
        m = re.fullmatch(r"btc-updown-15m-(\d+)_prices\.json", f.name)
        assert m and int(m[1]) % 900 == 0
        doc = json.loads(f.read_text())
        assert set(doc) == {"slug", "prices"} and doc["slug"] == f"btc-updown-15m-{m[1]}"
        start, end = int(m[1]) * 1000, int(m[1]) * 1000 + 900_000
        ts = [e["t"] for e in doc["prices"]]
        assert ts == sorted(ts) and start <= ts[0] and ts[-1] == end
        for e in doc["prices"]:
            assert isinstance(e["t"], int) and required[e["type"]] <= set(e)
            if e["type"] == "bar":  # a bar is stamped at its last millisecond: never visible early
                assert e["t"] == e["start"] + 59_999


def test_btc_path_is_realistic():
    cfg = SimConfig(days=30, seed=7)
    price, sigma, regime = simulate_path(cfg)
    one_min = np.diff(np.log(price[::60]))
    ann_vol = one_min.std() * np.sqrt(365 * 24 * 60)
    assert 0.35 < ann_vol < 0.80  # BTC's usual range
    assert stats.kurtosis(one_min) > 1.0  # fat tails at one minute
    fifteen = np.diff(np.log(price[::900]))
    assert stats.kurtosis(fifteen) > 0.5
    assert 0.05 < regime.mean() < 0.4  # both regimes visited
    # volatility clusters: |returns| are autocorrelated at one hour
    a = np.abs(np.diff(np.log(price[::3600])))
    assert np.corrcoef(a[:-1], a[1:])[0, 1] > 0.1


def test_hidden_policy_truth(small_sim):
    decisions, markets = load_truth(small_sim.wallet_dir.parents[1], small_sim.config.wallet)
    probs = decisions[[f"p_{a}" for a in ACTIONS]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert (probs >= 0).all()
    assert set(decisions["action"]) <= set(ACTIONS)
    # fills only follow BUY/SELL decisions, and their direction matches the action
    traded = decisions[decisions["n_fills"] > 0]
    assert (traded["action"] != "HOLD").all()
    assert (np.sign(traded["executed_qty"]) == np.where(traded["action"].str.contains("BUY"), 1, -1)).all()
    assert len(markets) == 24 and set(markets["winner"]) <= {"Up", "Down"}
    # the winner is Up exactly when BTC ended at or above its start
    assert ((markets["price_end"] >= markets["price_start"]) == (markets["winner"] == "Up")).all()


def test_ordered_logit_probabilities():
    th = (-3.6, -2.0, 2.0, 3.6)
    p = ordered_logit_probs(0.0, th)  # symmetric: STRONG_BUY = STRONG_SELL, BUY = SELL
    assert p[0] == pytest.approx(p[4]) and p[1] == pytest.approx(p[3])
    assert p[2] == pytest.approx(1 / (1 + np.exp(-2.0)) - 1 / (1 + np.exp(2.0)))
    assert ordered_logit_probs(5.0, th)[0] > 0.5  # a strong score favours STRONG_BUY
    assert ordered_logit_probs(-5.0, th)[4] > 0.5


def test_config_round_trip():
    cfg = SimConfig(days=2, seed=9)
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="aligned"):
        _ = SimConfig(start="2026-01-05T00:05:00+00:00").start_unix
