"""Stage 4b, a reinforcement-learning agent: a gymnasium environment of the recorded Up/Down markets with the
replay's rules, PPO (stable-baselines3) trained on the training period and selected on validation, and its
evaluation against the twin's baselines on the test period."""

from __future__ import annotations

from workbench.agent.env import ACTION_NAMES, EnvData, MarketEnv, run_actions

__all__ = ["ACTION_NAMES", "EnvData", "MarketEnv", "run_actions"]
