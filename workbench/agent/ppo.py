"""PPO (stable-baselines3) on :class:`workbench.agent.env.MarketEnv`: trained on the training period, the
checkpoint selected on the validation period's P&L, evaluated on the test period in the same replay as the
twin's baselines (``workbench.twin.backtest.replay``, whose P&L the environment reproduces exactly).

The agent is saved as stable-baselines3's zip (``ppo_agent.zip``) with ``ppo_agent.json`` beside it: the split,
the normaliser, the execution model and the training history, so that :func:`load_agent` can rebuild its
observations on any step table (``python -m workbench.llm generate --rl-model ppo_agent.zip``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import atomic, config
from workbench.agent.env import ACTION_NAMES, EnvData, MarketEnv
from workbench.twin.backtest import ExecutionModel, QuoteBook


@dataclass
class AgentSetup:
    """The twin's split of a step table, the quotes and the execution model, with each period's arrays."""

    data: Any  # workbench.twin.study.TwinData
    book: QuoteBook
    execution: ExecutionModel
    notional: float
    periods: dict[str, EnvData]
    meta: dict[str, Any]

    @classmethod
    def build(cls, steps: pd.DataFrame, meta: dict[str, Any], book: QuoteBook, notional: float | None = None,
              execution: ExecutionModel | None = None) -> "AgentSetup":
        """From a step table and notebook 04's ``twin.json`` (or the twin command's): the same split, features and
        training-period normaliser as the twin; order sizes are the trader's median per class in training and the
        inventory cap is the largest inventory the trader held in training (Up-equivalent shares); a saved agent
        passes its own ``execution``."""
        from workbench.twin import study

        data = study.from_meta(steps, meta)
        tr = data.masks["train"]
        if execution is None:
            execution = ExecutionModel.fit(steps["flow"].to_numpy()[tr], data.actions[tr])
            held = np.abs(data.steps["inventory"].to_numpy(dtype=np.float64)[tr])
            if np.isfinite(held).any() and np.nanmax(held) > 0:  # the inventory cap the trader kept in training
                execution.max_inventory = float(np.nanmax(held))
        notional = float(notional or meta.get("notional", 500.0))
        periods = {p: EnvData.build(data.steps.iloc[data.rows(p)], data.normalizer, book, execution,
                                    levels=data.levels, notional=notional) for p in ("train", "val", "test")}
        return cls(data, book, execution, notional, periods, dict(meta))


def make_vec_env(env_data: EnvData, n_envs: int = 8, seed: int = 0, markets_per_episode: int = 1,
                 reward_scale: float | None = None) -> Any:
    """``n_envs`` copies of the environment in one SB3 ``DummyVecEnv`` (seeded, random markets)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: MarketEnv(env_data, markets_per_episode, reward_scale) for _ in range(n_envs)])
    venv.seed(seed)
    return venv


def greedy_episodes(model: Any, env_data: EnvData) -> tuple[np.ndarray, np.ndarray]:
    """A policy acting greedily (``deterministic=True``) on every market of a period, each from a flat position:
    ``(P&L per market in USDC (n_markets,), class id at every step of the period (n_steps,))``."""
    env = MarketEnv(env_data)
    pnl = np.zeros(env_data.n_markets)
    acts = np.full(len(env_data.starts), 2, dtype=np.int64)
    for m in range(env_data.n_markets):
        obs, _ = env.reset(options={"market": m})
        done = False
        while not done:
            i = env.i
            a, _ = model.predict(obs, deterministic=True)
            acts[i] = int(a)
            obs, _, done, _, info = env.step(int(a))
            pnl[m] = info["pnl"]
    return pnl, acts


def market_pnl(model: Any, env_data: EnvData) -> np.ndarray:
    """P&L per market (USDC) of a policy acting greedily on every market of a period."""
    return greedy_episodes(model, env_data)[0]


def train_ppo(setup: AgentSetup, out_dir: str | os.PathLike[str], *, total_timesteps: int = 200_000, n_envs: int = 8,
              evaluations: int = 10, seed: int = 0, learning_rate: float = 3e-4, n_steps: int = 128,
              batch_size: int = 256, n_epochs: int = 4, gamma: float = 0.99, ent_coef: float = 0.01,
              net_arch: tuple[int, ...] = (64, 64), device: str = "cpu", markets_per_episode: int = 1
              ) -> tuple[Any, pd.DataFrame]:
    """Train PPO on the training period for ``total_timesteps``, evaluating ``evaluations`` times on the whole
    validation period; the best validation P&L's weights are kept (``<out_dir>/ppo_agent.zip``). An episode is
    ``markets_per_episode`` consecutive markets (1: one market).

    Returns the best model and the history (timesteps, seconds, validation P&L in USDC and per market, and
    the share of validation steps it traded)."""
    import torch
    from stable_baselines3 import PPO

    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    venv = make_vec_env(setup.periods["train"], n_envs, seed, markets_per_episode)
    model = PPO("MlpPolicy", venv, learning_rate=learning_rate, n_steps=n_steps, batch_size=batch_size,
                n_epochs=n_epochs, gamma=gamma, ent_coef=ent_coef, seed=seed, device=device, verbose=0,
                policy_kwargs={"net_arch": list(net_arch)})
    chunk = max(n_steps * n_envs, int(total_timesteps) // max(evaluations, 1))
    history, best, t0 = [], -np.inf, time.perf_counter()
    done_steps = 0
    while done_steps < total_timesteps:
        model.learn(min(chunk, total_timesteps - done_steps), reset_num_timesteps=False, progress_bar=False)
        done_steps = int(model.num_timesteps)
        val = market_pnl(model, setup.periods["val"])
        history.append({"timesteps": done_steps, "seconds": time.perf_counter() - t0, "val_pnl": float(val.sum()),
                        "val_pnl_per_market": float(val.mean()), "val_markets_traded": float((val != 0).mean())})
        if val.sum() > best:
            best = float(val.sum())
            model.save(out / "ppo_agent.zip")
    best_model = PPO.load(out / "ppo_agent.zip", device=device)
    hist = pd.DataFrame(history)
    save_meta(setup, out, hist, {"total_timesteps": total_timesteps, "n_envs": n_envs, "seed": seed,
                                 "learning_rate": learning_rate, "n_steps": n_steps, "batch_size": batch_size,
                                 "n_epochs": n_epochs, "gamma": gamma, "ent_coef": ent_coef, "net_arch": list(net_arch),
                                 "markets_per_episode": markets_per_episode})
    return best_model, hist


def save_meta(setup: AgentSetup, out: Path, history: pd.DataFrame, settings: dict[str, Any]) -> Path:
    """``ppo_agent.json``: what :func:`load_agent` needs to act on a step table, and how the agent was trained."""
    meta = {**setup.meta, "agent": "ppo", "notional": setup.notional,
            "execution": {"sizes": {str(k): v for k, v in setup.execution.sizes.items()},
                          "max_inventory": setup.execution.max_inventory, "latency_ms": setup.execution.latency_ms},
            "settings": settings, "history": history.to_dict("records"),
            "best_val_pnl": float(history["val_pnl"].max()) if len(history) else None}
    return atomic.write_text(out / "ppo_agent.json", json.dumps(meta, indent=2, default=float))


class PPOPolicy:
    """A trained PPO model as a :class:`workbench.twin.backtest.Policy` (greedy), for the replay."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def reset(self, n_agents: int) -> None:
        pass

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        a, _ = self.model.predict(np.asarray(states, dtype=np.float32), deterministic=True)
        return np.asarray(a, dtype=np.int64).reshape(-1)

    def observe(self, rewards: np.ndarray) -> None:
        pass


@dataclass
class PPOAgent:
    """A saved agent: the SB3 model and its metadata. :meth:`act` gives its classes on a step table."""

    path: Path
    model: Any
    meta: dict[str, Any]
    kind: str = "ppo"

    def setup(self, steps: pd.DataFrame, book: QuoteBook) -> AgentSetup:
        e = self.meta["execution"]
        execution = ExecutionModel({int(k): float(v) for k, v in e["sizes"].items()}, float(e["max_inventory"]),
                                   int(e["latency_ms"]))
        return AgentSetup.build(steps, self.meta, book, float(self.meta["notional"]), execution)

    def classes(self, steps: pd.DataFrame, book: QuoteBook) -> pd.Series:
        """The agent's class at every step of the split's periods (acting on its own position, market by
        market, as in the environment), indexed by step start; steps in the gaps are HOLD."""
        setup = self.setup(steps, book)
        out = pd.Series(ACTION_NAMES.index("HOLD"), index=setup.data.steps.index, dtype=np.int64)
        for ed in setup.periods.values():
            out.loc[ed.index] = greedy_episodes(self.model, ed)[1]
        return out


def classes_at(agent: "PPOAgent", steps: pd.DataFrame, book: QuoteBook, times_ms: np.ndarray) -> np.ndarray:
    """The agent's class ``(n,)`` at step starts ``times_ms`` (HOLD where it did not act)."""
    cls = agent.classes(steps, book)
    return cls.reindex(pd.to_datetime(np.asarray(times_ms), unit="ms", utc=True)).fillna(2).astype(np.int64).to_numpy()


def load_agent(path: str | os.PathLike[str], device: str = "cpu") -> PPOAgent:
    """A :func:`train_ppo` agent from its zip (``ppo_agent.json`` beside it)."""
    from stable_baselines3 import PPO

    p = Path(path)
    if p.is_dir():
        p = p / "ppo_agent.zip"
    meta_path = p.with_suffix(".json")
    if not p.is_file() or not meta_path.is_file():
        raise ValueError(f"{p}: no PPO agent (needs the zip and {meta_path.name} beside it, as train_ppo saves them)")
    return PPOAgent(p, PPO.load(p, device=device), json.loads(meta_path.read_text()))


def default_dir() -> Path:
    return config.paths().models / "ppo_agent"
