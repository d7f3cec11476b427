"""RLHF with process supervision (notebook 07): reward functions, RL fine-tuning with trl GRPO, diagnostics."""

from workbench.rlhf.rewards import (MENTIONS, Scheme, Scored, calibration_reward, mention_reward, outcome_reward,
                                    process_reward, process_reward_from_probs, score)

__all__ = ["MENTIONS", "Scheme", "Scored", "calibration_reward", "mention_reward", "outcome_reward", "process_reward",
           "process_reward_from_probs", "score"]
