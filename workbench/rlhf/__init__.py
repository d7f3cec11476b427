"""RLHF with process supervision (notebook 07): reward functions, RL fine-tuning with trl GRPO, diagnostics.

Modules
-------
``rewards``      reward functions with the values of ``rlhf_config.yaml``, the reward-hacking guard, trl GRPO
                 reward functions (one per scheme), the market outcome of a signal
``curriculum``   difficulty of a decision point from its facts; clear, calm prompts first
``grpo``         GRPO (Shao et al. 2024) of the SFT model with trl, a LoRA adapter on the merged SFT weights
``evaluation``   held-out comparison with bootstrap intervals, best-of-n reranking, the computed verdict
``diagnostics``  the guide's ``debug_rewards`` / ``analyze_steps``: rewards per step type, worst steps, figures
``study``        notebook 07's glue (inputs, prompts, training every scheme, saving)
``power``        within-group reward variance, held-out targets (true EV, P&L, held-out claims), detectable effect
``trainer``      the guide's ``RLHFTradingTrainer`` and ``generate_trading_analysis``
``cli``          ``python -m workbench.rlhf train | evaluate | generate``

Heavy dependencies (torch, transformers, trl) load only when a function needs them.
"""

from workbench.rlhf.rewards import (HELD_OUT_CLAIMS, MENTIONS, GRPOReward, ReplayOutcome, Scheme, Scored,
                                    calibration_reward, completion_text, format_reward, grpo_reward_functions,
                                    mention_reward, outcome_reward, prm_process_reward, prm_step_probs, process_reward,
                                    process_reward_from_probs, score)

__all__ = ["MENTIONS", "Scheme", "Scored", "calibration_reward", "mention_reward", "outcome_reward", "process_reward",
           "process_reward_from_probs", "score",
           # added for notebook 07
           "GRPOReward", "RLHFTradingTrainer", "attach_returns", "RLResult", "RLSettings", "ReplayOutcome", "STAGES", "analyze_steps",
           "best_of_n", "best_of_n_study", "combine_scored", "comparison_figure", "completion_text", "conclusion",
           "correlation_figure", "crafted_analyses", "build_curriculum", "curriculum_figure", "debug_rewards",
           "difficulty_table", "display_table", "evaluate_policies", "facts_from_market", "final_table",
           "format_reward", "grpo_reward_functions", "load_inputs", "load_rl_policy", "policy_loaders",
           "prm_process_reward", "prm_step_probs", "reward_outcome_correlation", "rl_pool", "rl_settings",
           "save_outputs", "scored_facts", "stage_summary", "step_figure", "step_table", "summary_table",
           "test_examples", "train_grpo", "train_schemes", "training_figure", "training_steps", "training_summary",
           "worst_steps", "comparisons_table", "compare", "resolve_config", "device_kind",
           # issue 17: power of the comparison
           "HELD_OUT_CLAIMS", "group_reward_variance", "held_out_claims", "minimum_detectable_effect",
           "scheme_comparison", "target_table", "true_ev", "truth_path", "attach_targets", "rl_metrics", "ev_ceiling"]

_LAZY = {
    "curriculum": ("STAGES", "build_curriculum", "difficulty_table", "stage_summary"),
    "grpo": ("RLResult", "RLSettings", "device_kind", "load_rl_policy", "rl_settings", "train_grpo"),
    "evaluation": ("attach_returns", "best_of_n", "compare", "comparisons_table", "conclusion", "display_table", "evaluate_policies",
                   "final_table", "summary_table"),
    "diagnostics": ("analyze_steps", "comparison_figure", "correlation_figure", "curriculum_figure", "debug_rewards",
                    "reward_outcome_correlation", "step_figure", "step_table", "training_figure", "training_steps",
                    "worst_steps"),
    "study": ("best_of_n_study", "combine_scored", "crafted_analyses", "load_inputs", "policy_loaders", "rl_pool",
              "save_outputs", "scored_facts", "test_examples", "train_schemes", "training_summary"),
    "trainer": ("RLHFTradingTrainer", "facts_from_market", "resolve_config"),
    "power": ("group_reward_variance", "held_out_claims", "minimum_detectable_effect", "scheme_comparison",
              "target_table", "true_ev", "truth_path", "attach_targets", "rl_metrics", "ev_ceiling"),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}


def __getattr__(name: str):  # PEP 562: import submodules on first use
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"workbench.rlhf.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'workbench.rlhf' has no attribute {name!r}")
