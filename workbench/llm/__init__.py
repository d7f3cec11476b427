"""A language model that writes verifiable four-step trading analyses, fine-tuned with LoRA and DPO (notebook 06).

Instead of a bare "BUY (confidence 0.8)", the model writes the analysis of :mod:`workbench.analysis`
(technical analysis, risk assessment, market context, trading signal with confidence, size, stop loss and
take profit), whose every claim :class:`workbench.analysis.StepVerifier` checks against the facts, and it
learns from market outcomes through notebook 05's preference pairs.

Modules
-------
``data``        notebook 05's contract, synthetic decision points, the SFT split and its quality checks
``model``       the tiny Llama-style base and its BPE tokenizer, or any local Hugging Face causal LM
``train``       pretraining of the tiny base, SFT with LoRA (Hu et al. 2021), DPO (Rafailov et al. 2023)
``evaluate``    generation, perplexity, step verification (Lightman et al. 2023), calibration, market outcome
``fastgen``     fast batched decoding over a Llama model's weights; grounding of the numbers on the facts
``probe``       the learning curve of the task: digit-copy accuracy and true steps per checkpoint
``criteria``    the seed's five evaluation criteria on 1-5 scales
``commentary``  market commentaries with checkable claims and their verifier
``chat``        questions about the market and a decision: input validation, bounded context, widget
``chat_eval``   the seed's chat evaluation protocol: five categories, fixed questions, automatic checks
``multitask``   one adapter on analyses, commentaries and chat answers with varied instructions, against one task
``refine``      iterative dataset refinement: failing analyses corrected from the facts and fed back, per round
``figures``     training curves and evaluation figures
``pipeline``    glue for the notebook and the CLI
``cli``         ``python -m workbench.llm generate | train | infer | commentary | chat``
"""

from __future__ import annotations

import workbench  # noqa: F401  (offline flags before transformers is imported)
from workbench.llm.chat import CHAT_SYSTEM_PROMPT, ChatReply, ChatSession, answer_from_facts, chat_widget, fit_context
from workbench.llm.chat_eval import (QUESTIONS, cache_study, chat_scores, chat_study, evaluate_chat, model_sessions,
                                     standard_responders)
from workbench.llm.commentary import (Commentary, CommentaryFacts, CommentaryVerification, CommentaryVerifier,
                                      commentary_facts, commentary_or_none, describe_commentary, template_commentary,
                                      write_commentary)
from workbench.llm.criteria import CRITERIA, criteria_table, score_criteria
from workbench.llm.data import (DECISION_POINT_COLUMNS, ContractError, SFTData, action_balance, build_sft_dataset,
                                decision_points_from_facts, facts_of, indicator_coverage, pretraining_corpus,
                                quality_checks, read_decision_points, read_preference_pairs, synthetic_decision_points,
                                synthetic_facts, synthetic_preference_pairs, write_contract)
from workbench.llm.evaluate import (CLAIM_KINDS, GROUNDED_SUFFIX, TEMPLATE_BASELINE, GenerationSettings, ModelSpec,
                                    claim_failures, claim_table, claims_by_kind, completion_nll, decision_from_analysis,
                                    evaluate_models, generate, perplexity, precision_comparison, quantize_int8,
                                    score_analyses, summarize, true_steps_table)
from workbench.llm.fastgen import FastDecoder, Grounder, GroundingProcessor
from workbench.llm.figures import evaluation_figure, learning_curve_figure, training_curves
from workbench.llm.guard import Sanitized, sanitize
from workbench.llm.model import (CHAT_TEMPLATE, TINY, TaskFormat, TinyConfig, build_tiny_model, device_report,
                                 format_prompt, load_base, reload_check, train_tokenizer)
from workbench.llm.multitask import (Stage, TaskSets, comparison_table, load_stage, multitask_data, multitask_study,
                                     multitask_verdict, score_tasks)
from workbench.llm.pipeline import (Inputs, dpo_adapter_chain, load_inputs, market_data, model_specs, price_source,
                                    save_json, save_tables, true_steps_answer, true_steps_verdict)
from workbench.llm.probe import TaskProbe, copy_digit_accuracy, true_step_rates
from workbench.llm.refine import refinement_study, refinement_verdict
from workbench.llm.train import (BaseModel, LoRASettings, MetricsCallback, TrainResult, TrainSettings, build_tiny_base,
                                 get_base, load_policy, pretrain, settings_for, train_dpo, train_sft)
from workbench.rlaif.finetune import SYSTEM_PROMPT

__all__ = [
    "Stage", "load_stage", "multitask_verdict", "TaskSets", "comparison_table", "multitask_data", "multitask_study", "score_tasks", "refinement_study",
    "refinement_verdict",
    "CRITERIA", "FastDecoder", "GROUNDED_SUFFIX", "Grounder", "GroundingProcessor", "SYSTEM_PROMPT", "TEMPLATE_BASELINE",
    "TaskFormat", "TaskProbe", "copy_digit_accuracy", "criteria_table", "learning_curve_figure", "score_criteria",
    "true_step_rates", "true_steps_table", "true_steps_verdict", "precision_comparison", "quantize_int8",
    "QUESTIONS", "cache_study", "chat_scores", "chat_study", "model_sessions", "evaluate_chat", "standard_responders",
    "CHAT_SYSTEM_PROMPT", "CHAT_TEMPLATE", "CLAIM_KINDS", "claim_table", "claims_by_kind", "DECISION_POINT_COLUMNS", "TINY", "BaseModel", "ChatReply", "ChatSession",
    "Commentary", "CommentaryFacts", "CommentaryVerification", "CommentaryVerifier", "ContractError",
    "GenerationSettings", "Inputs", "LoRASettings", "MetricsCallback", "ModelSpec", "SFTData", "Sanitized",
    "TinyConfig", "TrainResult", "TrainSettings", "action_balance", "answer_from_facts", "build_sft_dataset",
    "build_tiny_base", "build_tiny_model", "chat_widget", "claim_failures", "commentary_facts", "completion_nll",
    "commentary_or_none", "decision_from_analysis", "describe_commentary", "decision_points_from_facts", "device_report", "dpo_adapter_chain", "evaluate_models",
    "evaluation_figure", "facts_of", "fit_context", "format_prompt", "generate", "get_base", "indicator_coverage",
    "load_base", "load_inputs", "load_policy", "market_data", "model_specs", "perplexity", "pretrain",
    "pretraining_corpus", "price_source", "quality_checks", "read_decision_points", "read_preference_pairs",
    "reload_check", "sanitize", "save_json", "save_tables", "score_analyses", "settings_for", "summarize",
    "synthetic_decision_points", "synthetic_facts", "synthetic_preference_pairs", "template_commentary",
    "train_dpo", "train_sft", "train_tokenizer", "training_curves", "true_steps_answer", "write_commentary",
    "write_contract",
]
