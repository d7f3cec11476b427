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
    the five classes of :data:`workbench.data.simulate.ACTIONS` and an RTG head predicts the **next**
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

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.data.simulate import ACTIONS

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
    rtg_dropout: float = 0.0  # training only: share of windows whose RTG input is replaced by a learned "no target"
    use_rtg: bool = True  # False: never read the RTG (an imitation-only transformer; the "no target" vector always)


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
        if cfg.rtg_dropout > 0 or not cfg.use_rtg:  # only then: older checkpoints keep their exact state_dict keys
            self.rtg_null = nn.Parameter(torch.zeros(cfg.d_rtg))
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
        if not cfg.use_rtg:
            r = self.rtg_null.expand_as(r)
        elif self.training and cfg.rtg_dropout > 0:  # whole windows without a target: imitation must not lean on it
            drop = torch.rand(B, 1, 1, device=r.device) < cfg.rtg_dropout  # (B, 1, 1)
            r = torch.where(drop, self.rtg_null.expand_as(r), r)
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
