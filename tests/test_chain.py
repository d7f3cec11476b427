"""The papermill chain runner: discovery by number, parameters, failure handling, manifest; and a real
smoke run of the project's notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from workbench.chain import ChainError, Profile, discover_notebooks, parse_cli_value, run_chain


def _nb(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(nbformat.writes(nb))


@pytest.fixture()
def tiny_profile(tmp_path):
    prof = tmp_path / "tiny.yaml"
    prof.write_text("workdir: run\nsimulate: {days: 0.05, seed: 1}\nparameters: {X: 2}\nnotebooks: {'03': {Y: 5}}\n")
    return prof


def test_runner_order_parameters_and_first_failure(tmp_path, tiny_profile):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _nb(nbs / "01_first.ipynb", "X = 1  # a number", "from workbench import config\n"
        "(config.paths().processed / 'x.txt').write_text(str(X))")
    _nb(nbs / "03_third.ipynb", "X = 1  # a number\nY = 0  # another", "assert (X, Y) == (7, 5), (X, Y)")
    _nb(nbs / "02_second.ipynb", "Z = 0  # unused", "print('no parameters from the profile reach me:', Z)")
    _nb(nbs / "04_fails.ipynb", "Z = 0  # unused", "raise ValueError('boom')")
    _nb(nbs / "05_never.ipynb", "Z = 0  # unused", "raise SystemExit('must not run')")
    (nbs / "scratch.ipynb").write_text("{}")  # not numbered: not in the chain
    assert [p.name for p in discover_notebooks(nbs)] == ["01_first.ipynb", "02_second.ipynb", "03_third.ipynb",
                                                         "04_fails.ipynb", "05_never.ipynb"]
    res = run_chain(str(tiny_profile), overrides={"X": 7}, run_dir=tmp_path / "run", notebooks_dir=nbs,
                    log=lambda *a: None)
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert not res.ok and m["status"] == "failed"
    assert [e["notebook"] for e in m["notebooks"]] == ["01_first.ipynb", "02_second.ipynb", "03_third.ipynb",
                                                      "04_fails.ipynb"]
    assert [e["status"] for e in m["notebooks"]] == ["ok", "ok", "ok", "failed"]
    assert m["notebooks"][0]["parameters"] == {"X": 7}  # CLI beats profile
    assert m["notebooks"][1]["parameters"] == {}  # only declared keys are passed
    assert m["notebooks"][2]["parameters"] == {"X": 7, "Y": 5}  # per-notebook profile entry
    assert m["notebooks"][3]["error"]["ename"] == "ValueError" and "boom" in m["notebooks"][3]["error"]["evalue"]
    assert (Path(m["workdir"]) / "data" / "processed" / "x.txt").read_text() == "7"
    for key in ("git", "versions", "inputs", "simulation", "started_utc"):
        assert m[key]
    assert m["inputs"]["merged_trades"]["files"] == 5 and len(m["inputs"]["merged_trades"]["sha256"]) == 64
    assert m["versions"]["pandas"] and m["versions"]["python"]


def test_runner_rejects_unknown_parameters_and_profiles(tmp_path, tiny_profile):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _nb(nbs / "01_a.ipynb", "X = 1  # a number", "pass")
    with pytest.raises(ChainError, match="declared by none"):
        run_chain(str(tiny_profile), overrides={"NOPE": 1}, run_dir=tmp_path / "r", notebooks_dir=nbs)
    with pytest.raises(ChainError, match="unknown profile"):
        Profile.load("no-such-profile")
    with pytest.raises(ChainError, match=r"no notebook numbered \['07'\]"):
        run_chain(str(tiny_profile), only=["07"], run_dir=tmp_path / "r", notebooks_dir=nbs)


def test_cli_values_are_yaml():
    assert parse_cli_value("3") == 3 and parse_cli_value("true") is True
    assert parse_cli_value("15min") == "15min" and parse_cli_value("0.5") == 0.5


@pytest.mark.slow
def test_smoke_chain_runs_every_notebook(tmp_path):
    res = run_chain("smoke", run_dir=tmp_path / "run", workdir=tmp_path / "work", log=lambda *a: None)
    m = res.manifest
    failed = [e for e in m["notebooks"] if e["status"] != "ok"]
    assert res.ok, failed
    assert [e["notebook"] for e in m["notebooks"]] == [p.name for p in discover_notebooks()]
    for e in m["notebooks"]:
        executed = nbformat.read(e["output"], as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    processed = tmp_path / "work" / "data" / "processed" / "01_ingestion"
    for table in ("events", "trades", "positions", "bars", "quarantine"):
        assert (processed / f"{table}.parquet").exists()
    figures = {p.name for p in (tmp_path / "work" / "figures").iterdir()}
    assert {"01_activity.png", "01_inventory_pnl.png", "01_market_0.png", "01_market_0.html"} <= figures
    assert m["outputs"]["figures"]["files"] >= 5
