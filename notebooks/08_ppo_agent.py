# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (workbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · A reinforcement-learning agent: PPO in a gymnasium environment of the recorded markets
#
# **What this notebook answers.** The twin (notebook 04) imitates the trader; it never learns from rewards.
# Can an agent that *does* learn from the market's rewards do better than doing nothing, than behaviour
# cloning, than the twin and than the recorded trader, on a later, held-out period?
#
# **The environment** (`workbench.agent.MarketEnv`, a `gymnasium.Env`) replays the recorded markets with the
# rules of notebook 04's backtest. One episode is one 15-minute market of one period (notebook 04's
# chronological split, with its gaps). The observation is the twin's state: the market part as recorded (causal)
# and the agent part rebuilt from the agent's **own** position, normalised with the training statistics. The
# action is one of the five seed classes, sized like the trader's median order of that class, with the
# inventory capped at the largest the trader held in training. Orders fill at the recorded Up quote 0.5 s after the step's start (ask to buy, bid to sell).
# The files carry no depth, so there is no depth limit. The reward is the step's change in marked-to-market
# equity, net of the spread; at its end each market settles with its winner.
#
# **The agent** is PPO from stable-baselines3 with a small MLP. It trains on the training period and is
# evaluated `EVALUATIONS` times on the whole validation period; the checkpoint with the best validation P&L is
# kept. It is judged once, on the test period, in the same replay as the baselines. Intervals come from a
# bootstrap over markets.

# %% tags=["parameters"]
TOTAL_TIMESTEPS = 300_000  # PPO environment steps (training period)
N_ENVS = 8  # environments in the vectorised environment
EVALUATIONS = 10  # validation evaluations (checkpoint selection)
LEARNING_RATE = 0.0003  # Adam learning rate of PPO
ENT_COEF = 0.01  # entropy bonus
MARKETS_PER_EPISODE = 1  # consecutive markets in one episode (1: an episode is one market)
N_BOOT = 1000  # bootstrap replicates over markets
SEED = 7  # seed of PPO, the environments and the bootstraps

# %%
import time

import numpy as np
import pandas as pd
from gymnasium.utils.env_checker import check_env
from IPython.display import display

from workbench import config, plots
from workbench.agent import MarketEnv
from workbench.agent import evaluate as E
from workbench.agent import ppo, study
from workbench.twin import figures

P = config.paths().ensure()
OUT = P.processed / "08_agent"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 30, "display.width", 200)
steps, meta, book = study.load_inputs()
setup = ppo.AgentSetup.build(steps, meta, book)
display(pd.DataFrame({p: {"markets": e.n_markets, "steps": len(e.starts), "from": str(e.index[0]), "to": str(e.index[-1])}
                      for p, e in setup.periods.items()}).T)
print("order sizes per class (shares):", {k: round(v, 1) for k, v in setup.execution.sizes.items()},
      f"inventory cap {setup.execution.max_inventory:.0f} shares; {setup.periods['train'].obs_dim} state features")

# %% [markdown]
# ## 1. The environment
#
# Gymnasium's checker runs on the test environment. Then a consistency check: the recorded trader's actions,
# played open loop, must give the same P&L per market in the environment as in notebook 04's replay.

# %%
check_env(MarketEnv(setup.periods["test"]))
print(f"environment vs replay, the trader's actions on 50 test markets: max |P&L difference| = "
      f"{E.replay_consistency(setup):.2e} USDC")

# %% [markdown]
# ## 2. PPO: training on the training period, selection on validation

# %%
t0 = time.perf_counter()
model, history = ppo.train_ppo(setup, P.models / "ppo_agent", total_timesteps=TOTAL_TIMESTEPS, n_envs=N_ENVS,
                               evaluations=EVALUATIONS, seed=SEED, learning_rate=LEARNING_RATE, ent_coef=ENT_COEF,
                               markets_per_episode=MARKETS_PER_EPISODE)
train_seconds = time.perf_counter() - t0
display(history.round(3))
print(f"{TOTAL_TIMESTEPS:,} steps in {train_seconds:.0f} s ({TOTAL_TIMESTEPS / train_seconds:,.0f} steps/s with "
      f"the validation evaluations); kept the checkpoint at {int(history.loc[history['val_pnl'].idxmax(), 'timesteps']):,} steps")

# %% [markdown]
# ## 3. The test period: PPO against the baselines
#
# Every policy trades in the same replay on the test markets: PPO (greedy), always HOLD, behaviour cloning
# (logistic regression on the same state, greedy), gradient boosting on the state and a short history (LightGBM,
# greedy: the strongest cheap baseline), the twin at its default target (greedy, with notebook 04's decision rule)
# and the recorded trader (its own P&L, with the information the files do not show: the reference above what
# any policy on these inputs can be expected to reach). Per policy: the return on the notional, the P&L per
# market, the Sharpe ratio per market and the win rate over traded markets, each with its interval. Then
# PPO minus each baseline, market by market, with the smallest difference this test period can detect.

# %%
policies = {"PPO": ppo.PPOPolicy(model), **study.baseline_policies(setup, SEED)}
pnl = E.replay_pnl(setup, policies)
table = E.metrics_table(pnl, setup.notional, N_BOOT, SEED)
display(table[["return", "return_low", "return_high", "pnl_per_market", "sharpe_per_market", "sharpe_per_market_low",
               "sharpe_per_market_high", "win_rate", "win_rate_low", "win_rate_high", "markets_traded"]].round(3))
pairs = E.paired(pnl, "PPO", n_boot=N_BOOT, seed=SEED)
display(pairs.round(2))
for line in E.verdict(pairs):
    print(line)
curves = {name: pd.Series(np.cumsum(pnl[name].to_numpy())) for name in pnl.columns}
plots.save(figures.equity_curves(curves, "Test period: cumulative P&L by market"), "08_ppo_test");
pnl.to_csv(OUT / "test_pnl_per_market.csv")
table.to_csv(OUT / "test_metrics.csv")
study.write_metrics(study.metrics_json(table, pairs, history, {
    "train_seconds": train_seconds, "total_timesteps": TOTAL_TIMESTEPS, "seed": SEED, "conclusion": E.conclusion(pairs),
    "markets": {p: e.n_markets for p, e in setup.periods.items()}}), OUT / "metrics.json")
print(E.conclusion(pairs))

# %% [markdown]
# **Reading the results.** The sentences above come from the paired intervals, not from the point estimates.
# A market's P&L is dominated by whether a position held into settlement wins, so per-market P&L is
# very noisy. The smallest detectable difference is printed next to each comparison. A PPO that "beats" a
# baseline by less than that has not beaten it. If PPO does not beat always HOLD and behaviour cloning with an
# interval above zero, it has not learned a trade that pays on these data at this budget. The likely causes:
# a reward with the variance of settlement, orders sized like the trader's, and the spread paid on every trade.
