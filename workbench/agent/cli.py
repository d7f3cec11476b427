"""Command line: ``python -m workbench.agent train | evaluate`` (the PPO agent; design 004's ``rl_model.zip``).

Examples (offline; notebook 04's step table and twin.json, notebook 01's quotes)::

    python -m workbench.agent train --total-timesteps 300000 --output-dir models/ppo_agent
    python -m workbench.agent evaluate --model models/ppo_agent/ppo_agent.zip --output-file ppo_test.csv
    python -m workbench.llm generate --rl-model models/ppo_agent/ppo_agent.zip --output-dir data/trading_dataset

``train`` trains PPO (stable-baselines3) on the training period, evaluates it on the validation period
``--evaluations`` times and keeps the best (``ppo_agent.zip`` + ``ppo_agent.json``). ``evaluate`` replays it
on the test period next to always-HOLD, behaviour cloning, the twin and the recorded trader, with bootstrap
intervals over markets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import workbench  # noqa: F401


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", default=None, help="step table (default: data/processed/04_twin/steps.parquet)")
    p.add_argument("--meta", default=None, help="the twin's split, twin.json (default: beside the step table)")
    p.add_argument("--quotes", default=None, help="notebook 01's tables or the wallet's files (default: 01_ingestion)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (small MLP policies gain nothing on a GPU) or cuda")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workbench.agent", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train PPO on the training period, select on validation")
    _common(t)
    t.add_argument("--output-dir", default=None, help="default: models/ppo_agent")
    t.add_argument("--total-timesteps", type=int, default=300_000)
    t.add_argument("--n-envs", type=int, default=8, help="environments in the vectorised env")
    t.add_argument("--evaluations", type=int, default=10, help="validation evaluations (checkpoint selection)")
    t.add_argument("--learning-rate", type=float, default=3e-4)
    t.add_argument("--ent-coef", type=float, default=0.01)
    t.add_argument("--markets-per-episode", type=int, default=1, help="consecutive markets in one episode")
    e = sub.add_parser("evaluate", help="the test period against the baselines")
    _common(e)
    e.add_argument("--model", default=None, help="ppo_agent.zip (default: models/ppo_agent/ppo_agent.zip)")
    e.add_argument("--n-boot", type=int, default=1000)
    e.add_argument("--output-file", default=None, help="the metrics table (.csv)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from workbench.agent import evaluate as E
    from workbench.agent.ppo import AgentSetup, PPOPolicy, default_dir, load_agent, train_ppo
    from workbench.agent.study import baseline_policies, load_inputs

    a = build_parser().parse_args(argv)
    pd.set_option("display.width", 200, "display.max_columns", 30)
    try:
        if a.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"--device {a.device} but this machine has no CUDA GPU: pass --device cpu")
        steps, meta, book = load_inputs(a.steps, a.meta, a.quotes)
        setup = AgentSetup.build(steps, meta, book)
        if a.cmd == "train":
            out = Path(a.output_dir) if a.output_dir else default_dir()
            _, hist = train_ppo(setup, out, total_timesteps=a.total_timesteps, n_envs=a.n_envs,
                                evaluations=a.evaluations, seed=a.seed, learning_rate=a.learning_rate,
                                ent_coef=a.ent_coef, device=a.device, markets_per_episode=a.markets_per_episode)
            print(hist.round(3).to_string(index=False))
            print(f"saved {out / 'ppo_agent.zip'} (best validation P&L {hist['val_pnl'].max():+.2f} USDC)")
            return 0
        agent = load_agent(a.model or default_dir() / "ppo_agent.zip", device=a.device)
        pnl = E.replay_pnl(setup, {"PPO": PPOPolicy(agent.model), **baseline_policies(setup, a.seed)})
        table = E.metrics_table(pnl, setup.notional, a.n_boot, a.seed)
        print(table[["return", "return_low", "return_high", "sharpe_per_market", "win_rate"]].round(3).to_string())
        for line in E.verdict(E.paired(pnl, "PPO", seed=a.seed)):
            print(line)
        if a.output_file:
            table.to_csv(a.output_file)
            print(f"metrics -> {a.output_file}")
        return 0
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
