"""Fast ingestion keeps every guarantee: the columnar (Arrow) path and the orjson path equal the stdlib
parser's result on crafted files, and a process pool or a Dask cluster gives exactly the single-process
tables."""

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
    # the columnar path must send these to the reference path (or read them exactly as it does)
    "explicit_null": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","outcome":null,'
                     '"bid":0.4,"ask":0.42,"price":null}]}' % (START, T0 + 1000),
    "unknown_key": '{"slug":"btc-updown-15m-%d","note":{"a":[1,2]},"prices":[%s]}' % (START, QUOTE % (T0 + 1000)),
    "one_bad_record": '{"slug":"btc-updown-15m-%d","prices":[%s,{"t":%d,"type":"trade","outcome":"Up",'
                      '"side":"BUY","price":1.5,"size":1}]}' % (START, QUOTE % (T0 + 1000), T0 + 2000),
    "two_documents": '{"slug":"btc-updown-15m-%d","prices":[%s]} {"slug":"x","prices":[]}' % (START, QUOTE % (T0 + 1)),
    "infinity_read": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","outcome":"Up",'
                     '"bid":0.4,"ask":Infinity}]}' % (START, T0 + 1000),
    "huge_int_ignored": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","outcome":" up ",'
                        '"bid":0.4,"ask":0.42,"size":%s}]}' % (START, T0 + 1000, "9" * 400),
    "seconds_not_ms": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","bid":0.4,'
                      '"ask":0.42}]}' % (START, START + 1),
    "non_ascii_slug": '{"slug":"btc-updown-15m-%d\u00e9","prices":[%s]}' % (START, QUOTE % (T0 + 1000)),
    "null_record": '{"slug":"btc-updown-15m-%d","prices":[null,%s]}' % (START, QUOTE % (T0 + 1000)),
    "empty_slug": '{"slug":"","prices":[%s]}' % (QUOTE % (T0 + 1000)),
    "bar_with_start": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"bar","start":%d,"open":1,"high":2,'
                      '"low":0.5,"close":1.5,"volume":3}]}' % (START, T0 + 59999, T0),
    "bar_low_above_open": '{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"bar","open":1,"high":2,'
                          '"low":1.2,"close":1.5,"volume":3},%s]}' % (START, T0 + 59999, QUOTE % (T0 + 60000)),
    "bar_negative_volume": '{"slug":"btc-updown-15m-%d","prices":[%s,{"t":%d,"type":"bar","open":1,"high":2,'
                           '"low":0.5,"close":1.5,"volume":-3}]}' % (START, QUOTE % (T0 + 1000), T0 + 59999),
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


def _columnar_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "_columnar_eligible", lambda raw: False)


def test_columnar_path_equals_the_record_and_reference_paths_on_crafted_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.data import columnar

    folder = _write(tmp_path)
    fast = read_events(folder, progress=False, workers=1)
    with monkeypatch.context() as m:
        _columnar_off(m)
        _equal(fast, read_events(folder, progress=False, workers=1))
        m.setattr(read, "_fast_loads", lambda raw: None)
        _equal(fast, read_events(folder, progress=False, workers=1))
    # which crafted files the columnar path takes itself: only those it can prove it reads exactly
    files = sorted(folder.glob("*.json"))
    names = list(CRAFTED)
    raws = [f.read_bytes() for f in files]
    offered = [i for i, r in enumerate(raws) if columnar.eligible(r)]
    got = columnar.read_columns([raws[i] for i in offered], threads=False)
    taken = {names[offered[i]] for i in got.files}
    # a 400-digit size on a quote is not read by either path (quotes carry no size): taken, and equal above
    assert taken == {"clean", "bar_with_start", "huge_int_ignored"}
    assert "utf16" not in {names[i] for i in offered} and "pretty" not in {names[i] for i in offered}
    assert list(got.counts) == [2, 1, 1]
    assert got.cols["outcome"].expand()[0] == "Up" and got.cols["side"].expand()[1] == "BUY"


def test_columnar_numbers_equal_the_stdlib_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decimal strings of every length and exponent form, and integers, parse to the same doubles."""
    import numpy as np

    rng = np.random.default_rng(7)
    wallet = tmp_path / WALLET
    wallet.mkdir()
    for k in range(40):
        start = START + 900 * k
        recs = []
        for j in range(150):
            p = float(rng.random())
            size = float(rng.random() * 10.0 ** rng.integers(-3, 9))
            fmt = ("%r", "%.3f", "%.17g", "%.6e", "%d")[j % 5]
            size_s = (fmt % (int(size) + 1)) if fmt == "%d" else fmt % size
            if float(size_s) <= 0:
                size_s = "1"
            recs.append('{"t":%d,"type":"trade","outcome":"Down","side":"SELL","price":%r,"size":%s}'
                        % (start * 1000 + 1000 + j, float(p), size_s))
        (wallet / f"btc-updown-15m-{start}_prices.json").write_text(
            '{"slug":"btc-updown-15m-%d","prices":[%s]}' % (start, ",".join(recs)))
    from workbench.data import columnar

    assert len(columnar.read_columns([f.read_bytes() for f in sorted(wallet.glob("*.json"))]).files) == 40
    fast = read_events(wallet, progress=False, workers=1)
    assert len(fast[0]) == 40 * 150 and fast[1].empty
    _columnar_off(monkeypatch)
    _equal(fast, read_events(wallet, progress=False, workers=1))


def test_fast_parser_accepts_only_documents_it_can_prove_duplicate_free() -> None:
    assert read._fast_loads(CRAFTED["clean"].encode()) is not None
    for name in ("dup_key_in_record", "dup_key_spaced", "dup_top_level", "colon_in_string", "nan_literal",
                 "huge_int", "int_beyond_64_bits", "nested_record"):
        assert read._fast_loads(CRAFTED[name].encode()) is None, name


def test_hostile_corpus_is_read_identically_by_both_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    src = DATA / "bad_input"
    fast = read_events(src, progress=False, workers=1)
    _columnar_off(monkeypatch)
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


def test_coded_text_columns_round_trip_through_runs_none_and_concatenation() -> None:
    import numpy as np

    from workbench.data.columnar import Coded

    rng = np.random.default_rng(3)
    pool = np.array(["a", "b", None, "c", "é"], dtype=object)
    parts = [pool[rng.integers(0, 5, n)] for n in (0, 1, 50, 7)] + [np.repeat(pool, 40)]  # random and in runs
    coded = [Coded.of(p) for p in parts]
    for p, c in zip(parts, coded):
        assert list(c.expand()) == list(p)
    joined = Coded.concat(coded)
    assert list(joined.expand()) == [v for p in parts for v in p]
    assert len(set(joined.uniques)) == len(joined.uniques) == 4


def test_refused_batches_are_halved_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.data import columnar

    bad = ('{"slug":"btc-updown-15m-%d","prices":[{"t":%d,"type":"price_change","bid":true,"ask":0.4}]}'
           % (START, T0 + 1)).encode()
    good = CRAFTED["clean"].encode()
    calls = []
    original = columnar._read_table
    monkeypatch.setattr(columnar, "_read_table", lambda raws, threads: calls.append(len(raws)) or original(raws, threads))
    assert len(columnar.read_columns([bad] * 500, threads=False).files) == 0
    assert len(calls) <= 2 ** (columnar._MAX_SPLITS + 1) - 1
    calls.clear()
    got = columnar.read_columns([good] * 7 + [bad] + [good] * 8, threads=False)  # one refused file among clean ones
    assert list(got.files) == [i for i in range(16) if i != 7]


def test_documents_without_records_anywhere_in_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty or null ``prices`` (first, middle, last of a batch) go to the reference path, never an error."""
    from workbench.data import columnar

    good = CRAFTED["clean"].encode()
    empty = ('{"slug":"btc-updown-15m-%d","prices":[]}' % START).encode()
    null = ('{"slug":"btc-updown-15m-%d","prices":null}' % START).encode()
    for raws, taken in (([good, empty], [0]), ([empty], []), ([empty, good], [1]), ([good, null], [0]),
                        ([null, good, empty, good, null], [1, 3])):
        assert list(columnar.read_columns(raws, threads=False).files) == taken
    wallet = tmp_path / WALLET
    wallet.mkdir()
    for i, body in enumerate([good, empty, good, null]):
        start = START + 900 * i
        (wallet / f"btc-updown-15m-{start}_prices.json").write_bytes(
            body.replace(str(START).encode(), str(start).encode()).replace(str(T0).encode(), str(start * 1000).encode()))
    fast = read_events(wallet, progress=False, workers=1)
    _columnar_off(monkeypatch)
    _equal(fast, read_events(wallet, progress=False, workers=1))


def test_a_file_that_grows_while_read_is_read_up_to_the_limit_only(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grows.json"
    path.write_bytes(b"x" * 100)
    real_fstat = read.os.fstat

    def stale(fd: int):  # the size fstat saw before the file grew to 100 bytes
        st = real_fstat(fd)
        return type("St", (), {"st_size": 10, "st_mode": st.st_mode})()

    monkeypatch.setattr(read.os, "fstat", stale)
    res = read._FileResult(read._file_stat("grows.json", WALLET, "json"))
    assert read._read_bytes(path, res, 1000) == b"x" * 100 and not res.quarantine
    res = read._FileResult(read._file_stat("grows.json", WALLET, "json"))
    assert read._read_bytes(path, res, 50) is None
    assert "exceeds the limit" in res.quarantine[0]["reason"]
    monkeypatch.undo()
    res = read._FileResult(read._file_stat("grows.json", WALLET, "json"))
    assert read._read_bytes(path, res, 50) is None and "100 bytes exceeds the 50-byte limit" in res.quarantine[0]["reason"]
