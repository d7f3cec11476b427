"""The market environment and PPO: steps per second on this machine, against the replay in the same run.

Usage: python benchmarks/env.py [--days 5] [--steps 20000] [--ppo-steps 20480]

Data: ``--days`` of simulated markets (written to a temporary folder), the pipeline's step table, the twin
command's split (60/20/20, the trader's 12 features). Reported:

* one environment, random actions: steps/s, and as a ratio to the reference implementation of the same
  rules, ``workbench.twin.backtest.replay`` driven one agent at a time (the same actions);
* vectorised: SB3's ``DummyVecEnv`` and gymnasium's ``SyncVectorEnv`` of ``--n-envs`` copies (environment
  steps/s summed over copies);
* PPO (stable-baselines3, MlpPolicy 64x64, ``n_steps`` 128 per copy): training steps/s including its updates.

The CPU count is printed: the targets of issue 19 are for 2 cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from workbench.agent import MarketEnv
from workbench.agent.ppo import AgentSetup, make_vec_env
from workbench.data import ingest
from workbench.data.simulate import SimConfig, simulate
from workbench.pipeline import build_trader_data
from workbench.twin import backtest
from workbench.twin.steps import TRADER_FEATURES

META = {"train_fraction": 0.6, "val_fraction": 0.2, "gap": 128, "window": 128, "train_stride": 16, "rtg_scale": 1.0,
        "rtg_mode": "window", "features": list(TRADER_FEATURES), "levels": None, "notional": 5000.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=5)
    ap.add_argument("--steps", type=int, default=20_000, help="environment steps per measurement")
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--ppo-steps", type=int, default=20_480)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate(SimConfig(days=a.days, seed=7), Path(tmp))
        steps = build_trader_data(sim.wallet_dir, progress=False).steps
        book = backtest.QuoteBook(ingest.load_wallet(sim.wallet_dir, progress=False).events)
    setup = AgentSetup.build(steps, META, book)
    ed = setup.periods["train"]
    rng = np.random.default_rng(0)
    print(f"{os.cpu_count()} CPUs; {a.days:g} simulated days: {ed.n_markets} training markets, {len(ed.starts):,} steps, "
          f"{ed.obs_dim} state features")

    env = MarketEnv(ed)
    env.reset(seed=0)
    acts = rng.integers(0, 5, size=a.steps)
    t0 = time.perf_counter()
    for k in range(a.steps):
        _, _, done, _, _ = env.step(int(acts[k]))
        if done:
            env.reset()
    single = a.steps / (time.perf_counter() - t0)

    n_ref = min(len(ed.starts), a.steps)
    ref_steps = setup.data.steps.iloc[setup.data.rows("train")[:n_ref]]

    t0 = time.perf_counter()
    backtest.replay(ref_steps, backtest.SequencePolicy(acts), ["x"], book, setup.execution, setup.data.normalizer, notional=setup.notional,
                    levels=setup.data.levels)
    ref = n_ref / (time.perf_counter() - t0)

    venv = make_vec_env(ed, a.n_envs, seed=0)
    venv.reset()
    n_vec = max(1, a.steps // a.n_envs)
    t0 = time.perf_counter()
    for _ in range(n_vec):
        venv.step(rng.integers(0, 5, size=a.n_envs))
    dummy = n_vec * a.n_envs / (time.perf_counter() - t0)

    import gymnasium as gym

    genv = gym.vector.SyncVectorEnv([lambda: MarketEnv(ed) for _ in range(a.n_envs)])
    genv.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(n_vec):
        genv.step(rng.integers(0, 5, size=a.n_envs))
    sync = n_vec * a.n_envs / (time.perf_counter() - t0)

    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", make_vec_env(ed, a.n_envs, seed=0), n_steps=128, batch_size=256, n_epochs=4, seed=0,
                device="cpu", verbose=0, policy_kwargs={"net_arch": [64, 64]})
    t0 = time.perf_counter()
    model.learn(a.ppo_steps)
    ppo_rate = a.ppo_steps / (time.perf_counter() - t0)

    print(f"{'':<52}{'steps/s':>10}{'ratio':>10}")
    print(f"{'replay (reference, one agent)':<52}{ref:>10,.0f}{1.0:>10.2f}")
    print(f"{'MarketEnv, one environment':<52}{single:>10,.0f}{single / ref:>10.2f}")
    print(f"{f'SB3 DummyVecEnv x {a.n_envs}':<52}{dummy:>10,.0f}{dummy / ref:>10.2f}")
    print(f"{f'gymnasium SyncVectorEnv x {a.n_envs}':<52}{sync:>10,.0f}{sync / ref:>10.2f}")
    print(f"{f'PPO training (SB3, {a.n_envs} envs, updates included)':<52}{ppo_rate:>10,.0f}{ppo_rate / ref:>10.2f}")
    print(f"300,000 PPO steps (the default profile) take about {300_000 / ppo_rate / 60:.1f} min here, before the "
          "validation evaluations")


if __name__ == "__main__":
    main()
