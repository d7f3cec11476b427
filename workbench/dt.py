"""The trader twin: a Decision Transformer that imitates a trader and is steered by a target return.

A Decision Transformer (Chen et al., 2021, "Decision Transformer: Reinforcement Learning via Sequence
Modeling") treats offline RL as sequence modelling: given the return still to be earned (the
*return-to-go*, RTG), the states seen so far and the actions taken so far, predict the next action.
Trained on a trader's history it imitates the trader; at inference, the RTG fed in is a *target*
return, so asking for more (or less) steers the imitation towards the trader's better (or worse)
behaviour.

Two architectures live here, sharing one GPT-2 style block (pre-norm, causal self-attention):

:class:`TraderDecisionTransformer` (the design's model, used by the trainer by default)
    **One token per step.** Separate encoders embed the RTG (a scalar), the state (a ``state_dim``
    vector) and the *previous* action ``a_{t-1}`` (an embedding with an extra ``START`` index for the
    first step of a window); their outputs are concatenated, projected to ``d_model`` and given a
    learned positional embedding; ``n_layers`` causal blocks follow. An action head gives logits over
    the five classes of :data:`workbench.simulate.ACTIONS` and an RTG head predicts the **next**
    return-to-go (see below). The model shifts the actions itself: callers pass the true sequence
    ``a_0 .. a_{T-1}`` and the input at step ``t`` is ``a_{t-1}``, never ``a_t`` (tested), so the
    target cannot leak.

:class:`InterleavedDecisionTransformer` (the original paper's layout)
    **Three tokens per step**, ``R_1, s_1, a_1, R_2, s_2, a_2, ...``, each embedding plus a timestep
    embedding, a LayerNorm, GPT-2 blocks; ``a_t`` is predicted from the hidden state of the ``s_t``
    token. With the same weights (:func:`interleaved_from_hf`) it reproduces Hugging Face's
    ``transformers.DecisionTransformerModel`` to within 1e-5 (tested; bit-for-bit on CPU with
    transformers 5.23 and torch 2.13), when HF is given one-hot actions.

Conventions
-----------
* Shapes: ``B`` batch, ``T`` steps in a window, ``S`` = ``state_dim``, ``A`` = ``action_dim`` (5),
  ``C`` = ``d_model``.
* ``mask (B, T)`` marks valid steps (True/1). Padded steps may sit anywhere before or after the valid
  ones (left or right padding); valid steps never attend to padded ones, losses and metrics ignore
  them, and their action values are never embedded (use any value there, e.g. -1).
* **RTG head target.** The input at step ``t`` already contains ``RTG_t``, so predicting ``RTG_t``
  would be trivial. The head predicts the *next* return-to-go ``RTG_{t+1} = RTG_t - r_t`` instead
  (the return still to come once step ``t``'s reward is realised; 0 after the episode's last step).
  :func:`next_rtg_target` builds it: exactly ``rtg - rewards`` when the batch carries ``rewards``,
  else from the RTG sequence and the mask, taking the last valid step of each window as the episode's
  end (target 0). Pipelines that cut windows out of longer episodes should therefore pass
  ``rewards``. (Hugging Face's DT predicts the return from the ``a_t`` token, which is the same
  quantity: "predict next return given state and action".)
* Positions are indices within the window (``0 .. T-1``) unless ``timesteps`` are passed. A window
  cut from the middle of an episode starts with ``START`` as its previous action; inference does the
  same when its context slides, so training and inference agree.
* RTG and states are used as given: scale them in the pipeline (store the statistics in the
  checkpoint's ``normalization`` dict) and pass the target RTG in the same units.

Training (:class:`TraderTrainer`) runs through ``accelerate.Accelerator``: CPU by default, CUDA when
present, several GPUs under ``accelerate launch`` with no code change. Checkpoints
(:func:`save_checkpoint`) hold only tensors and plain Python types, so ``torch.load(path)`` works
with torch's default ``weights_only=True``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from workbench import atomic
from workbench.simulate import ACTIONS

__all__ = [
    "ACTIONS", "CHECKPOINT_FORMAT_VERSION", "BEST_CHECKPOINT", "TraderDTConfig", "InterleavedDTConfig",
    "Block", "causal_attention_mask", "TraderDecisionTransformer", "InterleavedDecisionTransformer", "hf_state_dict_to_interleaved",
    "interleaved_from_hf", "SequenceDataset", "make_loader", "next_rtg_target", "rtg_from_rewards",
    "balanced_class_weights", "warmup_cosine", "save_checkpoint", "load_checkpoint", "TraderTrainer",
    "TraderInference",
]

#: Version of the checkpoint layout written by :func:`save_checkpoint`.
CHECKPOINT_FORMAT_VERSION = 1
#: File name of the best checkpoint written by :meth:`TraderTrainer.fit`.
BEST_CHECKPOINT = "best_model.pt"


# ----------------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------------


@dataclass
class TraderDTConfig:
    """Hyper-parameters of :class:`TraderDecisionTransformer` (one token per step)."""

    state_dim: int = 17  # features in the state vector of one step
    action_dim: int = len(ACTIONS)  # action classes (STRONG_BUY .. STRONG_SELL); class id = index
    d_model: int = 128  # transformer width C
    n_layers: int = 6  # causal transformer blocks
    n_heads: int = 8  # attention heads; d_model must be divisible by it
    dropout: float = 0.1  # dropout on the input embedding, attention weights and residual branches
    max_len: int = 128  # longest window (steps) = size of the positional table; raise it for longer windows
    d_rtg: int = 32  # output width of the return-to-go encoder
    d_state: int = 64  # output width of the state encoder
    d_action: int = 32  # width of the previous-action embedding (action_dim + 1 rows, the last is START)
    mlp_ratio: int = 4  # hidden width of each block's MLP, in multiples of d_model
    activation: str = "gelu"  # MLP non-linearity: "gelu", "gelu_tanh" or "relu"
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm


@dataclass
class InterleavedDTConfig:
    """Hyper-parameters of :class:`InterleavedDecisionTransformer` (three tokens per step, as HF)."""

    state_dim: int = 17  # features in the state vector of one step
    action_dim: int = len(ACTIONS)  # action classes; HF's act_dim
    d_model: int = 128  # transformer width C; HF's hidden_size
    n_layers: int = 6  # GPT-2 blocks; HF's n_layer
    n_heads: int = 8  # attention heads; HF's n_head
    dropout: float = 0.1  # embedding, attention and residual dropout; HF's embd/attn/resid_pdrop
    max_len: int = 128  # longest window in steps (3 * max_len tokens); the inference context
    max_ep_len: int = 4096  # rows of the timestep embedding; HF's max_ep_len
    mlp_ratio: int = 4  # MLP hidden width in multiples of d_model; HF's n_inner = mlp_ratio * hidden_size
    activation: str = "relu"  # MLP non-linearity; HF's activation_function (relu by default, as Chen et al.)
    layer_norm_eps: float = 1e-5  # epsilon of the blocks' LayerNorms; HF's layer_norm_epsilon


def _make_config(cls: type, config: Any, overrides: dict[str, Any]) -> Any:
    cfg = replace(config, **overrides) if config is not None else cls(**overrides)
    if cfg.d_model % cfg.n_heads:
        raise ValueError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
    return cfg


# ----------------------------------------------------------------------------------------------------
# The GPT-2 style block shared by both variants (nanoGPT layout: pre-norm, fused qkv)
# ----------------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),  # Hugging Face's name for the tanh approximation
    "relu": nn.ReLU,
}


def causal_attention_mask(valid: Tensor | None) -> Tensor | None:
    """Boolean attention mask (True = may attend) combining causality and key padding.

    Parameters
    ----------
    valid : Tensor (B, L) bool, optional
        Valid tokens. ``None`` means all are valid; the blocks then use ``is_causal=True``.

    Returns
    -------
    Tensor (B, 1, L, L) bool or None
        Token ``i`` may attend to token ``j`` iff ``j <= i`` and ``j`` is valid. A token always attends
        to itself, so padded rows stay finite (their outputs are ignored). ``None`` when every token is
        valid: plain causal attention then takes SDPA's fused (flash) path instead of the slower
        explicit-mask one (Hugging Face does the same).
    """
    if valid is None or bool(valid.all()):
        return None
    L = valid.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()  # (L, L)
    eye = torch.eye(L, dtype=torch.bool, device=valid.device)  # (L, L)
    return (causal & (valid[:, None, None, :] | eye)).contiguous()  # (B, 1, L, L)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused q/k/v projection (GPT-2's ``c_attn``/``c_proj``)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        B, L, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, L, C)
        q = q.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, L, hd)
        k = k.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, L, hd)
        v = v.view(B, L, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, H, L, hd)
        p = self.dropout if self.training else 0.0
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, L, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, H, L, hd)
        y = y.transpose(1, 2).contiguous().view(B, L, C)  # (B, L, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network ``c_fc -> activation -> c_proj``."""

    def __init__(self, d_model: int, mlp_ratio: int, activation: str, dropout: float) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation {activation!r} not in {sorted(_ACTIVATIONS)}")
        self.c_fc = nn.Linear(d_model, mlp_ratio * d_model)
        self.act = _ACTIVATIONS[activation]()
        self.c_proj = nn.Linear(mlp_ratio * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))`` (GPT-2 / nanoGPT)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, mlp_ratio: int = 4,
                 activation: str = "gelu", layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.mlp = MLP(d_model, mlp_ratio, activation, dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)  # (B, L, C)
        x = x + self.mlp(self.ln_2(x))  # (B, L, C)
        return x


def _init_weights(model: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layers)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))


def _check_inputs(states: Tensor, rtg: Tensor, actions: Tensor, mask: Tensor | None, max_len: int) -> None:
    B, T = states.shape[:2]
    if states.dim() != 3 or rtg.shape != (B, T) or actions.shape != (B, T):
        raise ValueError(f"expected states (B, T, S), rtg (B, T), actions (B, T); got {tuple(states.shape)}, "
                         f"{tuple(rtg.shape)}, {tuple(actions.shape)}")
    if mask is not None and mask.shape != (B, T):
        raise ValueError(f"mask must be (B, T) = {(B, T)}, got {tuple(mask.shape)}")
    if T > max_len:
        raise ValueError(f"window of {T} steps exceeds max_len={max_len}; build the model with a larger max_len")


# ----------------------------------------------------------------------------------------------------
# The design's model: one token per step, previous action shifted in by the model
# ----------------------------------------------------------------------------------------------------


class TraderDecisionTransformer(nn.Module):
    """Decision Transformer with one token per step (the trader twin).

    Per step ``t`` the token is ``W [enc_R(RTG_t); enc_s(s_t); emb(a_{t-1})] + pos_t``, ``a_{-1} = START``;
    ``n_layers`` pre-norm causal blocks follow, then an action head (logits for ``a_t``) and an RTG head
    (``RTG_{t+1}``). Compared with the paper's interleaved layout (Chen et al., 2021) the sequence is 3x
    shorter, so attention is ~9x cheaper, and the action token is the *previous* action, which keeps
    ``a_t`` out of its own prediction.

    Parameters
    ----------
    config : TraderDTConfig, optional
        Base configuration; defaults to ``TraderDTConfig()``.
    **overrides
        Fields of :class:`TraderDTConfig` to override, e.g. ``TraderDecisionTransformer(state_dim=17,
        action_dim=5, n_layers=2)``.
    """

    def __init__(self, config: TraderDTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = self.config = _make_config(TraderDTConfig, config, overrides)
        self.start_index = cfg.action_dim  # the embedding row used as a_{-1}
        self.rtg_encoder = nn.Sequential(nn.Linear(1, cfg.d_rtg), nn.GELU(), nn.Linear(cfg.d_rtg, cfg.d_rtg))
        self.state_encoder = nn.Sequential(nn.Linear(cfg.state_dim, cfg.d_state), nn.GELU(),
                                           nn.Linear(cfg.d_state, cfg.d_state))
        self.action_encoder = nn.Embedding(cfg.action_dim + 1, cfg.d_action)  # + START
        self.input_proj = nn.Linear(cfg.d_rtg + cfg.d_state + cfg.d_action, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg.d_model, cfg.n_heads, cfg.dropout, cfg.mlp_ratio, cfg.activation,
                                           cfg.layer_norm_eps) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.action_head = nn.Linear(cfg.d_model, cfg.action_dim)
        self.rtg_head = nn.Linear(cfg.d_model, 1)
        _init_weights(self, cfg.n_layers)

    @property
    def max_len(self) -> int:
        """Longest window the model accepts (steps)."""
        return self.config.max_len

    def forward(self, states: Tensor, rtg: Tensor, actions: Tensor, mask: Tensor | None = None,
                timesteps: Tensor | None = None) -> dict[str, Tensor]:
        """Predict ``a_t`` and ``RTG_{t+1}`` at every step of a window.

        Parameters
        ----------
        states : Tensor (B, T, S) float
            States ``s_0 .. s_{T-1}``.
        rtg : Tensor (B, T) float
            Returns-to-go ``RTG_t`` (return from step t to the end, target return at inference).
        actions : Tensor (B, T) long
            The **true** actions ``a_0 .. a_{T-1}``; the model shifts them right itself, so the input at
            step t is ``a_{t-1}`` (``START`` at t = 0 and after a padded step). ``a_{T-1}`` is unused.
        mask : Tensor (B, T) bool, optional
            Valid steps (default: all).
        timesteps : Tensor (B, T) or (T,) long, optional
            Rows of the positional table (default ``0 .. T-1``; each must be < ``max_len``).

        Returns
        -------
        dict
            ``action_logits`` (B, T, A): logits of ``a_t``; ``rtg_pred`` (B, T): ``RTG_{t+1}``.
        """
        cfg = self.config
        _check_inputs(states, rtg, actions, mask, cfg.max_len)
        B, T, _ = states.shape
        valid = mask.bool() if mask is not None else None
        # shift right: the action input at step t is a_{t-1}; START at t = 0 and after a padded step
        start = torch.full((B, 1), self.start_index, dtype=torch.long, device=actions.device)
        prev = torch.cat([start, actions[:, :-1].long()], dim=1)  # (B, T)
        if valid is not None:
            prev_valid = torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], dim=1)  # (B, T)
            prev = torch.where(prev_valid, prev, start)  # (B, T)
        r = self.rtg_encoder(rtg.unsqueeze(-1).to(states.dtype))  # (B, T, d_rtg)
        s = self.state_encoder(states)  # (B, T, d_state)
        a = self.action_encoder(prev)  # (B, T, d_action)
        x = self.input_proj(torch.cat([r, s, a], dim=-1))  # (B, T, C)
        pos = timesteps if timesteps is not None else torch.arange(T, device=states.device)  # (T,) or (B, T)
        x = self.drop(x + self.pos_emb(pos))  # (B, T, C)
        attn_mask = causal_attention_mask(valid)  # None or (B, 1, T, T)
        for block in self.blocks:
            x = block(x, attn_mask)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)
        return {"action_logits": self.action_head(x),  # (B, T, A)
                "rtg_pred": self.rtg_head(x).squeeze(-1)}  # (B, T)


# ----------------------------------------------------------------------------------------------------
# The paper's interleaved layout, weight-compatible with transformers.DecisionTransformerModel
# ----------------------------------------------------------------------------------------------------


class InterleavedDecisionTransformer(nn.Module):
    """Decision Transformer with interleaved tokens ``R_1, s_1, a_1, R_2, ...`` (Chen et al., 2021).

    Mirrors Hugging Face's ``DecisionTransformerModel`` exactly, module by module:
    ``e = LayerNorm(embed_x(x_t) + embed_timestep(t))`` for x in (R, s, a), interleaved; plus a learned
    vector ``token_bias`` (HF adds GPT-2's position embedding of index 0 to every token, since it passes
    ``position_ids = 0``); dropout; GPT-2 blocks; final LayerNorm. Action logits come from the ``s_t``
    token; the next return-to-go and next state from the ``a_t`` token (as HF).

    Differences from HF, none of which changes the outputs:

    * actions are class ids embedded by ``nn.Embedding(A, C)``; HF applies ``nn.Linear(A, C)`` to a
      float action vector. On one-hot actions the two are equal: ``Linear(onehot(a)) = W[:, a] + b``,
      so the mapping stores ``W.T + b`` as the embedding table;
    * ``nn.Linear`` instead of GPT-2's ``Conv1D`` (the mapping transposes the weights);
    * no ``tanh`` on the action head (HF ``action_tanh=False``): the outputs are logits;
    * the unused parts of HF's GPT-2 (token embedding ``wte``, position rows >= 1) are dropped.

    Parameters
    ----------
    config : InterleavedDTConfig, optional
        Base configuration; defaults to ``InterleavedDTConfig()``.
    **overrides
        Fields of :class:`InterleavedDTConfig` to override.
    """

    def __init__(self, config: InterleavedDTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = self.config = _make_config(InterleavedDTConfig, config, overrides)
        C = cfg.d_model
        self.embed_timestep = nn.Embedding(cfg.max_ep_len, C)
        self.embed_return = nn.Linear(1, C)
        self.embed_state = nn.Linear(cfg.state_dim, C)
        self.embed_action = nn.Embedding(cfg.action_dim, C)
        self.embed_ln = nn.LayerNorm(C)  # HF: default eps, not layer_norm_eps
        self.token_bias = nn.Parameter(torch.zeros(C))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(C, cfg.n_heads, cfg.dropout, cfg.mlp_ratio, cfg.activation,
                                           cfg.layer_norm_eps) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.predict_action = nn.Linear(C, cfg.action_dim)
        self.predict_return = nn.Linear(C, 1)
        self.predict_state = nn.Linear(C, cfg.state_dim)
        _init_weights(self, cfg.n_layers)
        nn.init.normal_(self.token_bias, mean=0.0, std=0.02)

    @property
    def max_len(self) -> int:
        """Longest window the model accepts (steps; 3x as many tokens)."""
        return self.config.max_len

    def forward(self, states: Tensor, rtg: Tensor, actions: Tensor, mask: Tensor | None = None,
                timesteps: Tensor | None = None) -> dict[str, Tensor]:
        """Predict ``a_t`` from the ``s_t`` token and ``RTG_{t+1}``, ``s_{t+1}`` from the ``a_t`` token.

        Parameters
        ----------
        states : Tensor (B, T, S) float
        rtg : Tensor (B, T) float
        actions : Tensor (B, T) long
            Actions ``a_0 .. a_{T-1}``, fed as tokens *after* their state: causality alone keeps ``a_t``
            out of the logits at step t.
        mask : Tensor (B, T) bool, optional
            Valid steps (default: all); each step's three tokens share its flag.
        timesteps : Tensor (B, T) or (T,) long, optional
            Rows of the timestep embedding (default ``0 .. T-1``; each must be < ``max_ep_len``).

        Returns
        -------
        dict
            ``action_logits`` (B, T, A), ``rtg_pred`` (B, T) and ``state_pred`` (B, T, S).
        """
        cfg = self.config
        _check_inputs(states, rtg, actions, mask, cfg.max_len)
        B, T, _ = states.shape
        C = cfg.d_model
        valid = mask.bool() if mask is not None else None
        acts = actions.long() if valid is None else torch.where(valid, actions.long(), 0)  # padded -> class 0
        steps = timesteps if timesteps is not None else torch.arange(T, device=states.device)
        time_emb = self.embed_timestep(steps)  # (T, C) or (B, T, C)
        r = self.embed_return(rtg.unsqueeze(-1).to(states.dtype)) + time_emb  # (B, T, C)
        s = self.embed_state(states) + time_emb  # (B, T, C)
        a = self.embed_action(acts) + time_emb  # (B, T, C)
        x = torch.stack([r, s, a], dim=2).reshape(B, 3 * T, C)  # (B, 3T, C): R_0, s_0, a_0, R_1, ...
        x = self.drop(self.embed_ln(x) + self.token_bias)  # (B, 3T, C)
        token_valid = valid.repeat_interleave(3, dim=1) if valid is not None else None  # (B, 3T)
        attn_mask = causal_attention_mask(token_valid)  # None or (B, 1, 3T, 3T)
        for block in self.blocks:
            x = block(x, attn_mask)  # (B, 3T, C)
        x = self.ln_f(x).reshape(B, T, 3, C)  # (B, T, 3, C); [:, :, 1] is the s_t token
        return {"action_logits": self.predict_action(x[:, :, 1]),  # (B, T, A)
                "rtg_pred": self.predict_return(x[:, :, 2]).squeeze(-1),  # (B, T)
                "state_pred": self.predict_state(x[:, :, 2])}  # (B, T, S)


def hf_state_dict_to_interleaved(hf_state: Mapping[str, Tensor], n_layers: int) -> dict[str, Tensor]:
    """Map a ``transformers.DecisionTransformerModel`` state dict onto :class:`InterleavedDecisionTransformer`.

    Parameters
    ----------
    hf_state : mapping str -> Tensor
        ``DecisionTransformerModel.state_dict()``.
    n_layers : int
        Number of GPT-2 blocks (HF ``n_layer``).

    Returns
    -------
    dict str -> Tensor
        A state dict for ``InterleavedDecisionTransformer`` (load it with ``strict=True``).

    Notes
    -----
    GPT-2's ``Conv1D`` stores weights as (in, out), ``nn.Linear`` as (out, in): they are transposed.
    HF's ``embed_action`` (``Linear(A, C)``) becomes an embedding table ``W.T + b`` of shape (A, C).
    ``encoder.wpe.weight[0]`` becomes ``token_bias``; ``encoder.wte`` and the other position rows are
    unused by HF's forward and dropped. Any other key raises ``KeyError``.
    """
    hf = {k: v.detach().clone() for k, v in hf_state.items()}
    out: dict[str, Tensor] = {}

    def take(key: str) -> Tensor:
        return hf.pop(key)

    for name in ("embed_timestep.weight", "embed_return.weight", "embed_return.bias", "embed_state.weight",
                 "embed_state.bias", "embed_ln.weight", "embed_ln.bias", "predict_state.weight",
                 "predict_state.bias", "predict_return.weight", "predict_return.bias"):
        out[name] = take(name)
    w, b = take("embed_action.weight"), take("embed_action.bias")  # (C, A), (C,)
    out["embed_action.weight"] = w.T + b  # (A, C): row a = Linear(onehot(a))
    out["predict_action.weight"] = take("predict_action.0.weight")
    out["predict_action.bias"] = take("predict_action.0.bias")
    out["token_bias"] = take("encoder.wpe.weight")[0]  # HF passes position_ids = 0 to every token
    hf.pop("encoder.wte.weight", None)  # used only with token_type_ids, which HF's DT never passes
    for i in range(n_layers):
        p, q = f"encoder.h.{i}.", f"blocks.{i}."
        for ln in ("ln_1", "ln_2"):
            out[q + ln + ".weight"], out[q + ln + ".bias"] = take(p + ln + ".weight"), take(p + ln + ".bias")
        for conv in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            out[q + conv + ".weight"] = take(p + conv + ".weight").T.contiguous()  # Conv1D (in, out) -> (out, in)
            out[q + conv + ".bias"] = take(p + conv + ".bias")
        for buffer in ("attn.bias", "attn.masked_bias"):  # causal-mask buffers of older transformers versions
            hf.pop(p + buffer, None)
    out["ln_f.weight"], out["ln_f.bias"] = take("encoder.ln_f.weight"), take("encoder.ln_f.bias")
    if hf:
        raise KeyError(f"unmapped Hugging Face keys: {sorted(hf)}")
    return out


def interleaved_from_hf(hf_model: nn.Module, max_len: int | None = None) -> InterleavedDecisionTransformer:
    """Build an :class:`InterleavedDecisionTransformer` with the weights of an HF ``DecisionTransformerModel``.

    Parameters
    ----------
    hf_model : transformers.DecisionTransformerModel
        Built from a ``DecisionTransformerConfig`` with ``action_tanh=False`` (the outputs are logits).
    max_len : int, optional
        Window length of the result (default: HF's ``max_ep_len``, the longest window HF's timestep
        table allows).

    Returns
    -------
    InterleavedDecisionTransformer
        In the same train/eval mode as ``hf_model``; its outputs equal HF's on one-hot actions.
    """
    c = hf_model.config
    if c.action_tanh:
        raise ValueError("action_tanh=True squashes HF's action outputs; the interleaved model outputs logits")
    if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx or c.add_cross_attention:
        raise NotImplementedError("only GPT-2's default attention scaling, without cross-attention, is mirrored")
    inner = c.n_inner if c.n_inner is not None else 4 * c.hidden_size
    if inner % c.hidden_size:
        raise NotImplementedError(f"n_inner={inner} is not a multiple of hidden_size={c.hidden_size}")
    model = InterleavedDecisionTransformer(
        state_dim=c.state_dim, action_dim=c.act_dim, d_model=c.hidden_size, n_layers=c.n_layer, n_heads=c.n_head,
        dropout=float(c.resid_pdrop), max_len=max_len or c.max_ep_len, max_ep_len=c.max_ep_len,
        mlp_ratio=inner // c.hidden_size, activation=c.activation_function, layer_norm_eps=c.layer_norm_epsilon)
    model.load_state_dict(hf_state_dict_to_interleaved(hf_model.state_dict(), c.n_layer), strict=True)
    return model.train(hf_model.training)


_MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "TraderDecisionTransformer": TraderDecisionTransformer,
    "InterleavedDecisionTransformer": InterleavedDecisionTransformer,
}


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


class SequenceDataset(Dataset):
    """Windows of (state, action, return-to-go) for the trainer; items are dicts of tensors.

    Parameters
    ----------
    states : array (N, T, S)
        State features (already normalised).
    actions : array (N, T) int
        True action class ids ``a_t`` (any value on padded steps).
    rtg : array (N, T)
        Returns-to-go ``RTG_t``.
    mask : array (N, T) bool
        Valid steps.
    rewards : array (N, T), optional
        Rewards ``r_t``; when given, the RTG head's target is exactly ``rtg - rewards`` (see
        :func:`next_rtg_target`), which is right also for windows cut before an episode's end.
    timesteps : array (N, T) int, optional
        Positions passed to the model (default: ``0 .. T-1`` in each window).
    """

    def __init__(self, states: Any, actions: Any, rtg: Any, mask: Any, rewards: Any | None = None,
                 timesteps: Any | None = None) -> None:
        self.states = torch.as_tensor(np.asarray(states), dtype=torch.float32)
        if self.states.dim() != 3:
            raise ValueError(f"states must be (N, T, S), got {tuple(self.states.shape)}")
        N, T = self.states.shape[:2]
        self.actions = torch.as_tensor(np.asarray(actions), dtype=torch.long)
        self.rtg = torch.as_tensor(np.asarray(rtg), dtype=torch.float32)
        self.mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        self.rewards = None if rewards is None else torch.as_tensor(np.asarray(rewards), dtype=torch.float32)
        self.timesteps = None if timesteps is None else torch.as_tensor(np.asarray(timesteps), dtype=torch.long)
        for name in ("actions", "rtg", "mask", "rewards", "timesteps"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (N, T):
                raise ValueError(f"{name} must be (N, T) = {(N, T)}, got {tuple(value.shape)}")

    def __len__(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = {"states": self.states[i], "actions": self.actions[i], "rtg": self.rtg[i], "mask": self.mask[i]}
        if self.rewards is not None:
            item["rewards"] = self.rewards[i]
        if self.timesteps is not None:
            item["timesteps"] = self.timesteps[i]
        return item


def make_loader(dataset: Dataset, batch_size: int = 32, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` whose shuffling is seeded by its own ``torch.Generator``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, generator=generator)


def next_rtg_target(rtg: Tensor, mask: Tensor | None = None, rewards: Tensor | None = None) -> Tensor:
    """Target of the RTG head: the next return-to-go ``RTG_{t+1} = RTG_t - r_t``.

    Parameters
    ----------
    rtg : Tensor (B, T)
    mask : Tensor (B, T) bool, optional
        Valid steps (default: all).
    rewards : Tensor (B, T), optional
        ``r_t``. When given the target is ``rtg - rewards`` exactly.

    Returns
    -------
    Tensor (B, T)
        Without rewards: ``rtg[t + 1]`` where step t+1 is valid, else 0, i.e. the last valid step of
        a window is taken as the episode's end. Values on invalid steps are meaningless.
    """
    if rewards is not None:
        return rtg - rewards
    nxt = torch.cat([rtg[:, 1:], torch.zeros_like(rtg[:, :1])], dim=1)  # (B, T)
    if mask is None:
        return nxt
    nxt_valid = torch.cat([mask[:, 1:].bool(), torch.zeros_like(mask[:, :1], dtype=torch.bool)], dim=1)
    return torch.where(nxt_valid, nxt, torch.zeros_like(nxt))


def rtg_from_rewards(target_rtg: Any, rewards: Any | None, T: int) -> np.ndarray:
    """Returns-to-go for a window: ``RTG_0 = target``, ``RTG_{t+1} = RTG_t - r_t``, or held at target.

    Parameters
    ----------
    target_rtg : float or array (B,)
    rewards : array (T,) or (B, T), optional
        Realised rewards; ``None`` holds the RTG at the target for every step.
    T : int
        Window length.

    Returns
    -------
    ndarray (B, T) float32
    """
    target = np.atleast_1d(np.asarray(target_rtg, dtype=np.float64))  # (B,) or (1,)
    if rewards is None:
        return np.repeat(target[:, None], T, axis=1).astype(np.float32)
    r = np.atleast_2d(np.asarray(rewards, dtype=np.float64))  # (B, T)
    if r.shape[1] != T:
        raise ValueError(f"rewards must have {T} steps, got {r.shape[1]}")
    spent = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r, axis=1)[:, :-1]], axis=1)  # (B, T)
    return (target[:, None] - spent).astype(np.float32)


def balanced_class_weights(actions: Any, mask: Any | None = None, n_classes: int = len(ACTIONS)) -> np.ndarray:
    """Inverse-frequency class weights ``n / (n_classes * count_k)`` over valid steps (sklearn's "balanced").

    Classes absent from the data get weight 0, so they add no loss (in validation either).
    """
    a = np.asarray(actions)
    a = a[np.asarray(mask, dtype=bool)] if mask is not None else a.ravel()
    counts = np.bincount(a.astype(np.int64), minlength=n_classes)[:n_classes].astype(np.float64)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, counts.sum() / (n_classes * counts), 0.0)
    return w.astype(np.float32)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """Convert to types ``torch.load(weights_only=True)`` accepts: tensors, dict, list, str, numbers, None."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (pd.Series, pd.Index)):
        return _plain(obj.to_dict() if isinstance(obj, pd.Series) else obj.tolist())
    if isinstance(obj, pd.DataFrame):
        return {str(c): _plain(obj[c]) for c in obj.columns}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    raise TypeError(f"cannot store {type(obj).__name__} in a weights_only checkpoint")


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP / DataParallel
        model = model.module
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, normalization: Mapping[str, Any] | None = None,
                    epoch: int | None = None, metrics: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : path-like
        Destination, e.g. ``config.paths().models / "trader_twin" / "best_model.pt"``.
    model : TraderDecisionTransformer or InterleavedDecisionTransformer
        Possibly wrapped (DDP, ``torch.compile``); the bare module is saved.
    normalization : mapping, optional
        Anything the caller needs to reproduce the inputs, e.g. feature means/stds fitted on the
        training period and the RTG scale. NumPy and pandas values are converted to lists/dicts.
    epoch, metrics, extra : optional
        Stored as given (converted to plain types).

    Returns
    -------
    Path
        The written file. Keys: ``format_version``, ``model_class``, ``config`` (the model's kwargs),
        ``model_state_dict``, ``normalization``, ``epoch``, ``metrics``, ``extra``, ``torch_version``,
        ``created_utc``. Every value is a tensor or plain Python type, so ``torch.load(path)`` works
        with the default ``weights_only=True``.
    """
    bare = _unwrap(model)
    name = type(bare).__name__
    if name not in _MODEL_CLASSES:
        raise TypeError(f"cannot checkpoint a {name}")
    ckpt = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_class": name,
        "config": asdict(bare.config),
        "model_state_dict": {k: v.detach().cpu().clone() for k, v in bare.state_dict().items()},
        "normalization": _plain(dict(normalization or {})),
        "epoch": epoch,
        "metrics": _plain(dict(metrics or {})),
        "extra": _plain(dict(extra or {})),
        "torch_version": str(torch.__version__),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = atomic.write_file(path, lambda p: torch.save(ckpt, p), fsync=True)
    return path


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device | None = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (``weights_only=True``), in eval mode on ``device``.

    Returns
    -------
    (model, checkpoint)
        The model and the full checkpoint dict (``normalization``, ``metrics``, ...).
    """
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    version = ckpt.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"checkpoint format {version!r}; this code reads {CHECKPOINT_FORMAT_VERSION}")
    cls = _MODEL_CLASSES[ckpt["model_class"]]
    known = {f.name for f in fields(TraderDTConfig if cls is TraderDecisionTransformer else InterleavedDTConfig)}
    model = cls(**{k: v for k, v in ckpt["config"].items() if k in known})
    model.load_state_dict(ckpt["model_state_dict"], strict=True)
    return model.to(_resolve_device(device)).eval(), ckpt


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


class TraderTrainer:
    """Trains a Decision Transformer by imitation: ``action_loss_weight * CE(a_t) + rtg_loss_weight * MSE(RTG_{t+1})``.

    Both terms are means over valid steps (``mask``); the cross-entropy is class-weighted when
    ``class_weights`` is given (PyTorch's weighted mean). AdamW (weight decay on matrices only, as
    nanoGPT), linear warm-up then cosine decay per optimiser step, gradient-norm clipping, early stopping
    on the validation loss. Runs through ``accelerate.Accelerator``, so ``accelerate launch`` spreads it
    over several GPUs (data parallel) with no code change.

    Parameters
    ----------
    model : TraderDecisionTransformer or InterleavedDecisionTransformer
        Seed its initialisation yourself (``torch.manual_seed`` before building it).
    device : str or torch.device, optional
        ``None``: CUDA when available, else CPU (or what ``accelerate launch`` configures). ``"cpu"``
        forces the CPU.
    learning_rate : float
        Peak learning rate.
    weight_decay : float
        AdamW weight decay, on weight matrices and embeddings only.
    warmup_steps : int
        Optimiser steps of linear warm-up.
    grad_clip : float or None
        Maximum global gradient norm (``None`` or 0: no clipping).
    action_loss_weight, rtg_loss_weight : float
        Weights of the action cross-entropy and the RTG mean squared error.
    class_weights : sequence of float (A,), optional
        Cross-entropy class weights, e.g. :func:`balanced_class_weights` for imbalanced actions.
    seed : int
        Seeds Python, NumPy and torch (dropout); seed loaders with :func:`make_loader`.
    min_lr_ratio : float
        Final learning rate as a fraction of the peak.
    betas : (float, float)
        AdamW betas.
    mixed_precision : {"no", "fp16", "bf16"}
        Passed to ``Accelerator``.
    verbose : bool
        Print one line per epoch.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, learning_rate: float = 1e-4,
                 weight_decay: float = 0.01, warmup_steps: int = 100, grad_clip: float | None = 1.0,
                 action_loss_weight: float = 1.0, rtg_loss_weight: float = 0.1,
                 class_weights: Iterable[float] | None = None, seed: int = 0, min_lr_ratio: float = 0.1,
                 betas: tuple[float, float] = (0.9, 0.95), mixed_precision: str = "no", verbose: bool = False) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        set_seed(seed)
        self.seed = seed
        cpu = device is not None and torch.device(device).type == "cpu"
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=mixed_precision)
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.action_loss_weight = action_loss_weight
        self.rtg_loss_weight = rtg_loss_weight
        self.min_lr_ratio = min_lr_ratio
        self.verbose = verbose
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        self._optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                             {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate, betas=betas)
        self.model, self.optimizer = self.accelerator.prepare(model, self._optimizer)
        self.device = self.accelerator.device
        self.class_weights = (None if class_weights is None else
                              torch.as_tensor(list(class_weights), dtype=torch.float32, device=self.device))
        self.history: pd.DataFrame = pd.DataFrame()
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, Any] | None = None
        self.checkpoint_path: Path | None = None
        self.stopped_early = False

    # -- one batch ----------------------------------------------------------------------------------

    def _forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        kwargs = {"timesteps": batch["timesteps"]} if "timesteps" in batch else {}
        return self.model(batch["states"], batch["rtg"], batch["actions"], batch["mask"], **kwargs)

    def _losses(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(total, action CE, RTG MSE) over the valid steps of one batch."""
        valid = batch["mask"].bool()  # (B, T)
        logits = out["action_logits"][valid].float()  # (n, A)
        target = batch["actions"][valid].long()  # (n,)
        ce_sum = F.cross_entropy(logits, target, weight=self.class_weights, reduction="sum")
        if self.class_weights is not None:  # PyTorch's weighted mean, safe on a batch without valid steps
            ce = ce_sum / self.class_weights[target].sum().clamp_min(1e-12)
        else:
            ce = ce_sum / max(target.numel(), 1)
        rtg_target = next_rtg_target(batch["rtg"], valid, batch.get("rewards"))  # (B, T)
        err = (out["rtg_pred"].float() - rtg_target.float())[valid]  # (n,)
        mse = (err ** 2).sum() / max(err.numel(), 1)
        return self.action_loss_weight * ce + self.rtg_loss_weight * mse, ce, mse

    # -- evaluation ---------------------------------------------------------------------------------

    def validate(self, loader: DataLoader) -> dict[str, Any]:
        """Metrics of the current model on a loader, over its valid steps (all processes together).

        Returns
        -------
        dict
            ``loss`` (the training objective), ``action_ce``, ``rtg_mse``, ``accuracy``, ``macro_f1``
            (over the classes present in targets or predictions), ``confusion_matrix`` (A, A) int
            ndarray (rows: true class, columns: predicted, in ``ACTIONS`` order) and ``n_steps``.
        """
        return self._evaluate(self.accelerator.prepare_data_loader(loader))

    @torch.no_grad()
    def _evaluate(self, loader: Any) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix, f1_score

        model = self.model
        was_training = model.training
        model.eval()
        parts: dict[str, list[Tensor]] = {"logits": [], "actions": [], "mask": [], "rtg_pred": [], "rtg_target": []}
        for batch in loader:
            out = self._forward(batch)
            rtg_target = next_rtg_target(batch["rtg"], batch["mask"], batch.get("rewards"))
            gathered = self.accelerator.gather_for_metrics(
                (out["action_logits"].float(), batch["actions"].long(), batch["mask"].bool(),
                 out["rtg_pred"].float(), rtg_target.float()))
            for key, value in zip(parts, gathered):
                parts[key].append(value.cpu())
        model.train(was_training)
        logits, actions, mask, rtg_pred, rtg_target = (torch.cat(parts[k]) for k in parts)
        n_classes = logits.shape[-1]
        logits, target = logits[mask], actions[mask]  # (n, A), (n,)
        weights = self.class_weights.cpu() if self.class_weights is not None else None
        if target.numel():
            ce = F.cross_entropy(logits, target, weight=weights).item()
            mse = F.mse_loss(rtg_pred[mask], rtg_target[mask]).item()
        else:
            ce = mse = float("nan")
        pred = logits.argmax(-1).numpy()
        y = target.numpy()
        return {
            "loss": self.action_loss_weight * ce + self.rtg_loss_weight * mse,
            "action_ce": ce,
            "rtg_mse": mse,
            "accuracy": float((pred == y).mean()) if y.size else float("nan"),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)) if y.size else float("nan"),
            "confusion_matrix": confusion_matrix(y, pred, labels=list(range(n_classes))),
            "n_steps": int(y.size),
        }

    # -- the loop -----------------------------------------------------------------------------------

    def fit(self, train_loader: DataLoader, val_loader: DataLoader, epochs: int = 20, patience: int = 5,
            checkpoint_dir: str | os.PathLike[str] | None = None, normalization: Mapping[str, Any] | None = None,
            min_delta: float = 0.0, restore_best: bool = True) -> pd.DataFrame:
        """Train with early stopping on the validation loss.

        Parameters
        ----------
        train_loader, val_loader : DataLoader
            Dict batches with ``states`` (B, T, S), ``actions`` (B, T), ``rtg`` (B, T), ``mask`` (B, T)
            and optionally ``rewards``, ``timesteps`` (B, T) (see :class:`SequenceDataset`).
        epochs : int
            Maximum number of epochs.
        patience : int
            Stop after this many consecutive epochs without a validation loss below ``best - min_delta``.
        checkpoint_dir : path-like, optional
            Where ``best_model.pt`` is (re)written at each improvement, e.g. ``config.paths().models /
            "trader_twin"``.
        normalization : mapping, optional
            Stored in the checkpoint (feature means/stds fitted on the training period, RTG scale...).
        min_delta : float
            Smallest decrease of the validation loss that counts as an improvement.
        restore_best : bool
            Load the best epoch's weights into the model at the end.

        Returns
        -------
        pandas.DataFrame
            One row per epoch: ``epoch, train_loss`` (mean of the batch losses, dropout on),
            ``val_loss, val_action_ce, val_accuracy, val_macro_f1, val_rtg_mse, lr`` (at the epoch's
            end), ``seconds``. Also kept as ``self.history``; ``self.best_epoch``,
            ``self.best_metrics``, ``self.checkpoint_path``, ``self.stopped_early`` are set.
        """
        acc = self.accelerator
        total_steps = max(1, epochs * len(train_loader))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            self._optimizer, lambda step: warmup_cosine(step, self.warmup_steps, total_steps, self.min_lr_ratio))
        scheduler = acc.prepare_scheduler(schedule)
        train_dl = acc.prepare_data_loader(train_loader)
        val_dl = acc.prepare_data_loader(val_loader)
        path = Path(checkpoint_dir) / BEST_CHECKPOINT if checkpoint_dir is not None else None
        best, bad, best_state = math.inf, 0, None
        rows: list[dict[str, Any]] = []
        self.stopped_early = False
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            self.model.train()
            losses = []
            for batch in train_dl:
                out = self._forward(batch)
                loss, _, _ = self._losses(out, batch)
                acc.backward(loss)
                if self.grad_clip:
                    acc.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.optimizer.step()
                scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            train_loss = acc.gather(torch.stack(losses)).float().mean().item() if losses else float("nan")
            val = self._evaluate(val_dl)
            rows.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
                         "val_action_ce": val["action_ce"], "val_accuracy": val["accuracy"],
                         "val_macro_f1": val["macro_f1"], "val_rtg_mse": val["rtg_mse"],
                         "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0})
            if self.verbose:
                r = rows[-1]
                acc.print(f"epoch {epoch:3d}  train {r['train_loss']:.4f}  val {r['val_loss']:.4f}  "
                          f"acc {r['val_accuracy']:.3f}  F1 {r['val_macro_f1']:.3f}  rtg mse {r['val_rtg_mse']:.4f}  "
                          f"lr {r['lr']:.2e}  {r['seconds']:.1f}s")
            if val["loss"] < best - min_delta:
                best, bad = val["loss"], 0
                self.best_epoch, self.best_metrics = epoch, val
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in acc.unwrap_model(self.model)
                                            .state_dict().items()})
                if path is not None:
                    if acc.is_main_process:
                        save_checkpoint(path, acc.unwrap_model(self.model), normalization, epoch=epoch,
                                        metrics=val, extra={"history": pd.DataFrame(rows).to_dict("list")})
                    acc.wait_for_everyone()
                    self.checkpoint_path = path
            else:
                bad += 1
                if bad >= patience:
                    self.stopped_early = True
                    break
        if restore_best and best_state is not None:
            acc.unwrap_model(self.model).load_state_dict(best_state)
        self.history = pd.DataFrame(rows)
        return self.history


# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------


class TraderInference:
    """Predictions of a trained twin, steered by a target return.

    Parameters
    ----------
    model : TraderDecisionTransformer or InterleavedDecisionTransformer
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    normalization : mapping, optional
        The checkpoint's ``normalization`` dict, kept for the caller (inputs are used as given: pass
        states normalised the way the training data was).
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None,
                 normalization: Mapping[str, Any] | None = None) -> None:
        self.device = _resolve_device(device)
        self.model = _unwrap(model).to(self.device).eval()
        self.normalization: dict[str, Any] = dict(normalization or {})
        self.checkpoint: dict[str, Any] = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str | torch.device | None = None
                        ) -> "TraderInference":
        """Reload a :func:`save_checkpoint` file; ``self.checkpoint`` keeps its metadata (without weights)."""
        model, ckpt = load_checkpoint(path, device=_resolve_device(device))
        inf = cls(model, device=device, normalization=ckpt.get("normalization"))
        inf.checkpoint = {k: v for k, v in ckpt.items() if k != "model_state_dict"}
        return inf

    @property
    def max_len(self) -> int:
        """Context window of the model (steps)."""
        return self.model.max_len

    @torch.no_grad()
    def _run(self, states: np.ndarray, rtg: np.ndarray, actions: np.ndarray) -> dict[str, Tensor]:
        dev = self.device
        return self.model(torch.as_tensor(states, dtype=torch.float32, device=dev),
                          torch.as_tensor(rtg, dtype=torch.float32, device=dev),
                          torch.as_tensor(actions, dtype=torch.long, device=dev))

    def predict_with_target_rtg(self, states: Any, target_rtg: Any, actions: Any | None = None,
                                rewards: Any | None = None) -> dict[str, np.ndarray]:
        """Action and RTG predictions for a window, conditioned on a target return.

        Parameters
        ----------
        states : array (T, S) or (B, T, S)
            Normalised states of one window (``T <= max_len``; use :meth:`rollout` for longer ones).
        target_rtg : float or array (B,)
            ``RTG_0``, the return asked for.
        actions : array (T,) or (B, T) int, optional
            The actions actually taken (the model sees ``a_{<t}`` at step t). ``None``: the model's own
            argmax actions, fed back step by step (T + 1 forward passes).
        rewards : array (T,) or (B, T), optional
            Realised rewards: ``RTG_{t+1} = RTG_t - r_t``. ``None`` holds the RTG at the target for
            every step (asking for the same remaining return at each step).

        Returns
        -------
        dict of ndarray (leading B dropped for 2-D ``states``)
            ``action_logits`` (B, T, A), ``action_probs`` (B, T, A), ``predicted_actions`` (B, T)
            (argmax), ``actions`` (B, T) (the actions fed in), ``rtg`` (B, T) (the RTG fed in),
            ``rtg_pred`` (B, T) (predicted ``RTG_{t+1}``).
        """
        s = np.asarray(states, dtype=np.float32)
        single = s.ndim == 2
        s = s[None] if single else s  # (B, T, S)
        B, T, _ = s.shape
        if T > self.max_len:
            raise ValueError(f"{T} steps exceed the context of {self.max_len}; use rollout()")
        rtg = rtg_from_rewards(target_rtg, rewards, T)  # (B | 1, T)
        rtg = np.broadcast_to(rtg, (B, T)).copy()
        if actions is not None:
            a = np.broadcast_to(np.atleast_2d(np.asarray(actions, dtype=np.int64)), (B, T)).copy()
        else:  # greedy feedback: the logits at step t depend on a_{<t} only
            a = np.zeros((B, T), dtype=np.int64)
            for t in range(T):
                a[:, t] = self._run(s, rtg, a)["action_logits"][:, t].argmax(-1).cpu().numpy()
        out = self._run(s, rtg, a)
        logits = out["action_logits"].float()
        result = {"action_logits": logits.cpu().numpy(), "action_probs": logits.softmax(-1).cpu().numpy(),
                  "predicted_actions": logits.argmax(-1).cpu().numpy(), "actions": a, "rtg": rtg,
                  "rtg_pred": out["rtg_pred"].float().cpu().numpy()}
        return {k: v[0] for k, v in result.items()} if single else result

    def rollout(self, states: Any, target_rtg: float, reward_fn: Callable[[int, int], float] | None = None,
                greedy: bool = True, seed: int = 0, temperature: float = 1.0) -> dict[str, np.ndarray]:
        """Act step by step on a sequence of states, feeding back the model's own actions.

        At step t the model sees the last ``max_len`` steps (states, RTGs, its own past actions; the
        first step of a slid window gets ``START`` as previous action, as in training) and picks
        ``a_t`` (argmax, or a sample at ``temperature``). With ``reward_fn`` the realised reward
        ``r_t = reward_fn(t, a_t)`` updates ``RTG_{t+1} = RTG_t - r_t``; without it the RTG stays at
        the target.

        Parameters
        ----------
        states : array (N, S)
            Normalised states, observed one at a time (N may exceed ``max_len``).
        target_rtg : float
            ``RTG_0``.
        reward_fn : callable (t, action) -> float, optional
        greedy : bool
            Argmax actions; else sample from the softmax.
        seed : int
            Seed of the sampling generator.
        temperature : float
            Softmax temperature when sampling.

        Returns
        -------
        dict of ndarray
            ``actions`` (N,), ``action_logits`` (N, A), ``action_probs`` (N, A), ``rtg`` (N,) (fed in),
            ``rtg_pred`` (N,) (predicted ``RTG_{t+1}``, read once ``a_t`` is in the context),
            ``rewards`` (N,) (NaN without ``reward_fn``).
        """
        s = np.asarray(states, dtype=np.float32)
        if s.ndim != 2:
            raise ValueError(f"states must be (N, S), got {s.shape}")
        N, L = s.shape[0], self.max_len
        rng = torch.Generator().manual_seed(seed)
        actions = np.zeros(N, dtype=np.int64)
        rtg = np.zeros(N, dtype=np.float32)
        rewards = np.full(N, np.nan)
        logits_all = np.zeros((N, self.model.config.action_dim), dtype=np.float32)
        rtg_pred = np.zeros(N, dtype=np.float32)
        R = float(target_rtg)
        for t in range(N):
            rtg[t] = R
            lo = max(0, t + 1 - L)
            out = self._run(s[None, lo:t + 1], rtg[None, lo:t + 1], actions[None, lo:t + 1])  # a_t: placeholder
            logits = out["action_logits"][0, -1].float().cpu()  # (A,)
            if t > lo:  # RTG_{t} prediction of step t - 1, now that a_{t-1} is in the context
                rtg_pred[t - 1] = out["rtg_pred"][0, -2].item()
            if greedy:
                a = int(logits.argmax())
            else:
                a = int(torch.multinomial((logits / temperature).softmax(-1), 1, generator=rng))
            actions[t], logits_all[t] = a, logits.numpy()
            if reward_fn is not None:
                rewards[t] = float(reward_fn(t, a))
                R -= rewards[t]
        if N:  # the last step's RTG prediction, with a_{N-1} in the context
            lo = max(0, N - L)
            rtg_pred[N - 1] = self._run(s[None, lo:], rtg[None, lo:], actions[None, lo:])["rtg_pred"][0, -1].item()
        probs = torch.from_numpy(logits_all).softmax(-1).numpy()
        return {"actions": actions, "action_logits": logits_all, "action_probs": probs, "rtg": rtg,
                "rtg_pred": rtg_pred, "rewards": rewards}
