"""Ingestion: exact accounting through files, the bad-input corpus, real exports, no look-ahead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.config import EXTERNAL_DIR
from workbench.data import ReconciliationError, WalletData, derive_tables, load_wallet, market_window, read_events

START = 1767600000  # 2026-01-05 08:00 UTC, a 15-minute boundary
T0 = START * 1000
WALLET = "0xabc0000000000000000000000000000000000abc"


def _write_market(folder: Path, start: int, events: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"btc-updown-15m-{start}_prices.json"
    path.write_text(json.dumps({"slug": f"btc-updown-15m-{start}", "prices": events}))
    return path


def _hand_market(tmp_path: Path) -> Path:
    """The ledger test's sequence, as a market file with quotes in between."""
    q = lambda t, b, a: {"t": T0 + t, "type": "price_change", "outcome": "Up", "bid": b, "ask": a}  # noqa: E731
    f = lambda t, o, s, p, z: {"t": T0 + t, "type": "trade", "outcome": o, "side": s, "price": p,  # noqa: E731
                               "size": z, "usdc": round(p * z, 6)}
    events = [
        q(100, 0.39, 0.41), f(10_000, "Up", "BUY", 0.40, 100),
        q(20_000, 0.54, 0.56), f(30_000, "Up", "BUY", 0.55, 50),
        q(40_000, 0.59, 0.61), f(60_000, "Up", "SELL", 0.60, 60),
        q(70_000, 0.69, 0.71), f(80_000, "Down", "BUY", 0.30, 40),
        q(100_000, 0.49, 0.51),
        {"t": T0 + 900_000, "type": "resolution", "outcome": "Up"},
    ]
    return _write_market(tmp_path / WALLET, START, events)


def test_positions_exact_through_files(tmp_path):
    _hand_market(tmp_path)
    d = load_wallet(tmp_path / WALLET, bar_interval="1min")
    assert d.check()["balanced"]
    p = d.positions
    assert list(p["event"]) == ["trade"] * 4 + ["settlement"]
    np.testing.assert_allclose(p["q_up"], [100, 150, 90, 90, 0])
    np.testing.assert_allclose(p["q_down"], [0, 0, 0, 40, 0])
    np.testing.assert_allclose(p["net_up_equiv"], [100, 150, 90, 50, 0])
    np.testing.assert_allclose(p["avg_up"].iloc[:4], [0.40, 0.45, 0.45, 0.45])
    np.testing.assert_allclose(p["realized_delta"], [0, 0, 9.0, 0, 90 * 0.55 + 40 * -0.30])
    np.testing.assert_allclose(p["realized_pnl"].iloc[-1], 9.0 + 49.5 - 12.0)
    # marks are the quote in force at the fill: 0.40, 0.55, 0.60, 0.70
    np.testing.assert_allclose(p["mark_up"].iloc[:4], [0.40, 0.55, 0.60, 0.70])
    # unrealised after the Down buy at Up mark 0.70: 90 * (0.70 - 0.45) + 40 * (0.30 - 0.30) = 22.5
    assert p["unrealized_pnl"].iloc[3] == pytest.approx(22.5)
    assert p["entry_price_up_equiv"].iloc[3] == pytest.approx((90 * 0.45 - 40 * 0.70) / 50)
    np.testing.assert_allclose(p["time_since_entry_s"].iloc[:4], [0, 20, 50, 70])
    assert np.isnan(p["time_since_entry_s"].iloc[4])
    tr = d.trades
    np.testing.assert_allclose(tr["up_equiv_qty"], [100, 50, -60, -40])
    np.testing.assert_allclose(tr["up_equiv_price"], [0.40, 0.55, 0.60, 0.70])
    np.testing.assert_allclose(tr["cash_flow"], [-40, -27.5, 36, -12])
    np.testing.assert_allclose(tr["time_left_s"], [890, 870, 840, 820])


def test_bars_use_only_events_strictly_before_close(tmp_path):
    _hand_market(tmp_path)
    d = load_wallet(tmp_path / WALLET, bar_interval="1min")
    b = d.bars.set_index("bar_end")
    first = b.loc[T0 + 60_000]  # covers [T0, T0 + 60 s): the fills at 10 s and 30 s, not the one at 60 s
    assert first["wallet_trades"] == 2 and first["wallet_flow"] == pytest.approx(150)
    assert first["inventory"] == pytest.approx(150)
    assert first["realized_pnl_cum"] == 0.0  # the SELL at exactly 60 s realises 9.0 in the *next* bar
    assert first["mid_open"] == pytest.approx(0.40) and first["mid_close"] == pytest.approx(0.60)
    second = b.loc[T0 + 120_000]  # the fill at exactly 60 s belongs here
    assert second["wallet_trades"] == 2 and second["wallet_flow"] == pytest.approx(-100)
    assert second["inventory"] == pytest.approx(50)
    # unrealised at this close: holdings 90 Up @ 0.45, 40 Down @ 0.30, last mid before 120 s is the
    # quote at 100 s (0.50): 90 * 0.05 + 40 * 0.20 = 12.5
    assert second["unrealized_pnl"] == pytest.approx(12.5)
    assert second["realized_pnl_cum"] == pytest.approx(9.0)
    empty = b.loc[T0 + 180_000]
    assert empty["wallet_trades"] == 0 and empty["quotes"] == 0 and np.isnan(empty["mid_close"])


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
EXPECTED_JSON_RECORDS = {  # record index in btc-updown-15m-1767600000_prices.json -> reason fragment
    3: "duplicate of", 5: "non-finite 'price'", 6: "'size' must be positive", 7: "'price' outside [0, 1]",
    8: "unknown event type 'order_book_snapshot'", 9: "missing field 't'", 10: "looks like seconds",
    12: "has no timezone", 13: "crossed quote", 14: "'side' must be 'BUY' or 'SELL'",
    15: "'outcome' must be 'Up' or 'Down'", 16: "'usdc' 9.0 inconsistent", 17: "inconsistent bar",
    18: "mistyped field 'price'", 19: "mistyped field 'size'", 20: "record is a int", 22: "outside the market window",
}
EXPECTED_CSV_RECORDS = {3: "duplicate of", 4: "'price' outside [0, 1]", 5: "unknown activity type 'STAKE'",
                        6: "missing field 'outcome'", 7: "SPLIT must exchange", 8: "looks like milliseconds",
                        9: "mistyped field 'size'"}
EXPECTED_FILES = {"btc-updown-15m-1767600900_prices.json": "empty file",
                  "btc-updown-15m-1767601800_prices.json": "malformed JSON",
                  "btc-updown-15m-1767602700_prices.json": "'prices' list",
                  "weekly-bitcoin-outlook_prices.json": "market window", "orderbook.bin": "unsupported file type",
                  "empty_export.csv": "empty file", "not_an_export.csv": "not a Data-API activity export"}


@pytest.fixture(scope="module")
def bad():
    return load_wallet(DATA / "bad_input")


def test_bad_input_every_record_is_accounted_for(bad):
    rec = bad.check()
    assert rec == {"files_read": 10, "files_quarantined": 7, "records_read": 35, "records_kept": 11,
                   "records_quarantined": 24, "paths_not_read": 0, "out_of_order_records": 5, "outcome_defaulted": 1,
                   "balanced": True}
    q = bad.quarantine.assign(name=bad.quarantine["source_file"].str.split("/").str[-1])
    files = q[q["level"] == "file"].set_index("name")["reason"]
    assert set(files.index) == set(EXPECTED_FILES)
    for name, fragment in EXPECTED_FILES.items():
        assert fragment in files[name], (name, files[name])
    for name, expected in (("btc-updown-15m-1767600000_prices.json", EXPECTED_JSON_RECORDS),
                           ("btc-updown-15m-1767600000.csv", EXPECTED_CSV_RECORDS)):
        got = q[(q["level"] == "record") & (q["name"] == name)].set_index("record")["reason"]
        assert sorted(got.index) == sorted(expected), name
        for record, fragment in expected.items():
            assert fragment in got[record], (name, record, got[record])
    # CSV line numbers point at the physical line (header is line 1)
    csv_q = q[q["name"] == "btc-updown-15m-1767600000.csv"].set_index("record")
    assert csv_q.loc[4, "line"] == 6


def test_bad_input_kept_records_are_resolved_not_dropped(bad):
    ev = bad.events
    kept_json = ev[ev["source_file"].str.endswith("1767600000_prices.json")]
    # the tz-aware ISO time "2026-01-05T09:00:45+01:00" became 08:00:45 UTC
    iso = kept_json[kept_json["record"] == 11]
    assert iso["t"].iloc[0] == T0 + 45_000
    # a fill without outcome is taken as Up, and counted
    assert kept_json[kept_json["record"] == 21]["outcome"].iloc[0] == "Up"
    # output is sorted by time even though the file was not
    assert ev["t"].is_monotonic_increasing
    # JSON and CSV activity of the same wallet and market share one position
    p = bad.positions
    assert set(p["event"]) >= {"trade", "merge", "reward", "settlement"}
    assert p["realized_pnl"].iloc[-1] == pytest.approx(p["realized_delta"].sum())


def test_unbalanced_reconciliation_raises(bad):
    files = bad.files.copy()
    files.loc[0, "records"] += 1  # pretend one record vanished
    broken = WalletData(bad.events, bad.trades, bad.positions, bad.bars, bad.quarantine, files, bad.resolutions)
    assert not broken.reconciliation()["balanced"]
    with pytest.raises(ReconciliationError, match="records read"):
        broken.check()


def test_missing_path_is_a_clear_error(tmp_path):
    from workbench.data.schema import IngestError

    with pytest.raises(IngestError, match="no such file"):
        load_wallet(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no data files"):
        load_wallet(tmp_path / "empty")


# ------------------------------------------------------------------------------------------------
# real Data-API exports
# ------------------------------------------------------------------------------------------------
def test_real_wallet_exports():
    d = load_wallet(EXTERNAL_DIR / "polymarket_wallets")
    rec = d.check()
    assert rec["records_read"] == 4536 and rec["records_kept"] == 4536 and rec["files_read"] == 29
    assert set(d.events["wallet"]) == {"0x6031b6eed1c97e853c6e0f03ad3ce3529351f96d",
                                       "0x961afce6bd9aec79c5cf09d2d4dac2b434b23361"}
    assert (d.events["type"] == "merge").sum() == 2 and (d.events["type"] == "redeem").sum() == 1
    # every wallet's final P&L equals the sum of its realised deltas plus open unrealised P&L
    last = d.positions.groupby(["wallet", "slug"]).last()
    per_market = d.positions.groupby(["wallet", "slug"])["realized_delta"].sum()
    np.testing.assert_allclose(last["realized_pnl"], per_market.loc[last.index], atol=1e-9)
    # hourly markets get their window from the title (10PM ET = 03:00 UTC in January)
    hourly = d.events[d.events["slug"] == "bitcoin-up-or-down-january-4-10pm-et"]
    assert hourly["market_start"].iloc[0] == pd.Timestamp("2026-01-05 03:00", tz="UTC").value // 10**6
    assert hourly["market_end"].iloc[0] - hourly["market_start"].iloc[0] == 3_600_000


@pytest.mark.parametrize("slug,title,ref,start,end", [
    ("btc-updown-15m-1767555900", None, None, "2026-01-04 19:45", "2026-01-04 20:00"),
    ("bitcoin-up-or-down-january-4-3pm-et", "Bitcoin Up or Down - January 4, 3PM ET", "2026-01-04 20:10",
     "2026-01-04 20:00", "2026-01-04 21:00"),
    ("x", "XRP Up or Down - January 4, 10:45PM-11:00PM ET", "2026-01-05 03:50", "2026-01-05 03:45",
     "2026-01-05 04:00"),
    ("y", "Bitcoin Up or Down - July 4, 11:45PM-12:00AM ET", "2026-07-05 03:50", "2026-07-05 03:45",
     "2026-07-05 04:00"),
])
def test_market_window(slug, title, ref, start, end):
    ms = lambda s: pd.Timestamp(s, tz="UTC").value // 10**6  # noqa: E731
    s, e, _ = market_window(slug, title, ms(ref) if ref else None)
    assert (s, e) == (ms(start), ms(end))


def test_write_read_round_trip(tmp_path, small_sim):
    d = load_wallet(small_sim.wallet_dir)
    d.write(tmp_path / "tables")
    back = WalletData.read(tmp_path / "tables")
    for name in WalletData.TABLES:
        pd.testing.assert_frame_equal(getattr(back, name).reset_index(drop=True),
                                      getattr(d, name).reset_index(drop=True), check_dtype=False)


def test_simulated_pnl_matches_simulator(small_sim):
    from workbench.data.simulate import load_truth

    d = load_wallet(small_sim.wallet_dir)
    _, markets = load_truth(small_sim.wallet_dir.parents[1], small_sim.config.wallet)
    assert d.positions["cum_realized_wallet"].iloc[-1] == pytest.approx(markets["realized_pnl"].sum(), abs=1e-6)
    assert len(d.trades) == markets["n_trades"].sum()


# ------------------------------------------------------------------------------------------------
# no look-ahead: changing or appending later events never changes earlier outputs
# ------------------------------------------------------------------------------------------------
def _prefix_equal(a: pd.DataFrame, b: pd.DataFrame, time_col: str, cutoff: int, *, inclusive: bool = False) -> None:
    sel = (lambda df: df[df[time_col] <= cutoff]) if inclusive else (lambda df: df[df[time_col] < cutoff])
    pa, pb = sel(a).reset_index(drop=True), sel(b).reset_index(drop=True)
    pd.testing.assert_frame_equal(pa, pb, check_dtype=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.floats(0.0, 1.0), on_fill=st.booleans(), offset=st.sampled_from([0, 1, 700, 20_000]),
       mode=st.sampled_from(["truncate", "perturb", "append"]), seed=st.integers(0, 10**6))
def test_no_lookahead(small_events, pick, on_fill, offset, mode, seed):
    """Cut just after a real event (often a wallet fill, where a one-step leak would show), then
    truncate, perturb or extend everything from the cut on: no earlier output may change."""
    from workbench.data.tables import up_marks

    ev = small_events
    anchors = ev.loc[ev["type"] == "trade", "t"].to_numpy() if on_fill else ev["t"].to_numpy()
    cutoff = int(anchors[int(pick * (len(anchors) - 1))]) + offset
    rng = np.random.default_rng(seed)
    later = ev["t"] >= cutoff
    if mode == "truncate":
        other = ev[~later]
    elif mode == "perturb":  # move every later price and size, flip later resolutions
        other = ev.copy()
        n = int(later.sum())
        for col in ("price", "bid", "ask"):
            other.loc[later, col] = np.clip(other.loc[later, col] + rng.normal(0, 0.05, n), 0, 1)
        other.loc[later, "size"] = other.loc[later, "size"] * rng.uniform(0.5, 2.0, n)
        flip = later & (ev["type"] == "resolution")
        other.loc[flip, "outcome"] = np.where(other.loc[flip, "outcome"] == "Up", "Down", "Up")
    else:  # append opposite fills of the wallet after the cutoff
        extra = ev[later & (ev["type"] == "trade")].copy()
        extra["t"] = extra["t"] + 1
        extra["side"] = np.where(extra["side"] == "BUY", "SELL", "BUY")
        other = pd.concat([ev, extra]).sort_values("t", kind="stable").reset_index(drop=True)
    _prefix_equal(up_marks(ev), up_marks(other), "t", cutoff)
    full = derive_tables(ev, "5min")
    part = derive_tables(other, "5min")
    _prefix_equal(full[0], part[0], "t", cutoff)  # trades
    _prefix_equal(full[1], part[1], "t", cutoff)  # positions
    _prefix_equal(full[2], part[2], "bar_end", cutoff, inclusive=True)  # bars closing by the cutoff


def test_read_events_counts_out_of_order(tmp_path):
    evs = [{"t": T0 + 5000, "type": "price_change", "bid": 0.4, "ask": 0.6},
           {"t": T0 + 1000, "type": "price_change", "bid": 0.45, "ask": 0.55}]
    _write_market(tmp_path / WALLET, START, evs)
    events, quarantine, files = read_events(tmp_path)
    assert files["out_of_order"].iloc[0] == 1 and len(quarantine) == 0
    assert list(events["t"]) == [T0 + 1000, T0 + 5000]
