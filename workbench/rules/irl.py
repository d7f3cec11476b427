"""Inverse RL proper as the rule card's peer: AIRL (Fu, Luo & Levine, 2018) from the ``imitation`` library.

The trader's recorded actions are replayed in notebook 08's market environment (:class:`workbench.agent.env.
MarketEnv`, the twin's state and the replay's fills), one trajectory per training market; AIRL learns a reward
``g(s, a) + gamma h(s') - h(s)`` with a discriminator against a PPO generator (stable-baselines3), and the
generator -- the policy that is optimal for the learned reward, entropy-regularised -- is the model of the
trader. It is scored on the same held-out steps as the card, as action probabilities of the observed classes,
with the trader's own positions replayed (so the state is the one the trader was in, as for every other model).

``imitation`` 1.0.1 pins gymnasium ~= 0.29 and stable-baselines3 ~= 2.2.1; the workbench runs gymnasium 1.x and
stable-baselines3 2.x, so the Makefile installs it without its dependencies, and ``tests/test_rules_irl.py``
checks that the parts used here (AIRL, the shaped reward net, trajectories) run on them.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.agent.env import ACTION_NAMES, EnvData, MarketEnv


def replay_trader(env_data: EnvData, actions: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The trader's recorded actions played in the environment, market by market.

    Parameters
    ----------
    env_data : one period's arrays (rows in the step table's order).
    actions : ``(n,)`` int, the trader's class (0..4) at each of the period's ``n`` steps.

    Returns
    -------
    trajectories : one ``imitation.data.types.Trajectory`` per market (``obs (m + 1, D)``, ``acts (m,)``,
        terminal), the demonstrations.
    obs : ``(n, D)`` float32, the state at each step, in row order (what a policy is scored on).
    """
    from imitation.data.types import Trajectory

    actions = np.asarray(actions, dtype=np.int64)
    if len(actions) != len(env_data.starts):
        raise ValueError(f"{len(actions)} actions for {len(env_data.starts)} steps")
    env = MarketEnv(env_data)
    trajs, rows = [], []
    for m, (a, b) in enumerate(env_data.segments):
        o, _ = env.reset(options={"market": m})
        obs = [o]
        for act in actions[a:b]:
            o, _, done, _, _ = env.step(int(act))
            obs.append(o)
            if done:
                break
        ob = np.stack(obs).astype(np.float32)
        trajs.append(Trajectory(obs=ob, acts=actions[a:b].copy(), infos=None, terminal=True))
        rows.append(ob[:-1])
    return trajs, (np.concatenate(rows) if rows else np.zeros((0, env_data.obs_dim), np.float32))


def policy_probs(policy: Any, obs: np.ndarray, batch: int = 8192) -> np.ndarray:
    """``(n, 5)`` action probabilities of an SB3 policy at the states ``obs (n, D)``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            dist = policy.get_distribution(torch.as_tensor(obs[i: i + batch], device=policy.device))
            out.append(dist.distribution.probs.cpu().numpy())
    p = np.concatenate(out) if out else np.zeros((0, len(ACTION_NAMES)))
    return np.clip(p, 1e-9, 1.0) / np.clip(p, 1e-9, 1.0).sum(axis=1, keepdims=True)


@dataclass
class AIRLFit:
    """The generator (an SB3 ``PPO``), the learned reward net, and per round the discriminator's statistics
    and the generator's validation log-loss of the trader's actions (the round kept is the best one)."""

    generator: Any
    reward_net: Any
    history: pd.DataFrame
    best_round: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def probs(self, obs: np.ndarray) -> np.ndarray:
        return policy_probs(self.generator.policy, obs)


def fit_airl(train: EnvData, demos: list[Any], val_obs: np.ndarray, val_actions: np.ndarray, *, rounds: int = 8,
             gen_steps: int = 2048, n_envs: int = 4, disc_updates: int = 4, demo_batch_size: int = 512,
             bc_epochs: int = 0, seed: int = 0, log_dir: str | os.PathLike[str] | None = None) -> AIRLFit:
    """AIRL on the training period's markets, ``rounds`` rounds of ``gen_steps`` generator steps and
    ``disc_updates`` discriminator updates; the generator of the round with the lowest validation log-loss of
    the trader's actions is kept (selection on validation, never on test). ``bc_epochs > 0`` starts the
    generator from behaviour cloning (imitation's ``BC``, the usual warm start of adversarial imitation; round 0
    of the history is that start, so a kept round 0 says the adversarial rounds added nothing to it).

    Parameters
    ----------
    train : the training period's arrays (the generator's environment: random markets).
    demos : the trader's trajectories of the training period (:func:`replay_trader`).
    val_obs, val_actions : ``(n, D)`` states and ``(n,)`` classes of the validation period.
    log_dir : where imitation's logger may write (a temporary folder by default, removed after).
    """
    from imitation.algorithms import bc
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.rewards.reward_nets import BasicShapedRewardNet
    from imitation.util import logger as imit_logger
    from imitation.util import networks
    from stable_baselines3 import PPO

    from workbench.agent.ppo import make_vec_env

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    venv = make_vec_env(train, n_envs=n_envs, seed=seed)
    n_steps = max(64, gen_steps // n_envs)
    gen = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=min(256, n_steps * n_envs), ent_coef=0.01,
              learning_rate=3e-4, gamma=0.99, seed=seed, verbose=0, device="cpu")
    net = BasicShapedRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=networks.RunningNorm)
    val_actions = np.asarray(val_actions, dtype=np.int64)
    rows, best, best_state = [], np.inf, None
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(log_dir) if log_dir is not None else tmp
        log = imit_logger.configure(folder=folder, format_strs=[])
        airl = AIRL(demonstrations=demos, demo_batch_size=demo_batch_size, gen_replay_buffer_capacity=n_steps * n_envs,
                    n_disc_updates_per_round=disc_updates, venv=venv, gen_algo=gen, reward_net=net,
                    allow_variable_horizon=True, custom_logger=log)
        if bc_epochs > 0:
            bc.BC(observation_space=venv.observation_space, action_space=venv.action_space, policy=gen.policy,
                  demonstrations=demos, rng=np.random.default_rng(seed), batch_size=256, custom_logger=log,
                  device="cpu").train(n_epochs=bc_epochs, progress_bar=False, log_interval=10**9)
        for r in range(-1 if bc_epochs > 0 else 0, rounds):
            stats: dict[str, float] = {}
            if r >= 0:
                airl.train_gen(n_steps * n_envs)
                for _ in range(disc_updates):
                    with networks.training(airl.reward_train):
                        stats = airl.train_disc()
            p = policy_probs(gen.policy, val_obs)
            ll = float(-np.mean(np.log(p[np.arange(len(val_actions)), val_actions]))) if len(val_actions) else np.nan
            rows.append({"round": r + 1, "timesteps": (r + 1) * n_steps * n_envs, "val_log_loss": ll,
                         **{k: float(stats[k]) for k in ("disc_loss", "disc_acc", "disc_acc_expert", "disc_acc_gen")
                            if k in stats}})
            if ll < best:
                best, best_state = ll, {k: v.clone() for k, v in gen.policy.state_dict().items()}
    if best_state is not None:
        gen.policy.load_state_dict(best_state)
    hist = pd.DataFrame(rows)
    best_round = int(hist.loc[hist["val_log_loss"].idxmin(), "round"]) if hist["val_log_loss"].notna().any() else rounds
    venv.close()
    return AIRLFit(gen, net, hist, best_round, time.perf_counter() - t0,
                   {"rounds": rounds, "gen_steps": n_steps * n_envs, "n_envs": n_envs, "disc_updates": disc_updates,
                    "demo_batch_size": demo_batch_size, "seed": seed, "demos": len(demos)})


def peers(setup: Any, *, rounds: int = 20, gen_steps: int = 4096, bc_epochs: int = 5, n_envs: int = 4,
          seed: int = 0) -> dict[str, tuple[AIRLFit, tuple[np.ndarray, np.ndarray]]]:
    """AIRL from scratch and AIRL from a behaviour-cloning start, each with its ``(validation, test)`` action
    probabilities on the trader's states, ready for :func:`workbench.twin.evaluate.score_table`.

    Parameters
    ----------
    setup : notebook 08's :class:`workbench.agent.ppo.AgentSetup` (the twin's split, features and fills).
    rounds, gen_steps : AIRL rounds and generator steps per round (the BC start runs half the rounds: it
        starts near the trader).
    """
    data = setup.data
    acts = {p: data.actions[data.rows(p)] for p in ("train", "val", "test")}
    demos, _ = replay_trader(setup.periods["train"], acts["train"])
    obs = {p: replay_trader(setup.periods[p], acts[p])[1] for p in ("val", "test")}
    out = {}
    for name, bc_ep, n_rounds in (("AIRL", 0, rounds), ("AIRL, BC start", bc_epochs, max(1, rounds // 2))):
        fit = fit_airl(setup.periods["train"], demos, obs["val"], acts["val"], rounds=n_rounds, gen_steps=gen_steps,
                       n_envs=n_envs, bc_epochs=bc_ep, seed=seed)
        out[name] = (fit, (fit.probs(obs["val"]), fit.probs(obs["test"])))
    return out
