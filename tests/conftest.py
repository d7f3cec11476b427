"""Shared fixtures: a small deterministic simulation, written once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("WORKBENCH_PROGRESS", "0")

from workbench.data.simulate import SimConfig, simulate  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="session")
def _close_widgets():
    """Close the ipywidgets that tests build without a kernel, before interpreter shutdown would (noisily)."""
    yield
    import sys

    if "ipywidgets.widgets.widget" in sys.modules:
        registry = sys.modules["ipywidgets.widgets.widget"]._instances
        for key, w in list(registry.items()):
            try:
                w.close()
            except Exception:  # noqa: BLE001 - a comm that no kernel ever registered: just forget it
                w.comm = None
            registry.pop(key, None)


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory: pytest.TempPathFactory):
    """A quarter of a day (24 markets) of simulated data under a temporary data/raw folder."""
    raw = tmp_path_factory.mktemp("raw")
    cfg = SimConfig(days=0.25, seed=11)
    return simulate(cfg, raw)


@pytest.fixture(scope="session")
def small_events(small_sim):
    from workbench.data.read import read_events

    events, quarantine, files = read_events(small_sim.wallet_dir)
    assert len(quarantine) == 0
    return events


# reference implementations of the book's snippets live with the benchmarks that time them
import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


# ------------------------------------------------------------------------------------------------
# a real local S3 server (moto in server mode on 127.0.0.1) for the fetch tests
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_server, monkeypatch):
    """``(S3Settings, boto3 client)`` for an empty bucket of its own on the local server."""
    import boto3

    from workbench.data.fetch import S3Settings

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    import uuid

    name = f"bucket-{uuid.uuid4().hex[:16]}"  # unique: a reused port number once handed a test the last one's bucket
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return S3Settings(bucket=name, endpoint_url=s3_server, access_key="testing", secret_key="testing",
                      region="us-east-1"), client


#: notebook 04's split and features for the agent's (and AIRL's) environment on a one-day simulation
AGENT_META = {"train_fraction": 0.6, "val_fraction": 0.2, "gap": 16, "window": 32, "train_stride": 8, "rtg_scale": 1.0,
              "rtg_mode": "window", "features": None, "levels": None, "notional": 5000.0}


@pytest.fixture(scope="session")
def agent_inputs(tmp_path_factory: pytest.TempPathFactory):
    """``(steps, events, wallet folder)`` of a one-day simulation (seed 5): the agent's environment's inputs."""
    from workbench.data import ingest
    from workbench.data.simulate import SimConfig, simulate
    from workbench.pipeline import build_trader_data

    sim = simulate(SimConfig(days=1, seed=5), tmp_path_factory.mktemp("agent"))
    steps = build_trader_data(sim.wallet_dir, progress=False).steps
    events = ingest.load_wallet(sim.wallet_dir, progress=False).events
    return steps, events, sim.wallet_dir


@pytest.fixture(scope="session")
def agent_setup(agent_inputs):
    """The :class:`workbench.agent.ppo.AgentSetup` of :func:`agent_inputs` with :data:`AGENT_META`."""
    from workbench.agent.ppo import AgentSetup
    from workbench.twin import backtest
    from workbench.twin.steps import TRADER_FEATURES

    steps, events, _ = agent_inputs
    return AgentSetup.build(steps, {**AGENT_META, "features": list(TRADER_FEATURES)}, backtest.QuoteBook(events))
