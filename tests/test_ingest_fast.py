"""Fast ingestion keeps every guarantee: the orjson path equals the stdlib parser's result on crafted files,
and a process pool or a Dask cluster gives exactly the single-process tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import DATA

from workbench.data import read, read_events

START = 1767600000
T0 = START * 1000
WALLET = "0xfa50000000000000000000000000000000000fa5"
QUOTE = '{"t":%d,"type":"price_change","outcome":"Up","bid":0.4,"ask":0.42}'
FILL = '{"t":%d,"type":"trade","outcome":"Up","side":"BUY","price":0.41,"size":10,"usdc":4.1}'

# Each document is one market file; the comment says which way the fast parser must not go wrong.
CRAFTED = {
    "clean": '{"slug":"btc-updown-15m-%d","prices":[%s,%s]}' % (START, QUOTE % (T0 + 1000), FILL % (T0 + 2000)),
    "dup_key_in_record": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"t":%d,"type":"price_change",'
                         '"outcome":"Up","bid":0.4,"ask":0.42}]}' % (START, T0 + 1000, T0 + 5000),
    "dup_key_spaced": '{"slug":"btc-updown-15m-%d","prices":[{"t" : %d, "type":"price_change","bid":0.4,'
                      '"bid" :0.1,"ask":0.42}]}' % (START, T0 + 1000),
    "dup_top_level": '{"slug":"btc-updown-15m-%d","prices":[],"prices":[%s]}' % (START, QUOTE % (T0 + 1000)),
    "colon_in_string": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"x\\":y","bid":0.4}]}' % (START, T0),
    "nan_literal": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","outcome":"Up",'
                   '"bid":NaN,"ask":0.42}]}' % (START, T0 + 1000),
    "huge_int": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"trade","outcome":"Up","side":"BUY",'
                '"price":0.4,"size":%s}]}' % (START, T0 + 1000, "9" * 400),
    "int_beyond_64_bits": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"trade","outcome":"Up",'
                          '"side":"BUY","price":0.4,"size":%d}]}' % (START, T0 + 1000, 2**70),
    "lone_surrogate": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"\\ud800","bid":0.4}]}' % (START, T0),
    "nested_record": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","outcome":"Up",'
                     '"bid":{"bid":0.4},"ask":0.42}]}' % (START, T0 + 1000),
    "list_value": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","outcome":"Up",'
                  '"bid":[0.4],"ask":0.42}]}' % (START, T0 + 1000),
    "non_object_records": '{"slug":"btc-updown-15m-%d","prices":[1,"a",null,%s]}' % (START, QUOTE % (T0 + 9)),
    "bool_number": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"trade","outcome":"Up","side":"BUY",'
                   '"price":true,"size":1}]}' % (START, T0 + 1000),
    "utf16": None,  # written as UTF-16 below
    "pretty": None,  # json.dumps(indent=2): whitespace everywhere, no key repeated
}


def _write(folder: Path) -> Path:
    wallet = folder / WALLET
    wallet.mkdir(parents=True)
    for i, (name, text) in enumerate(CRAFTED.items()):
        start = START + 900 * i
        path = wallet / f"btc-updown-15m-{start}_prices.json"
        if text is None:
            doc = {"slug": f"btc-updown-15m-{start}",
                   "prices": [json.loads(QUOTE % (start * 1000 + 1000)), json.loads(FILL % (start * 1000 + 2000))]}
            path.write_bytes(json.dumps(doc).encode("utf-16") if name == "utf16"
                             else json.dumps(doc, indent=2).encode())
        else:
            path.write_text(text.replace(f"btc-updown-15m-{START}", f"btc-updown-15m-{start}")
                            .replace(str(T0), str(start * 1000)), encoding="utf-8")
    return wallet


def _equal(a: tuple[pd.DataFrame, ...], b: tuple[pd.DataFrame, ...]) -> None:
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


def test_fast_parser_equals_the_stdlib_parser_on_crafted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _write(tmp_path)
    fast = read_events(folder, progress=False, workers=1)
    used = []
    original = read._fast_loads
    monkeypatch.setattr(read, "_fast_loads", lambda raw: used.append(original(raw) is not None))
    slow = read_events(folder, progress=False, workers=1)  # the patched parser returns None: stdlib only
    _equal(fast, slow)
    assert 0 < sum(used) < len(used)  # both paths were exercised
    events, quarantine, files = fast
    reasons = " ".join(quarantine["reason"].astype(str))
    assert "duplicate key" in reasons and "non-finite" in reasons and "mistyped" in reasons
    assert (files["records"] == files["kept"] + files["quarantined"]).all()


def test_fast_parser_accepts_only_documents_it_can_prove_duplicate_free() -> None:
    assert read._fast_loads(CRAFTED["clean"].encode()) is not None
    for name in ("dup_key_in_record", "dup_key_spaced", "dup_top_level", "colon_in_string", "nan_literal",
                 "huge_int", "int_beyond_64_bits", "nested_record"):
        assert read._fast_loads(CRAFTED[name].encode()) is None, name


def test_hostile_corpus_is_read_identically_by_both_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    src = DATA / "bad_input"
    fast = read_events(src, progress=False, workers=1)
    monkeypatch.setattr(read, "_fast_loads", lambda raw: None)
    _equal(fast, read_events(src, progress=False, workers=1))


@pytest.mark.slow
def test_process_pool_gives_the_single_process_tables(small_sim) -> None:
    one = read_events([small_sim.wallet_dir, DATA / "bad_input"], progress=False, workers=1)
    two = read_events([small_sim.wallet_dir, DATA / "bad_input"], progress=False, workers=2)
    _equal(one, two)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_single_process_tables(small_sim) -> None:
    distributed = pytest.importorskip("distributed")
    one = read_events([small_sim.wallet_dir, DATA / "bad_input"], progress=False, workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        dask = read_events([small_sim.wallet_dir, DATA / "bad_input"], progress=False, scheduler=cluster.scheduler_address)
    _equal(one, dask)


def test_partitioned_events_round_trip_and_prune(tmp_path: Path, small_sim) -> None:
    from workbench.data import load_wallet
    from workbench.data.ingest import PARTITIONED, read_partitioned

    data = load_wallet([small_sim.wallet_dir, DATA / "bad_input"], workers=1)
    written = data.write(tmp_path / "out")
    folder = written[PARTITIONED]
    back = read_partitioned(folder)
    cols = list(data.events.columns)
    pd.testing.assert_frame_equal(back[cols], data.events, check_dtype=False, check_exact=True,
                                  check_categorical=False)
    one_day = data.events["ts"].dt.strftime("%Y-%m-%d").iloc[0]
    part = read_partitioned(folder, day=one_day, underlying="btc")
    assert len(part) == ((data.events["ts"].dt.strftime("%Y-%m-%d") == one_day)
                         & (data.events["underlying"] == "btc")).sum() > 0
    assert {p.name.split("=")[0] for p in folder.iterdir()} == {"underlying"}
    with pytest.raises(Exception, match="unknown partition key"):
        read_partitioned(folder, slug="x")
    dd = pytest.importorskip("dask.dataframe")
    assert len(dd.read_parquet(str(folder)).compute()) == len(data.events)


def test_ingest_cli_refuses_bad_parallel_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main

    assert main(["ingest", str(DATA / "bad_input"), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --workers 0")
    assert main(["ingest", str(DATA / "bad_input"), "--out", str(tmp_path / "o"), "--scheduler", "localhost"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
