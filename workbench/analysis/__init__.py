"""The four-step analysis contract shared by stages 5-7: the facts at a decision point, an analyst that writes
analyses (with controlled mistakes), the step verifier, and the settings of rlhf_config.yaml.
"""

from __future__ import annotations

from workbench.analysis.analyst import (PROMPT_STYLES, Analysis, Analyst, TradeParams, implied_direction,
                                        prompt_from_facts, signal_consistent)
from workbench.analysis.facts import MISTAKES, SIGNALS, STEP_TITLES, Facts, facts_from_steps
from workbench.analysis.rlconfig import (DEFAULT_CONFIG, STEPS, ConfigError, ProcessSupervision, Rewards, RLConfig,
                                         RLHFSettings, StepSpecific, VerifierSettings, load_config)
from workbench.analysis.verifier import Claim, StepVerifier, Verification, split_steps, verify_many

__all__ = ["ConfigError", "DEFAULT_CONFIG", "ProcessSupervision", "RLConfig", "RLHFSettings", "Rewards", "STEPS",
    "StepSpecific", "VerifierSettings", "load_config", "Facts", "MISTAKES", "SIGNALS", "STEP_TITLES",
    "facts_from_steps", "Analysis", "Analyst", "TradeParams", "implied_direction", "prompt_from_facts", "PROMPT_STYLES",
    "signal_consistent", "Claim", "StepVerifier", "Verification", "split_steps", "verify_many"]
