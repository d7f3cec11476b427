"""The PPO agent's environment (issue 19): gymnasium's checker, the replay's P&L, no look-ahead; PPO trains,
saves, reloads and acts; its command line and the LLM dataset from its decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import AGENT_META
from gymnasium.utils.env_checker import check_env

from workbench.agent import EnvData, MarketEnv
from workbench.agent import evaluate as E
from workbench.agent import run_actions
from workbench.agent.ppo import PPOPolicy, load_agent, market_pnl, train_ppo
from workbench.twin import backtest
from workbench.twin.steps import TRADER_FEATURES


@pytest.fixture(scope="module")
def inputs(agent_inputs):
    return agent_inputs


@pytest.fixture(scope="module")
def setup(agent_setup):
    return agent_setup


def test_gymnasium_checker_and_spaces(setup):
    env = MarketEnv(setup.periods["val"])
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(TRADER_FEATURES),) and env.action_space.n == 5 and info["market"].startswith("btc-updown")
    steps = 0
    done = False
    while not done:
        obs, r, done, trunc, info = env.step(2)  # HOLD: no position, no P&L
        assert r == 0.0 and not trunc
        steps += 1
    assert steps == 15  # one 15-minute market, one-minute steps
    with pytest.raises(ValueError):
        env.step(7)


def test_environment_pnl_equals_the_replay(setup):
    assert E.replay_consistency(setup, "test") < 1e-9
    assert E.replay_consistency(setup, "train", max_markets=10) < 1e-9


def test_settlement_and_spread(setup):
    ed = setup.periods["test"]
    env = MarketEnv(ed, reward_scale=1.0)
    m = 0
    a, b = ed.segments[m]
    eq = run_actions(env, m, np.r_[1, np.full(b - a - 1, 2)])  # BUY once, then hold to the end
    size = setup.execution.sizes[1]
    i = int(a)
    paid = size * ed.ask[i]
    won = ed.winner[i] == "Up"
    assert eq[-1] == pytest.approx((size if won else 0.0) - paid)  # settled with the winner
    assert eq[0] == pytest.approx(size * (ed.mark_end[i] - ed.ask[i]))  # marked at the mid: the spread is paid


def test_no_look_ahead(inputs, setup):
    """Perturbing the step table after step t and the quotes from step t's start changes nothing the agent saw
    up to t (observations) nor the rewards before t."""
    steps, events, _ = inputs
    d = setup.data
    test = d.steps.iloc[d.rows("test")]
    t = 7  # inside the first test market
    cut = int(test.index[t].value // 10**6)
    pert = test.copy()
    for c in pert.select_dtypes("float").columns:
        pert.iloc[t + 1:, pert.columns.get_loc(c)] = pert[c].iloc[t + 1:] * 1.7 + 0.3
    ev = events.copy()
    late = ev["t"] >= cut
    ev.loc[late & ev["bid"].notna(), "bid"] = 0.01
    ev.loc[late & ev["ask"].notna(), "ask"] = 0.99
    kw = dict(levels=d.levels, notional=setup.notional)
    a = EnvData.build(test, d.normalizer, setup.book, setup.execution, **kw)
    b = EnvData.build(pert, d.normalizer, backtest.QuoteBook(ev), setup.execution, **kw)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 5, size=t + 1)
    out = []
    for ed in (a, b):
        env = MarketEnv(ed)
        obs, _ = env.reset(options={"market": 0})
        seen, rewards = [obs], []
        for k in range(t + 1):
            obs, r, done, _, _ = env.step(int(acts[k]))
            rewards.append(r)
            seen.append(obs)
        out.append((np.stack(seen[: t + 1]), np.array(rewards[:t])))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert not np.array_equal(a.base[t + 1:], b.base[t + 1:])  # the perturbation did reach the later rows


def test_ppo_trains_saves_reloads_and_acts(setup, tmp_path):
    model, hist = train_ppo(setup, tmp_path, total_timesteps=2048, n_envs=2, evaluations=2, seed=0)
    assert list(hist["timesteps"]) == [1024, 2048] and np.isfinite(hist["val_pnl"]).all()
    agent = load_agent(tmp_path / "ppo_agent.zip")
    assert agent.meta["execution"]["max_inventory"] == setup.execution.max_inventory
    np.testing.assert_allclose(market_pnl(agent.model, setup.periods["val"]).sum(), hist["val_pnl"].max(), atol=1e-6)
    pnl = E.replay_pnl(setup, {"PPO": PPOPolicy(agent.model), "always HOLD": backtest.ConstantPolicy()})
    np.testing.assert_allclose(pnl["PPO"].to_numpy(), market_pnl(agent.model, setup.periods["test"]), atol=1e-6)
    assert (pnl["always HOLD"] == 0).all()
    table = E.metrics_table(pnl, setup.notional, n_boot=50)
    assert {"return", "return_low", "return_high", "sharpe_per_market", "win_rate"} <= set(table.columns)
    pairs = E.paired(pnl, "PPO", n_boot=50)
    assert "always HOLD" in pairs.index and len(E.verdict(pairs)) == len(pairs)
    cls = agent.classes(setup.data.steps, setup.book)
    assert len(cls) == len(setup.data.steps) and set(np.unique(cls)) <= set(range(5))
    with pytest.raises(ValueError, match="no PPO agent"):
        load_agent(tmp_path / "missing.zip")


def test_agent_command_line(inputs, tmp_path, capsys):
    import json

    from workbench.cli import main as workbench_main

    steps, _, wallet_dir = inputs
    steps.to_parquet(tmp_path / "steps.parquet")
    (tmp_path / "twin.json").write_text(json.dumps({**AGENT_META, "features": list(TRADER_FEATURES)}))
    common = ["--steps", str(tmp_path / "steps.parquet"), "--quotes", str(wallet_dir)]
    assert workbench_main(["agent", "train", *common, "--total-timesteps", "1024", "--n-envs", "2", "--evaluations", "1",
                           "--output-dir", str(tmp_path / "ppo")]) == 0
    assert workbench_main(["agent", "evaluate", *common, "--model", str(tmp_path / "ppo" / "ppo_agent.zip"),
                           "--n-boot", "50", "--output-file", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "always HOLD" in out and "BC logistic" in out and "gradient boosting" in out and "the trader (recorded)" in out
    assert pd.read_csv(tmp_path / "m.csv", index_col=0).shape[0] == 5  # PPO, HOLD, BC, gradient boosting, trader
    assert workbench_main(["agent", "evaluate", "--steps", str(tmp_path / "nothing.parquet")]) == 2
    assert "error:" in capsys.readouterr().err


def test_ppo_as_a_candidate_agent_of_notebook_05(setup, tmp_path):
    from workbench.agent.ppo import classes_at
    from workbench.analysis.analyst import Analyst
    from workbench.llm.data import synthetic_facts
    from workbench.rlaif.candidates import candidates_at

    train_ppo(setup, tmp_path, total_timesteps=1024, n_envs=2, evaluations=1, seed=1)
    agent = load_agent(tmp_path / "ppo_agent.zip")
    times = setup.periods["test"].starts[:5]
    cls = classes_at(agent, setup.data.steps, setup.book, times)
    assert cls.shape == (5,) and set(cls) <= set(range(5))
    f = synthetic_facts(1, 0)[0]
    out = candidates_at(f, 0, Analyst(), np.random.default_rng(0), {}, mistake_sources=0, agents={"ppo": 1})
    ppo_rows = [d for d in out if d.source == "ppo"]
    assert len(ppo_rows) == 1 and ppo_rows[0].action == "BUY"
