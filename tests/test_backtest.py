"""The replay engine: it reproduces the recorded trader when fed the trader's own orders."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import features
from workbench.data import ingest
from workbench.twin import backtest as B
from workbench.twin import steps as S


@pytest.fixture(scope="module")
def setup(small_sim):
    d = ingest.load_wallet(small_sim.wallet_dir)
    feat = features.price_features(features.ohlcv(ingest.rebar(d, "1min")), 0.3, vol_window=30, volume_window=60)
    steps = S.build_steps(d.events, d.positions, ingest.rebar(d, "1min", "5s"), feat)
    return d, steps, S.Normalizer.fit(steps), B.QuoteBook(d.events)


class _Exact:
    """Replays the recorded flow of each step with its exact size."""

    def __init__(self, flow, execution):
        self.flow, self.ex, self.seen = flow, execution, []

    def reset(self, n):
        pass

    def act(self, i, x):
        self.seen.append(x.copy())
        f = self.flow[i]
        self.ex.sizes[1] = self.ex.sizes[3] = abs(f)
        return np.full(len(x), 1 if f > 0 else (3 if f < 0 else 2))

    def observe(self, r):
        pass


def test_replaying_the_trader_reproduces_its_pnl(setup):
    d, steps, norm, book = setup
    ex = B.ExecutionModel({k: 0.0 for k in range(5)}, max_inventory=1e9, latency_ms=500)
    res = B.replay(steps, _Exact(steps["flow"].to_numpy(), ex), ["exact"], book, ex, norm)
    assert len(res.fills) == len(d.trades)
    trader = steps["equity"].iloc[-1]
    # same orders, executed 500 ms after the decision instead of 200-1200 ms: within a few percent
    assert res.equity[-1, 0] == pytest.approx(trader, rel=0.05, abs=20)


def test_holding_earns_nothing_and_sees_its_own_flat_book(setup):
    _, steps, norm, book = setup
    seen = []

    class Hold(B.ConstantPolicy):
        def act(self, i, x):
            seen.append(x)
            return super().act(i, x)

    ex = B.ExecutionModel({0: 100, 1: 50, 2: 0, 3: 50, 4: 100}, max_inventory=600)
    res = B.replay(steps.iloc[:200], Hold(), ["a", "b"], book, ex, norm)
    assert np.all(res.equity == 0) and len(res.fills) == 0
    inv = np.stack(seen)[:, :, S.STATE_FEATURES.index("inventory")]
    flat = (0 - norm.mean["inventory"]) / norm.std["inventory"]
    np.testing.assert_allclose(inv, flat, rtol=1e-5)  # never the recorded trader's inventory


def test_agents_are_independent_and_settle_at_market_end(setup):
    _, steps, norm, book = setup

    class BuyOnceThenHold:
        def reset(self, n):
            self.n = n

        def act(self, i, x):
            a = np.full(len(x), 2)
            if i == 0:
                a[0] = 1  # agent 0 buys once, agent 1 never trades
            return a

        def observe(self, r):
            pass

    ex = B.ExecutionModel({0: 0, 1: 10.0, 2: 0, 3: 10.0, 4: 0}, max_inventory=600)
    first_market = steps["slug"].iloc[0]
    n = int((steps["slug"] == first_market).sum()) + 2
    res = B.replay(steps.iloc[:n], BuyOnceThenHold(), ["buyer", "idle"], book, ex, norm)
    bid, ask = book.quote(first_market, int(steps.index[0].value // 10**6) + 500)
    won = book.winner[first_market] == "Up"
    assert res.equity[-1, 0] == pytest.approx(10 * ((1.0 if won else 0.0) - ask))
    assert np.all(res.equity[:, 1] == 0)
    assert set(res.fills["agent"]) == {"buyer"}
