"""RLAIF: from market outcomes to preferences to reward models, with outcome and process supervision.

The design's API (``PreferenceGenerator``, ``OutcomeTracker``, ``RewardModel``, ``create_reward_model``,
``RewardModelTrainer``, ``RLAIFFineTuner``) plus the process reward model and the candidate generators.
"""

from workbench.rlaif.candidates import RULES, candidates_at, make_decision
from workbench.rlaif.finetune import RLAIFFineTuner
from workbench.rlaif.online import OnlineRewardModelTrainer, train_reward_model
from workbench.rlaif.preferences import METRICS, PairingReport, PreferenceGenerator
from workbench.rlaif.registry import PromotionReport, RewardModelRegistry
from workbench.rlaif.reward import (ProcessRewardModel, ProcessRewardTrainer, RewardModel, RewardModelTrainer,
                                    TextEncoder, aggregate_steps, bradley_terry_loss, create_reward_model,
                                    decision_vector, load_reward_model)
from workbench.rlaif.store import Outcome, PreferencePair, Store, TradingDecision
from workbench.rlaif.tracker import OutcomeTracker, ReplayPriceSource, evaluate, path_metrics

__all__ = ["METRICS", "RULES", "Outcome", "OutcomeTracker", "PairingReport", "PreferenceGenerator", "PreferencePair",
           "ProcessRewardModel", "ProcessRewardTrainer", "RLAIFFineTuner", "ReplayPriceSource", "RewardModel",
           "RewardModelTrainer", "Store", "TextEncoder", "TradingDecision", "aggregate_steps", "bradley_terry_loss",
           "candidates_at", "create_reward_model", "load_reward_model", "decision_vector", "evaluate", "make_decision", "path_metrics",
           "OnlineRewardModelTrainer", "train_reward_model", "PromotionReport", "RewardModelRegistry"]
