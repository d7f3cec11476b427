"""Stage 4, the trader twin: decision-aligned steps, the Decision Transformer (one token per step, and the paper's
interleaved layout), its trainer, checkpoints and inference, the replay backtest and what notebook 04 reports.
"""

from __future__ import annotations

from workbench.twin.checkpoint import BEST_CHECKPOINT, CHECKPOINT_FORMAT_VERSION, load_checkpoint, save_checkpoint
from workbench.twin.infer import TraderInference
from workbench.twin.interleaved import InterleavedDecisionTransformer, hf_state_dict_to_interleaved, interleaved_from_hf
from workbench.twin.model import (MLP, Block, CausalSelfAttention, InterleavedDTConfig, TraderDecisionTransformer,
                                  TraderDTConfig, causal_attention_mask)
from workbench.twin.train import (SequenceDataset, TraderTrainer, balanced_class_weights, make_loader, next_rtg_target,
                                  rtg_from_rewards, warmup_cosine)

__all__ = ["Block", "CausalSelfAttention", "InterleavedDTConfig", "MLP", "TraderDTConfig",
    "TraderDecisionTransformer", "causal_attention_mask", "InterleavedDecisionTransformer",
    "hf_state_dict_to_interleaved", "interleaved_from_hf", "SequenceDataset", "TraderTrainer",
    "balanced_class_weights", "make_loader", "next_rtg_target", "rtg_from_rewards", "warmup_cosine",
    "BEST_CHECKPOINT", "CHECKPOINT_FORMAT_VERSION", "load_checkpoint", "save_checkpoint", "TraderInference"]
