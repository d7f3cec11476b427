"""Several underlyings: the simulator's assets, ingestion keyed by asset, per-asset features, the ASSETS parameter."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from workbench.chain import ChainError, Profile
from workbench.data import ingest
from workbench.data.schema import normalise_assets
from workbench.data.simulate import (ASSET_PROFILES, SimConfig, asset_config, load_sim_config, load_truth,
                                     price_decimals, simulate, simulate_path)
from workbench.features import asset_features, volatility_by_asset
from workbench.twin.steps import build_steps

ALL = tuple(ASSET_PROFILES)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory):
    raw = tmp_path_factory.mktemp("multi")
    cfg = SimConfig(days=1.0, seed=5, assets=ALL)
    res = simulate(cfg, raw)
    return cfg, raw, res, ingest.load_wallet(res.wallet_dir, progress=False)


def test_adding_assets_leaves_btc_bytes_unchanged(tmp_path):
    one = simulate(SimConfig(days=0.25, seed=5), tmp_path / "one")
    two = simulate(SimConfig(days=0.25, seed=5, assets=("btc", "eth")), tmp_path / "two")
    btc = sorted(one.wallet_dir.iterdir())
    assert [p.name for p in btc] == sorted(p.name for p in two.wallet_dir.glob("btc-*"))
    assert all(p.read_bytes() == (two.wallet_dir / p.name).read_bytes() for p in btc)
    assert len(list(two.wallet_dir.glob("eth-updown-15m-*_prices.json"))) == one.n_files == two.n_files // 2
    d1, _ = load_truth(tmp_path / "one", one.config.wallet)
    d2, _ = load_truth(tmp_path / "two", two.config.wallet, "btc")
    pd.testing.assert_frame_equal(d1, d2, check_exact=True)
    # a BTC-only configuration records no `assets` key: simulations made before assets existed stay valid
    assert "assets" not in SimConfig().to_dict() and SimConfig.from_dict(two.config.to_dict()) == two.config


def test_each_asset_has_its_own_level_volatility_and_precision(multi):
    cfg, raw, res, _ = multi
    _, markets = load_truth(raw, cfg.wallet)
    assert markets.groupby("underlying").size().to_dict() == {a: cfg.n_markets for a in ALL}
    for a in ALL:
        s0 = ASSET_PROFILES[a].get("s0", cfg.s0)
        first = json.loads(sorted(res.wallet_dir.glob(f"{a}-updown-15m-*"))[0].read_text())
        bar = next(e for e in first["prices"] if e["type"] == "bar")
        assert abs(bar["open"] / s0 - 1) < 0.1, (a, bar["open"], s0)
        # prices keep six significant digits: XRP at 2.3 is not rounded to cents
        assert round(bar["close"], price_decimals(s0)) == bar["close"] and price_decimals(s0) >= 6 - len(str(int(s0)))
    # over 20 days each path's realised volatility is near its own long-run level, and BTC is the calmest
    vol = {}
    for a in ALL:
        price, _, _ = simulate_path(asset_config(SimConfig(days=20, seed=5), a))
        vol[a] = float(np.diff(np.log(price)).std() * math.sqrt(365 * 86400))
        assert 0.8 < vol[a] / asset_config(cfg, a).annual_vol < 1.5, (a, vol[a])
    assert min(vol, key=vol.get) == "btc", vol
    assert (markets.groupby("underlying")["n_trades"].sum() > 0).all()  # the trader trades every asset


def test_ingestion_keys_everything_by_asset_and_select_reconciles(multi):
    cfg, _, _, data = multi
    summary = ingest.asset_summary(data, ["BTC-USD", "ETH-USD"])
    assert summary["markets"].to_dict() == {a: cfg.n_markets for a in sorted(ALL)}
    assert set(data.bars["underlying"]) == set(ALL)
    parts = {a: data.select([a]) for a in ALL}
    for a, part in parts.items():
        assert part.check()["balanced"] and set(part.events["underlying"]) == {a}
        assert set(part.trades["underlying"]) <= {a} and part.positions["slug"].str.startswith(f"{a}-").all()
        assert part.resolutions["slug"].str.startswith(f"{a}-").all() and len(part.files) == cfg.n_markets
    assert sum(len(p.events) for p in parts.values()) == len(data.events)
    assert sum(len(p.positions) for p in parts.values()) == len(data.positions)
    with pytest.raises(ValueError, match="ada"):
        data.select(["ada"])
    with pytest.raises(ValueError, match="ada"):
        ingest.asset_summary(data, ["ada"])


def test_per_asset_features_are_independent_and_causal(multi):
    cfg, raw, _, data = multi
    bars = ingest.rebar(data, "1min")
    both = asset_features(bars, ["btc", "xrp"], vol_window=30, volume_window=60)
    alone = asset_features(bars[bars["underlying"] == "xrp"], ["xrp"], vol_window=30, volume_window=60)
    pd.testing.assert_frame_equal(both.tables["xrp"], alone.tables["xrp"], check_exact=True)
    st = both.stacked()
    assert list(st["underlying"].unique()) == ["btc", "xrp"] and both.primary == "btc"
    assert np.exp(st.loc[st["underlying"] == "xrp", "log_close"].dropna()).between(1.0, 5.0).all()
    assert set(both.summary().index) == {"btc", "xrp"} and all(0 <= d <= 1 for d in both.d_star.values())
    # appending later bars never changes earlier rows (d* fixed by the training period of the shorter run)
    from workbench.features import ohlcv, price_features

    px = ohlcv(bars, underlying="xrp")
    d = both.d_star["xrp"]
    cut = px.index[len(px) // 2]
    short = price_features(px.loc[:cut], d, vol_window=30, volume_window=60)
    pd.testing.assert_frame_equal(short, price_features(px, d, vol_window=30, volume_window=60).loc[:cut])
    from workbench.data.simulate import true_volatility

    scores = volatility_by_asset(data.bars, {a: true_volatility(raw, cfg.wallet, a) for a in ("btc", "sol")})
    assert set(scores.index.get_level_values(0)) == {"btc", "sol"} and (scores["bars"] > 0).all()
    with pytest.raises(ValueError, match="doge"):
        asset_features(bars[bars["underlying"] == "btc"], ["doge"])


def test_truth_of_one_asset_matches_its_files(multi):
    cfg, raw, res, data = multi
    eth_cfg = load_sim_config(raw, cfg.wallet, "eth")
    price, _, _ = simulate_path(eth_cfg)
    first = json.loads(sorted(res.wallet_dir.glob("eth-updown-15m-*"))[0].read_text())
    res_ev = next(e for e in first["prices"] if e["type"] == "resolution")
    assert res_ev["price_start"] == round(float(price[3600]), price_decimals(eth_cfg.s0))
    decisions, markets = load_truth(raw, cfg.wallet, "eth")
    assert decisions["slug"].str.startswith("eth-").all() and (markets["underlying"] == "eth").all()
    with pytest.raises(ValueError, match="ada"):
        load_sim_config(raw, cfg.wallet, "ada")
    # a step table is one asset's: mixed events are refused, one selected asset gets that asset's slugs
    sel = data.select(["eth"])
    feat = asset_features(ingest.rebar(sel, "1min"), ["eth"], vol_window=30, volume_window=60).tables["eth"]
    steps = build_steps(sel.events, sel.positions, ingest.rebar(sel, "1min", "5s"), feat)
    assert steps["slug"].dropna().str.startswith("eth-updown-15m-").all()
    with pytest.raises(ValueError, match="several underlyings"):
        build_steps(data.events, data.positions, ingest.rebar(data, "1min", "5s"), feat)


def test_assets_parameter_drives_the_chain_simulation():
    prof = Profile.load("smoke")
    assert prof.sim_config().assets == ("btc",)
    assert prof.sim_config({"ASSETS": ["BTC-USD", "ETH-USD"]}).assets == ("btc", "eth")
    assert normalise_assets(["Bitcoin", "SOL", "doge-usd"]) == ("btc", "sol", "doge")
    with pytest.raises(ChainError, match="ada"):
        prof.sim_config({"ASSETS": ["ada"]})
    with pytest.raises(ValueError):
        SimConfig(assets=("btc", "btc"))
