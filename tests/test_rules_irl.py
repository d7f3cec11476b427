"""Notebook 09's inverse-RL peer (issue 21): imitation's AIRL on the market environment, with imitation 1.0.1
installed without its stale pins (gymnasium 1.x, stable-baselines3 2.x) -- the parts used must run."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.agent import MarketEnv
from workbench.rules import irl


@pytest.fixture(scope="module")
def setup(agent_setup):
    return agent_setup


def test_replay_gives_one_trajectory_per_market_and_the_states_in_row_order(setup):
    data, ed = setup.data, setup.periods["val"]
    acts = data.actions[data.rows("val")]
    trajs, obs = irl.replay_trader(ed, acts)
    assert len(trajs) == ed.n_markets and obs.shape == (len(acts), ed.obs_dim)
    assert np.array_equal(np.concatenate([t.acts for t in trajs]), acts)
    assert all(len(t.obs) == len(t.acts) + 1 and t.terminal for t in trajs)
    env = MarketEnv(ed)  # the states are the environment's under the trader's own actions
    m = ed.n_markets - 1
    a, b = ed.segments[m]
    o, _ = env.reset(options={"market": m})
    got = [o]
    for act in acts[a: b - 1]:
        got.append(env.step(int(act))[0])
    np.testing.assert_array_equal(np.stack(got), obs[a:b])
    with pytest.raises(ValueError, match="actions for"):
        irl.replay_trader(ed, acts[:-1])


def test_airl_trains_keeps_the_best_validation_round_and_is_seeded(setup):
    data = setup.data
    acts = {p: data.actions[data.rows(p)] for p in ("train", "val")}
    demos, _ = irl.replay_trader(setup.periods["train"], acts["train"])
    _, vo = irl.replay_trader(setup.periods["val"], acts["val"])
    kw = dict(rounds=2, gen_steps=256, n_envs=2, disc_updates=2, demo_batch_size=64, bc_epochs=1, seed=3)
    fit = irl.fit_airl(setup.periods["train"], demos, vo, acts["val"], **kw)
    h = fit.history
    assert list(h["round"]) == [0, 1, 2] and h["val_log_loss"].notna().all()  # round 0: the BC start
    assert fit.best_round == int(h.loc[h["val_log_loss"].idxmin(), "round"])
    p = fit.probs(vo)
    assert p.shape == (len(vo), 5) and np.allclose(p.sum(axis=1), 1.0) and (p > 0).all()
    ll = -np.mean(np.log(p[np.arange(len(vo)), acts["val"]]))
    assert ll == pytest.approx(h["val_log_loss"].min(), rel=1e-5)  # the kept generator is the best round's
    assert {"disc_loss", "disc_acc_expert", "disc_acc_gen"} <= set(h.columns)
    again = irl.fit_airl(setup.periods["train"], demos, vo, acts["val"], **kw)
    np.testing.assert_allclose(again.probs(vo), p, rtol=1e-5, atol=1e-7)
