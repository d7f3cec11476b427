"""Hostile inputs for ingestion and ``workbench ingest``: each case ends in a quarantine row (file, record, line,
reason) or one ``error:`` line, never a traceback; the counts reconcile; nothing is written outside the output
folder, and the output folder is the old complete one or the new complete one.

The reasons are asserted by fragment: a test names the defect it covers in its name.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench import data
from workbench.cli import main
from workbench.data import IngestError, WalletData, load_wallet
from workbench.data import read as data_read

START = 1767600000  # 2026-01-05 08:00 UTC
T0 = START * 1000
WALLET = "0xabc0000000000000000000000000000000000abc"
SLUG = f"btc-updown-15m-{START}"
CSV_HEADER = ["timestamp", "datetime", "type", "side", "proxyWallet", "conditionId", "asset", "outcomeIndex",
              "outcome", "size", "usdcSize", "price", "transactionHash", "title", "slug"]
TITLE = "Bitcoin Up or Down - January 5, 3:00AM-3:15AM ET"


def quote(t: int = 1000) -> dict:
    return {"t": T0 + t, "type": "price_change", "outcome": "Up", "bid": 0.49, "ask": 0.51}


def fill(t: int = 2000, side: str = "BUY", price: float = 0.5, size: float = 10.0) -> dict:
    return {"t": T0 + t, "type": "trade", "outcome": "Up", "side": side, "price": price, "size": size,
            "usdc": round(price * size, 6)}


def market_json(folder: Path, events: list, slug: str = SLUG, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{slug.strip()}_prices.json")
    path.write_text(json.dumps({"slug": slug, "prices": events}))
    return path


def csv_row(t_s: int = START + 2, side: str = "BUY", price: float = 0.5, size: float = 10.0, raw: dict | None = None,
            **over) -> dict:
    """A Data-API TRADE row; ``over`` replaces fields, ``raw`` too (for the names of the parameters)."""
    row = {"timestamp": str(t_s), "datetime": "", "type": "TRADE", "side": side, "proxyWallet": WALLET,
           "conditionId": "0xc", "asset": "1", "outcomeIndex": "0", "outcome": "Up", "size": str(size),
           "usdcSize": str(round(price * size, 6)), "price": str(price), "transactionHash": f"0x{abs(t_s):x}",
           "title": TITLE, "slug": SLUG}
    row.update({k: str(v) for k, v in {**over, **(raw or {})}.items()})
    return row


def market_csv(path: Path, rows: list[dict], encoding: str = "utf-8", header: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.DictWriter(f, fieldnames=header or CSV_HEADER, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def reasons(d: WalletData, level: str | None = None) -> list[str]:
    q = d.quarantine if level is None else d.quarantine[d.quarantine["level"] == level]
    return q["reason"].tolist()


def balanced(d: WalletData) -> dict:
    rec = d.check()
    assert rec["balanced"]
    assert rec["records_read"] == rec["records_kept"] + rec["records_quarantined"]
    return rec


def only_under(root: Path, allowed: Path) -> None:
    """Every file under ``root`` lies under ``allowed``."""
    for p in root.rglob("*"):
        if p.is_file():
            assert p.resolve().is_relative_to(allowed.resolve()), p


# ------------------------------------------------------------------------------------------------
# numbers and timestamps
# ------------------------------------------------------------------------------------------------
def test_huge_integer_time_is_quarantined_not_an_overflow(tmp_path):
    path = market_json(tmp_path / WALLET, [quote(), fill()])
    path.write_text(path.read_text().replace(f'"t": {T0 + 2000}', '"t": 1' + "0" * 400))
    d = load_wallet(tmp_path)
    assert balanced(d)["records_quarantined"] == 1
    (r,) = reasons(d, "record")
    assert r.startswith("'t' = 100000...(401 digits) out of range")


def test_huge_integer_size_is_quarantined_not_an_overflow(tmp_path):
    path = market_json(tmp_path / WALLET, [quote(), fill(size=7.0)])
    path.write_text(path.read_text().replace('"size": 7.0', '"size": ' + "9" * 400))
    d = load_wallet(tmp_path)
    assert balanced(d)["records_kept"] == 1
    assert reasons(d, "record") == ["'size' = 999999...(400 digits) out of range (|x| > 1e+12)"]


def test_time_1e30_is_reported_as_written_not_as_a_wrapped_int64(tmp_path):
    market_json(tmp_path / WALLET, [quote(), {**fill(), "t": 1e30}])
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "record")
    assert "1e+30" in r and "out of range" in r and "-9223372036854775808" not in r
    balanced(d)


def test_size_beyond_any_market_is_out_of_range(tmp_path):
    market_json(tmp_path / WALLET, [quote(), fill(size=1e300)])
    d = load_wallet(tmp_path)
    assert reasons(d, "record") == ["'size' = 1e+300 out of range (|x| > 1e+12)"]
    assert d.positions.empty and balanced(d)


def test_integer_of_over_4300_digits_quarantines_the_file_with_the_reason(tmp_path):
    path = market_json(tmp_path / WALLET, [quote()])
    path.write_text(path.read_text().replace(f"{T0 + 1000}", "1" * 5000))
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "file")
    assert r.startswith("malformed JSON: Exceeds the limit (4300 digits)")
    balanced(d)


def test_csv_overflowing_numbers_are_quarantined(tmp_path):
    market_csv(tmp_path / "w" / "a.csv", [csv_row(raw={"size": "1e400"}),
                                          csv_row(START + 3, raw={"size": "1e300", "usdcSize": "5e299"}),
                                          csv_row(START + 4)])
    d = load_wallet(tmp_path)
    assert reasons(d, "record") == ["non-finite 'size': 1e400", "'size' = 1e300 out of range (|x| > 1e+12)"]
    assert balanced(d)["records_kept"] == 1


@pytest.mark.parametrize("t_s,why", [(10_000_000_000, "outside the market window"),
                                     (-5, "outside the market window"),
                                     (0, "outside the market window")])
def test_csv_times_outside_the_window_are_quarantined(tmp_path, t_s, why):
    market_csv(tmp_path / "w" / "a.csv", [csv_row(t_s), csv_row()])
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "record")
    assert why in r and str(t_s) in r
    assert balanced(d)["records_kept"] == 1


@pytest.mark.parametrize("t_s", [10_000_000_000, -86_400, START])
def test_csv_rows_without_a_market_window_are_quarantined(tmp_path, t_s):
    """A slug that names no window (and no title that does) cannot bound the time: 1e10 s, 1969 or even a
    plausible time would be kept unchecked."""
    market_csv(tmp_path / "w" / "a.csv", [csv_row(t_s, slug="bitcoin-weekly-outlook", title="Weekly"), csv_row()])
    d = load_wallet(tmp_path)
    assert reasons(d, "record") == ["cannot determine the market window of bitcoin-weekly-outlook (slug or title)"]
    assert balanced(d)["records_kept"] == 1 and set(d.events["slug"]) == {SLUG}


# ------------------------------------------------------------------------------------------------
# structure: nesting, duplicate keys, slugs
# ------------------------------------------------------------------------------------------------
def test_json_nested_100000_deep_is_quarantined(tmp_path):
    folder = tmp_path / WALLET
    folder.mkdir()
    (folder / f"{SLUG}_prices.json").write_text("[" * 100_000 + "]" * 100_000)
    market_json(folder, [quote()], slug=f"btc-updown-15m-{START + 900}")
    d = load_wallet(tmp_path)
    assert reasons(d, "file") == ["JSON nested too deeply to parse (beyond the interpreter's recursion limit)"]
    assert balanced(d)["records_kept"] == 1


def test_deeply_nested_record_value_is_quarantined_and_shown(tmp_path):
    deep: list = []
    for _ in range(600):
        deep = [deep]
    market_json(tmp_path / WALLET, [quote(), {**fill(), "size": deep}])
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "record")
    assert r.startswith("mistyped field 'size': expected a number, got list")
    assert d.quarantine["raw"].iloc[0].startswith('{"t": ')
    balanced(d)


def test_duplicate_prices_key_quarantines_the_file(tmp_path):
    folder = tmp_path / WALLET
    folder.mkdir()
    ev = json.dumps([quote(), fill()])
    (folder / f"{SLUG}_prices.json").write_text(f'{{"slug": "{SLUG}", "prices": {ev}, "prices": []}}')
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "file")
    assert r.startswith("duplicate key(s) ['prices'] in the file's top-level object")
    assert d.files["status"].tolist() == ["quarantined"] and balanced(d)


def test_duplicate_key_inside_a_record_quarantines_the_record(tmp_path):
    folder = tmp_path / WALLET
    folder.mkdir()
    good = json.dumps(quote())
    twice = json.dumps(fill())[:-1] + ', "price": 0.9}'
    (folder / f"{SLUG}_prices.json").write_text(f'{{"slug": "{SLUG}", "prices": [{good}, {twice}]}}')
    d = load_wallet(tmp_path)
    assert reasons(d, "record") == ["duplicate key(s) ['price'] in the record: which value is meant is ambiguous"]
    assert balanced(d)["records_kept"] == 1 and d.trades.empty


def test_slug_with_a_trailing_newline_is_not_a_market(tmp_path):
    market_json(tmp_path / WALLET, [quote()], slug=SLUG + "\n", name="a_prices.json")
    market_json(tmp_path / WALLET, [quote(5000)])
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "file")
    assert r == f"cannot determine the market window from slug {SLUG + chr(10)!r}"
    assert set(d.events["slug"]) == {SLUG}  # one market, not two


def test_non_string_slug_quarantines_the_file(tmp_path):
    folder = tmp_path / WALLET
    folder.mkdir()
    (folder / "x_prices.json").write_text(json.dumps({"slug": ["a"], "prices": [quote()]}))
    d = load_wallet(tmp_path)
    assert reasons(d, "file") == ["'slug' must be a string, got list"]


@pytest.mark.parametrize("slug", ["Bitcoin up; DROP TABLE", "../../etc/passwd", "btc-updown-15m-1767600000 ",
                                  "a" * 300, "btc_updown"])
def test_free_text_csv_slug_is_quarantined(tmp_path, slug):
    market_csv(tmp_path / "w" / "a.csv", [csv_row(slug=slug), csv_row(START + 3)])
    d = load_wallet(tmp_path)
    if slug.strip() == SLUG:  # surrounding spaces are formatting, not a different slug
        assert balanced(d)["records_kept"] == 2
        return
    (r,) = reasons(d, "record")
    assert r.startswith("invalid slug")
    assert set(d.events["slug"]) == {SLUG} and balanced(d)


def test_crafted_proxy_wallet_is_quarantined(tmp_path):
    market_csv(tmp_path / "w" / "a.csv", [csv_row(proxyWallet="../../x<|system|>"), csv_row(START + 3)])
    d = load_wallet(tmp_path)
    assert reasons(d, "record") == ["'proxyWallet' is not a 0x address: '../../x<|system|>'"]
    assert set(d.events["wallet"]) == {WALLET}


def test_csv_with_duplicate_columns_is_quarantined(tmp_path):
    path = tmp_path / "w" / "a.csv"
    path.parent.mkdir()
    path.write_text(",".join(CSV_HEADER + ["price"]) + "\n" + ",".join(csv_row().values()) + ",0.9\n")
    d = load_wallet(tmp_path)
    assert reasons(d, "file") == ["duplicate column(s) ['price'] in the header"]


# ------------------------------------------------------------------------------------------------
# encodings and CSV parsing
# ------------------------------------------------------------------------------------------------
def test_csv_field_over_128kb_is_one_quarantined_row(tmp_path):
    rows = [csv_row(), csv_row(START + 3, title="x" * 200_000), csv_row(START + 4)]
    market_csv(tmp_path / "w" / "a.csv", rows)
    d = load_wallet(tmp_path)
    q = d.quarantine[d.quarantine["level"] == "record"]
    assert q["reason"].tolist() == ["unreadable CSV row: field larger than field limit (131072)"]
    assert q["record"].tolist() == [1] and q["line"].tolist() == [3]
    assert balanced(d) == {**balanced(d), "records_read": 3, "records_kept": 2}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_csv_in_unicode_encodings_is_read(tmp_path, encoding):
    market_csv(tmp_path / "w" / "a.csv", [csv_row(), csv_row(START + 3)], encoding=encoding)
    d = load_wallet(tmp_path)
    assert balanced(d)["records_kept"] == 2 and d.quarantine.empty


def test_csv_that_is_not_utf8_names_the_encoding(tmp_path):
    market_csv(tmp_path / "w" / "a.csv", [csv_row(title="Señal")], encoding="latin-1")
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "file")
    assert r.startswith("not UTF-8 text: invalid continuation byte at byte")
    assert balanced(d)["records_read"] == 0


def test_csv_with_a_nul_byte_keeps_the_other_rows(tmp_path):
    path = market_csv(tmp_path / "w" / "a.csv", [csv_row(), csv_row(START + 3, title="a\0b"), csv_row(START + 4)])
    d = load_wallet(tmp_path)
    assert path.read_bytes().count(b"\0") == 1
    rec = balanced(d)
    assert rec["records_read"] == 3 and rec["records_kept"] + rec["records_quarantined"] == 3


def test_binary_garbage_named_json_is_quarantined(tmp_path):
    folder = tmp_path / WALLET
    folder.mkdir()
    (folder / f"{SLUG}_prices.json").write_bytes(bytes(range(256)) * 4)
    d = load_wallet(tmp_path)
    (r,) = reasons(d, "file")
    assert r.startswith("malformed JSON")


def test_file_over_the_size_limit_is_not_read(tmp_path):
    path = market_json(tmp_path / WALLET, [quote()] * 50)
    events, q, files = data.read_events(tmp_path, max_file_bytes=100)
    assert q["reason"].tolist() == [f"file of {path.stat().st_size:,} bytes exceeds the 100-byte limit (not read)"]
    assert events.empty


# ------------------------------------------------------------------------------------------------
# files and folders: permissions, names, links, FIFOs, duplicates
# ------------------------------------------------------------------------------------------------
def test_unreadable_file_is_quarantined_and_the_rest_read(tmp_path, monkeypatch):
    bad = market_json(tmp_path / WALLET, [quote()])
    market_json(tmp_path / WALLET, [quote()], slug=f"btc-updown-15m-{START + 900}")
    real_open = os.open

    def deny(path, *a, **kw):  # root reads every file: simulate a permission error for this one
        if Path(path) == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(data_read.os, "open", deny)
    d = load_wallet(tmp_path)
    assert reasons(d, "file") == ["cannot read the file: Permission denied"]
    assert balanced(d)["records_kept"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a file without read permission")
def test_file_without_read_permission_is_quarantined(tmp_path):
    bad = market_json(tmp_path / WALLET, [quote()])
    bad.chmod(0)
    d = load_wallet(tmp_path)
    assert reasons(d, "file") == ["cannot read the file: Permission denied"]


def test_file_name_that_is_not_utf8_is_read_and_written(tmp_path):
    folder = tmp_path / WALLET
    folder.mkdir()
    name = os.fsdecode(b"btc-updown-15m-1767600000\xff_prices.json")
    (folder / name).write_text(json.dumps({"slug": SLUG, "prices": [quote()]}))
    d = load_wallet(tmp_path)
    assert d.files["source_file"].iloc[0].endswith("btc-updown-15m-1767600000\\xff_prices.json")
    d.write(tmp_path / "out")  # Parquet would refuse the undecodable name
    assert len(WalletData.read(tmp_path / "out").events) == 1


def test_folder_with_only_a_readme_is_one_error_line(tmp_path, capsys):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "README.md").write_text("# notes")
    with pytest.raises(IngestError, match=r"no data files under .*\(1 path\(s\) not read: .*README\.md: documentation"):
        load_wallet(tmp_path)
    assert main(["ingest", str(tmp_path), "--out", str(tmp_path.parent / "o_readme"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no data files under")


def test_only_quarantined_files_give_empty_tables_not_a_crash(tmp_path):
    (tmp_path / WALLET).mkdir()
    (tmp_path / WALLET / f"{SLUG}_prices.json").write_text("")
    d = load_wallet(tmp_path)
    assert reasons(d, "file") == ["empty file"] and d.events.empty and d.bars.empty
    d.write(tmp_path.parent / f"{tmp_path.name}-out")
    assert WalletData.read(tmp_path.parent / f"{tmp_path.name}-out").reconciliation()["files_quarantined"] == 1


def test_symlinked_wallet_folder_inside_the_source_is_read_once(tmp_path):
    real = tmp_path / "store" / WALLET
    market_json(real, [quote(), fill()])
    (tmp_path / "0xlinked").symlink_to(real, target_is_directory=True)
    d = load_wallet(tmp_path)
    assert len(d.events) == 2 and len(d.files) == 1
    (r,) = reasons(d, "path")
    assert r.startswith("same folder as") and "read once" in r


def test_symlink_named_by_the_user_is_followed(tmp_path):
    real = tmp_path / "store" / WALLET
    market_json(real, [quote(), fill()])
    (tmp_path / "0xlink").symlink_to(real, target_is_directory=True)
    d = load_wallet(tmp_path / "0xlink")  # the user's own choice of path: followed
    assert len(d.events) == 2 and d.quarantine.empty


def test_link_to_outside_the_source_is_refused_and_reported(tmp_path):
    outside = tmp_path / "elsewhere"
    market_json(outside, [quote()])
    src = tmp_path / "src"
    market_json(src / WALLET, [quote()], slug=f"btc-updown-15m-{START + 900}")
    (src / WALLET / "stolen_prices.json").symlink_to(next(outside.iterdir()))
    (src / "0xother").symlink_to(outside, target_is_directory=True)
    d = load_wallet(src)
    r = reasons(d, "path")
    assert len(r) == 2 and all("outside the source folder" in x and "not followed" in x for x in r)
    assert len(d.events) == 1 and balanced(d)


def test_dangling_link_and_link_loops_are_reported(tmp_path):
    src = tmp_path / "src"
    market_json(src / WALLET, [quote()])
    (src / WALLET / "gone_prices.json").symlink_to(src / "missing.json")
    (src / WALLET / "self.json").symlink_to(src / WALLET / "self.json")
    (src / WALLET / "back").symlink_to(src, target_is_directory=True)
    d = load_wallet(src)
    got = sorted(reasons(d, "path"))
    assert got[0].startswith("dangling symbolic link to")
    assert got[1] == "symbolic link loop"
    assert got[2].startswith("symbolic link loop: points back to")
    assert len(d.events) == 1 and balanced(d)


def test_fifo_is_not_read(tmp_path):
    market_json(tmp_path / WALLET, [quote()])
    os.mkfifo(tmp_path / WALLET / "pipe_prices.json")  # reading it would block for ever
    d = load_wallet(tmp_path)
    assert reasons(d, "path") == ["not a regular file (FIFO, socket or device)"]


def test_same_file_given_twice_is_read_once(tmp_path):
    path = market_json(tmp_path / WALLET, [quote(), fill()])
    d = load_wallet([path, tmp_path / WALLET, path])
    assert len(d.trades) == 1 and len(d.files) == 1
    assert [r.split(" (")[0] for r in reasons(d, "path")] == [f"same file as {path}"] * 2
    balanced(d)


def test_hard_link_is_read_once(tmp_path):
    path = market_json(tmp_path / WALLET, [quote(), fill()])
    os.link(path, tmp_path / WALLET / "copy_prices.json")
    d = load_wallet(tmp_path)
    assert len(d.trades) == 1 and len(reasons(d, "path")) == 1


# ------------------------------------------------------------------------------------------------
# the same fills in two formats
# ------------------------------------------------------------------------------------------------
def test_fills_given_as_json_and_as_csv_count_once(tmp_path):
    folder = tmp_path / WALLET
    market_json(folder, [quote(), fill(2_400, "BUY", 0.5, 10), fill(60_100, "SELL", 0.6, 10),
                         {"t": T0 + 900_000, "type": "resolution", "outcome": "Up"}])
    market_csv(folder / f"{SLUG}.csv", [csv_row(START + 60, "SELL", 0.6, 10), csv_row(START + 2, "BUY", 0.5, 10)])
    d = load_wallet(tmp_path)
    assert len(d.trades) == 2
    q = reasons(d, "record")
    assert len(q) == 2 and all("given both as seed JSON and as Data-API CSV" in r for r in q)
    assert d.positions["realized_pnl"].iloc[-1] == pytest.approx(1.0)  # (0.6 - 0.5) * 10, once
    assert balanced(d)["records_kept"] == 4


def test_equal_fills_within_one_format_are_not_taken_for_copies(tmp_path):
    folder = tmp_path / WALLET
    market_json(folder, [quote(), fill(2_400), fill(2_700)])  # two equal fills in one second
    market_csv(folder / f"{SLUG}.csv", [csv_row(START + 2)])  # the CSV knows one of them
    d = load_wallet(tmp_path)
    assert len(d.trades) == 2 and len(reasons(d, "record")) == 1


# ------------------------------------------------------------------------------------------------
# the output folder: all or nothing, completion record, file modes
# ------------------------------------------------------------------------------------------------
def test_reader_refuses_a_folder_without_its_completion_record(tmp_path):
    market_json(tmp_path / "src" / WALLET, [quote(), fill()])
    d = load_wallet(tmp_path / "src")
    out = tmp_path / "out"
    d.write(out)
    (out / "ingest.json").unlink()
    with pytest.raises(IngestError, match="no completion record"):
        WalletData.read(out)


def test_reader_refuses_tables_of_different_runs(tmp_path):
    market_json(tmp_path / "a" / WALLET, [quote(), fill()])
    market_json(tmp_path / "b" / WALLET, [quote(), fill(), fill(3000)])
    load_wallet(tmp_path / "a").write(tmp_path / "out_a")
    load_wallet(tmp_path / "b").write(tmp_path / "out_b")
    os.replace(tmp_path / "out_b" / "trades.parquet", tmp_path / "out_a" / "trades.parquet")
    with pytest.raises(IngestError, match="tables of different runs"):
        WalletData.read(tmp_path / "out_a")
    with pytest.raises(IngestError, match="differs from the one the completion record lists"):
        WalletData.read(tmp_path / "out_a", verify=True)


def test_write_replaces_the_whole_folder_with_ordinary_modes_and_no_leftovers(tmp_path):
    market_json(tmp_path / "src" / WALLET, [quote(), fill()])
    out = tmp_path / "out"
    out.mkdir()
    (out / "bars.parquet").write_text("stale table of an older run")
    (out / ".events.parquet.abc.tmp").write_text("left by a killed run")
    load_wallet(tmp_path / "src").write(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{t}.parquet" for t in WalletData.TABLES] + ["ingest.json", "events_by"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary sibling left
    umask = os.umask(0)
    os.umask(umask)
    for p in out.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o777 if p.is_dir() else 0o666) & ~umask, p
    assert len(WalletData.read(out, verify=True).bars) > 0


def test_unbalanced_data_writes_nothing(tmp_path):
    market_json(tmp_path / "src" / WALLET, [quote(), fill()])
    d = load_wallet(tmp_path / "src")
    files = d.files.copy()
    files.loc[0, "records"] += 1
    broken = WalletData(d.events, d.trades, d.positions, d.bars, d.quarantine, files, d.resolutions)
    with pytest.raises(data.ReconciliationError):
        broken.write(tmp_path / "out")
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_write_over_a_file_fails_before_touching_it(tmp_path):
    market_json(tmp_path / "src" / WALLET, [quote()])
    (tmp_path / "out").write_text("a file")
    with pytest.raises(NotADirectoryError):
        load_wallet(tmp_path / "src").write(tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file"


# ------------------------------------------------------------------------------------------------
# the command line: bad arguments are one error line and exit 2, before any file is parsed
# ------------------------------------------------------------------------------------------------
@pytest.fixture()
def src(tmp_path) -> Path:
    market_json(tmp_path / "src" / WALLET, [quote(), fill()])
    return tmp_path / "src"


def _cli_error(capsys, argv: list[str], monkeypatch) -> tuple[int, str]:
    def never(*a, **kw):
        raise AssertionError("files were parsed before the arguments were checked")

    monkeypatch.setattr("workbench.data.ingest.load_wallet", never)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return code, err[0]


def test_cli_missing_source(tmp_path, src, capsys, monkeypatch):
    code, err = _cli_error(capsys, ["ingest", str(src), str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                           monkeypatch)
    assert code == 2 and err == f"error: SRC {str(tmp_path / 'nope')!r}: no such file or folder"


def test_cli_out_is_a_file(tmp_path, src, capsys, monkeypatch):
    (tmp_path / "o").write_text("x")
    code, err = _cli_error(capsys, ["ingest", str(src), "--out", str(tmp_path / "o")], monkeypatch)
    assert code == 2 and err == f"error: --out {str(tmp_path / 'o')!r} exists and is not a folder"


def test_cli_bad_bar_interval(tmp_path, src, capsys, monkeypatch):
    code, err = _cli_error(capsys, ["ingest", str(src), "--out", str(tmp_path / "o"), "--bar-interval", "banana"],
                           monkeypatch)
    assert code == 2 and err.startswith("error: --bar-interval 'banana': expected a positive duration")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("interval", ["0s", "-5min"])
def test_cli_non_positive_bar_interval(tmp_path, src, capsys, monkeypatch, interval):
    code, err = _cli_error(capsys, ["ingest", str(src), "--out", str(tmp_path / "o"), f"--bar-interval={interval}"],
                           monkeypatch)
    assert code == 2 and "--bar-interval" in err


def test_cli_out_inside_the_source(tmp_path, src, capsys, monkeypatch):
    code, err = _cli_error(capsys, ["ingest", str(src), "--out", str(src / WALLET / "tables")], monkeypatch)
    assert code == 2 and "lies inside the source folder" in err


def test_cli_out_holding_the_source(tmp_path, src, capsys, monkeypatch):
    code, err = _cli_error(capsys, ["ingest", str(src / WALLET), "--out", str(src)], monkeypatch)
    assert code == 2 and "replacing it would delete the input" in err


def test_cli_ingest_writes_only_into_out(tmp_path, src, capsys):
    out = tmp_path / "o"
    assert main(["ingest", str(src), "--out", str(out), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.split("\ntables:")[0].split("\nquarantined")[0])["balanced"]
    only_under(tmp_path, tmp_path)  # sanity
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "src"]
    assert len(WalletData.read(out).events) == 2


def test_cli_prints_paths_not_read(tmp_path, src, capsys):
    (src / WALLET / "dangling_prices.json").symlink_to(tmp_path / "gone")
    assert main(["ingest", str(src), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert '"paths_not_read": 1' in out and "dangling symbolic link" in out


def test_every_event_column_is_finite_or_missing(tmp_path):
    """Whatever is kept is usable: no inf, no absurd magnitude, times inside int64 and the window."""
    market_json(tmp_path / WALLET, [quote(), fill(), {**fill(3000), "size": 1e200}, {**fill(4000), "t": -1e300}])
    d = load_wallet(tmp_path)
    num = d.events.select_dtypes("number")
    assert np.isfinite(num.to_numpy(dtype=float, na_value=0.0)).all()
    assert (d.events["t"] >= T0 - 86_400_000).all() and pd.api.types.is_integer_dtype(d.events["t"])
    assert balanced(d)["records_quarantined"] == 2


# ------------------------------------------------------------------------------------------------
# fuzzing: random bytes and random JSON shapes never give a traceback, and always balance
# ------------------------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=True)
            | st.text(max_size=12) | st.sampled_from(["Up", "Down", "BUY", "SELL", "trade", "price_change", "bar"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                              max_size=3), max_leaves=8)
_fields = st.sampled_from(["t", "type", "outcome", "side", "price", "size", "usdc", "bid", "ask", "open", "high",
                           "low", "close", "volume", "price_start", "price_end"])
_times = st.integers(T0 - 10**6, T0 + 10**6) | st.integers() | st.floats()
_record = st.fixed_dictionaries({"t": _times, "type": st.sampled_from(["trade", "last_trade_price", "price_change",
                                                                        "bar", "resolution", "x"])},
                                optional={"outcome": _scalars, "side": _scalars, "price": st.floats(-1, 2) | _json,
                                          "size": st.floats(0, 1e13) | _json, "bid": st.floats(0, 1) | _json,
                                          "ask": st.floats(0, 1) | _json}) | st.dictionaries(_fields, _json)
_doc = st.fixed_dictionaries({"slug": st.sampled_from([SLUG, "x", "", SLUG + "\n"]) | _scalars,
                              "prices": st.lists(_record | _json, max_size=8)}) | _json


def _fuzz_check(folder: Path, out: Path) -> None:
    try:
        d = load_wallet(folder, bar_interval="1min")
    except IngestError as exc:  # only "no data files": everything else is a quarantine row
        assert "no data files" in str(exc)
        return
    rec = d.check()
    assert rec["balanced"] and rec["records_read"] == rec["records_kept"] + rec["records_quarantined"]
    assert (d.files["records"] == d.files["kept"] + d.files["quarantined"]).all()
    d.write(out)
    assert WalletData.read(out, verify=True).reconciliation() == rec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(_doc, min_size=1, max_size=3), raw=st.binary(max_size=200), raw_csv=st.binary(max_size=200))
def test_fuzz_random_json_shapes_and_bytes(tmp_path_factory, docs, raw, raw_csv):
    folder = tmp_path_factory.mktemp("fuzz") / WALLET
    folder.mkdir()
    for k, doc in enumerate(docs):
        (folder / f"btc-updown-15m-{START + 900 * k}_prices.json").write_text(json.dumps(doc))
    (folder / "raw_prices.json").write_bytes(raw)
    (folder / "raw.csv").write_bytes(raw_csv)
    _fuzz_check(folder, folder.parent / "out")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=st.lists(st.lists(st.text(max_size=8) | st.sampled_from(["TRADE", "BUY", "Up", SLUG, TITLE,
                                                                      str(START + 5), "0.5", "10", "1e400", WALLET]),
                               min_size=len(CSV_HEADER) - 2, max_size=len(CSV_HEADER) + 1), max_size=6))
def test_fuzz_random_csv_rows(tmp_path_factory, cells):
    folder = tmp_path_factory.mktemp("fuzzcsv") / "w"
    folder.mkdir()
    with open(folder / "a.csv", "w", newline="", encoding="utf-8", errors="surrogatepass") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(cells)
    _fuzz_check(folder, folder.parent / "out")


# ------------------------------------------------------------------------------------------------
# kill -9 at random points: the output folder is the old complete one or the new complete one
# ------------------------------------------------------------------------------------------------
_WRITER = """
import sys
from workbench.data import load_wallet
a, b = load_wallet(sys.argv[1]), load_wallet(sys.argv[2])
print("ready", flush=True)
while True:
    for d in (b, a):
        d.write(sys.argv[3])
"""


def _two_sources(tmp_path: Path) -> tuple[Path, Path, dict[int, str]]:
    a, b = tmp_path / "a", tmp_path / "b"
    for k in range(3):
        market_json(a / WALLET, [quote(), fill()], slug=f"btc-updown-15m-{START + 900 * k}")
    for k in range(40):
        market_json(b / WALLET, [quote(), fill(), fill(3000), quote(4000)], slug=f"btc-updown-15m-{START + 900 * k}")
    return a, b, {len(load_wallet(a).events): "a", len(load_wallet(b).events): "b"}


def _assert_complete(out: Path, expected: dict[int, str]) -> str:
    d = WalletData.read(out, verify=True)
    assert len(d.events) in expected and d.check()["balanced"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{t}.parquet" for t in WalletData.TABLES] +
                                                           ["ingest.json", "events_by"])
    return expected[len(d.events)]


@pytest.mark.slow
def test_kill_during_writes_leaves_a_complete_folder(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    a, b, expected = _two_sources(tmp_path)
    out = tmp_path / "out"
    load_wallet(a).write(out)
    rng = random.Random(1)
    seen = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(a), str(b), str(out)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.add(_assert_complete(out, expected))
    only_under(tmp_path, tmp_path)
    assert all(p.name in {"a", "b", "out", ".out.tmp"} for p in tmp_path.iterdir())
    load_wallet(b).write(out)  # a later write cleans up what a killed one left aside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]
    assert seen  # at least one state observed (usually both)


@pytest.mark.slow
def test_kill_of_the_cli_leaves_the_old_or_the_new_folder(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    a, b, expected = _two_sources(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "workbench", "ingest", str(b), "--out", str(out), "--quiet"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    full = time.perf_counter() - t
    rng = random.Random(2)
    for _ in range(4):
        load_wallet(a).write(out)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.0) * full)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_complete(out, expected)
