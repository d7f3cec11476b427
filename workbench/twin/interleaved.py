"""The original paper's Decision Transformer layout (three tokens per step, R_t, s_t, a_t) and the weight
mapping from Hugging Face's ``DecisionTransformerModel`` (Chen et al., 2021; tested to reproduce HF).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from workbench.twin.model import (Block, InterleavedDTConfig, TraderDecisionTransformer, _check_inputs, _init_weights,
                                  _make_config, causal_attention_mask)

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
