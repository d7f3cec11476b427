"""What notebooks show: readable times, an empty quarantine said in words, one zoomed event per barrier figure,
self-contained plotly HTML, a command line whose help reads as text, make output without colour codes."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from workbench import plots
from workbench.cli import build_parser
from workbench.config import PROJ_ROOT


def test_readable_times_converts_epoch_ms_columns_only():
    df = pd.DataFrame({"t": [1767571266027, 1767571267000], "t1": [1767571300000, np.nan], "size": [1.0, 2.0],
                       "time": [3, 4]})
    out = plots.readable_times(df)
    assert str(out["t"].iloc[0]) == "2026-01-05 00:01:06.027000+00:00" and pd.isna(out["t1"].iloc[1])
    assert out["size"].tolist() == [1.0, 2.0] and out["time"].tolist() == [3, 4]  # not times: left alone
    assert df["t"].dtype == np.int64  # the input is not changed


def test_empty_quarantine_is_said_in_words(small_sim):
    from IPython.display import Markdown

    from workbench.data import load_wallet
    from workbench.data.ingest import quarantine_view

    d = load_wallet(small_sim.wallet_dir)
    view = quarantine_view(d)
    assert isinstance(view, Markdown) and view.data.startswith("**Nothing quarantined**: 24 files and ")


def test_barrier_figure_zooms_on_one_event_and_draws_every_event_below():
    from workbench.labels import cusum_filter, triple_barrier
    from workbench.labels.ui import barrier_figure, default_event, label_summary

    rng = np.random.default_rng(0)
    idx = pd.date_range("2026-01-05", periods=3000, freq="1min")
    close = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.001, len(idx)))), idx)
    events = cusum_filter(close, 0.004)
    target = pd.Series(0.002, idx)
    lab = triple_barrier(close, events, (1.0, 1.0), target, vertical=30)
    k = default_event(lab)
    assert lab["barrier"].iloc[k] != "vertical" and (lab["barrier"].iloc[:k] == "vertical").all()
    fig = barrier_figure(close, events, 1.0, 1.0, 30, target, event=2)
    zoom, counts, overview = fig.axes
    assert fig.get_size_inches()[0] <= plots.NOTEBOOK_WIDTH
    assert zoom.get_title().startswith(f"Event 3 of {len(lab):,}")
    lo, hi = zoom.get_xlim()  # the zoomed window spans about one event, not the whole path
    assert hi - lo < 0.2 * (overview.get_xlim()[1] - overview.get_xlim()[0])
    assert label_summary(lab).startswith(f"{len(lab):,} events · first touch: profit taking ")


def test_plotly_figures_are_saved_self_contained(tmp_path):
    import plotly.graph_objects as go

    path = plots.save(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), "fig", tmp_path)
    html = path.read_text()
    assert path.stat().st_size > 1_000_000 and 'src="plotly' not in html and not (tmp_path / "plotly.min.js").exists()


def test_command_line_help_reads_as_text():
    p = build_parser()
    top = p.format_help()
    assert "``" not in top and "examples:" in top and "python -m workbench run --profile smoke" in top
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        text = sp.format_help()
        assert sp.description and "``" not in text, name
        for action in sp._actions:
            assert action.help, (name, action.option_strings or action.dest)
    assert "Cloudflare R2" in sub.choices["fetch"].format_help()


def test_make_prints_no_colour_codes_into_a_pipe():
    out = subprocess.run(["make", "-s", "help"], cwd=PROJ_ROOT, capture_output=True, text=True, check=True).stdout
    assert "\x1b" not in out and "lab" in out and "test" in out


@pytest.mark.parametrize("name", ["01_ingestion", "03_labeling"])
def test_notebook_metadata_matches_what_jupyterlab_writes(name):
    """Opening a notebook must not mark it modified: JupyterLab rewrites a kernelspec or language_info that differs
    from the kernel's (the version is the reference environment's, Python 3.11.7)."""
    import nbformat
    from ipykernel.ipkernel import IPythonKernel

    nb = nbformat.read(PROJ_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert nb.metadata["kernelspec"] == {"display_name": "Python 3 (workbench)", "language": "python",
                                         "name": "python3"}
    expected = dict(IPythonKernel.language_info)
    got = dict(nb.metadata["language_info"])
    assert {k: v for k, v in got.items() if k != "version"} == {k: v for k, v in expected.items() if k != "version"}
    assert got["version"].count(".") == 2
