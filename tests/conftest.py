"""Shared fixtures: a small deterministic simulation, written once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("WORKBENCH_PROGRESS", "0")

from workbench.simulate import SimConfig, simulate  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory: pytest.TempPathFactory):
    """A quarter of a day (24 markets) of simulated data under a temporary data/raw folder."""
    raw = tmp_path_factory.mktemp("raw")
    cfg = SimConfig(days=0.25, seed=11)
    return simulate(cfg, raw)


@pytest.fixture(scope="session")
def small_events(small_sim):
    from workbench.ingest import read_events

    events, quarantine, files = read_events(small_sim.wallet_dir)
    assert len(quarantine) == 0
    return events


# reference implementations of the book's snippets live with the benchmarks that time them
import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
