"""A simulated bucket of many wallets: the layout ingests, P&L reconciles with the simulator, the ranking
controls false discoveries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from workbench.data import read_events
from workbench.data.leaderboard import against_truth, leaderboard, market_pnl
from workbench.data.population import PopulationConfig, load_population_truth, simulate_population
from workbench.data.simulate import SimConfig


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bucket") / "population"
    cfg = PopulationConfig(n_wallets=60, market=SimConfig(days=1.0, seed=7), seed=3, participation=(0.2, 0.4),
                           shares=(0.15, 0.05, 0.05, 0.25, 0.5))
    res = simulate_population(cfg, root)
    events, quarantine, files = read_events(root / "merged_trades", workers=1)
    return res, events, quarantine, files


def test_bucket_layout_ingests_and_reconciles(bucket) -> None:
    res, events, quarantine, files = bucket
    assert len(quarantine) == 0 and len(files) == res.n_files and len(events) == res.n_events
    assert (files["records"] == files["kept"]).all()
    traded = res.truth[res.truth["markets"] > 0]["wallet"]
    assert set(events["wallet"].unique()) == set(traded)
    assert not (res.root.parent / "population.tmp").exists()


def test_market_pnl_equals_the_simulators_own_accounting(bucket) -> None:
    res, events, _, _ = bucket
    per, counts = market_pnl(events)
    assert counts["unresolved_markets"] == 0 and counts["markets"] == res.n_files
    got = per.groupby("wallet")["pnl"].sum()
    truth = res.truth.set_index("wallet")["true_pnl"]
    np.testing.assert_allclose(got.to_numpy(), truth.loc[got.index].to_numpy(), atol=1e-6)


def test_leaderboard_columns_intervals_and_truth_check(bucket) -> None:
    res, events, _, _ = bucket
    board, info = leaderboard(events, n_boot=200)
    assert list(board["rank"]) == list(range(1, len(board) + 1))
    ok = board["markets"] >= 2
    assert (board.loc[ok, "pnl_per_market_lo"] <= board.loc[ok, "pnl_per_market"] + 1e-9).all()
    assert (board.loc[ok, "pnl_per_market"] <= board.loc[ok, "pnl_per_market_hi"] + 1e-9).all()
    assert info["tested"] <= info["wallets"] == len(board)
    disc = board[board["discovery"]]
    assert (disc["q_value"] <= info["fdr"]).all()
    assert (board.loc[board["discovery"], "rank"].max() if len(disc) else 0) <= len(disc)
    check = against_truth(board, load_population_truth(res.root))
    assert check["k"] == int(res.truth["skilled"].sum()) > 0
    assert 0.0 <= check["precision_at_k"] <= 1.0
    for key in ("precision_at_k", "naive_precision_at_k"):
        lo, hi = check[f"{key}_ci"]
        assert 0.0 <= lo <= check[key] <= hi <= 1.0 and hi - lo > 0  # k picks cannot pin a share down exactly


def test_noise_only_bucket_makes_few_discoveries(tmp_path) -> None:
    """Fifty wallets without skill: Benjamini-Hochberg at 10% should discover (almost) none of them."""
    cfg = PopulationConfig(n_wallets=50, market=SimConfig(days=1.0, seed=5), seed=9, participation=(0.3, 0.5),
                           shares=(0.0, 0.0, 0.0, 0.3, 0.7))
    res = simulate_population(cfg, tmp_path / "population")
    events, _, _ = read_events(res.root / "merged_trades", workers=1)
    board, info = leaderboard(events, n_boot=100)
    assert info["tested"] >= 40
    assert info["discoveries"] <= 2
    assert not load_population_truth(res.root)["skilled"].any()


def test_population_is_reproducible(tmp_path) -> None:
    cfg = PopulationConfig(n_wallets=10, market=SimConfig(days=0.25, seed=7), seed=4, participation=(0.5, 0.5))
    a = simulate_population(cfg, tmp_path / "a")
    b = simulate_population(replace(cfg), tmp_path / "b")
    assert a.n_events == b.n_events
    assert a.truth.equals(b.truth)


def test_a_bucket_of_several_assets_keeps_btc_and_adds_the_others(bucket, tmp_path) -> None:
    """The same wallets over BTC and ETH markets: every file of the BTC-only bucket is written unchanged, the
    ETH markets come on their own path, and P&L still reconciles per wallet over both assets."""
    res, _, _, _ = bucket
    cfg = PopulationConfig(n_wallets=60, market=SimConfig(days=1.0, seed=7, assets=("btc", "eth")), seed=3,
                           participation=(0.2, 0.4), shares=(0.15, 0.05, 0.05, 0.25, 0.5))
    two = simulate_population(cfg, tmp_path / "population")
    events, quarantine, files = read_events(two.root / "merged_trades", workers=1)
    assert len(quarantine) == 0 and set(events["underlying"]) == {"btc", "eth"}
    btc = sorted(res.root.glob("merged_trades/*/btc-*.json"))
    assert btc and all(p.read_bytes() == (two.root / p.relative_to(res.root)).read_bytes() for p in btc[:50])
    per, counts = market_pnl(events)
    got = per.groupby("wallet")["pnl"].sum()
    want = two.truth.set_index("wallet")["true_pnl"]
    assert np.allclose(got.reindex(want.index).fillna(0.0), want, atol=1e-6)
