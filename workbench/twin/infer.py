"""Inference with a trained twin: actions for a target return-to-go, and rollouts with a sliding context.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from workbench.twin.checkpoint import _resolve_device, _unwrap, load_checkpoint
from workbench.twin.train import rtg_from_rewards

# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------


class TwinPrediction(tuple):
    """``(action_logits, rtg_pred)`` torch tensors ``(B, T, A)`` and ``(B, T)`` -- what design document 003 unpacks --
    that also reads as :meth:`TraderInference.predict`'s dict of arrays (``pred["action_probs"]``...)."""

    fields: dict[str, np.ndarray]

    def __new__(cls, fields: dict[str, np.ndarray]) -> "TwinPrediction":
        self = super().__new__(cls, (torch.as_tensor(fields["action_logits"]), torch.as_tensor(fields["rtg_pred"])))
        self.fields = fields
        return self

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        return self.fields[key] if isinstance(key, str) else super().__getitem__(key)

    def keys(self) -> Any:
        return self.fields.keys()


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

    @property
    def rtg_scale(self) -> float:
        """Model RTG units per unit of return: the checkpoint's ``rtg_scale``, else the design's x100."""
        return float(self.normalization.get("rtg_scale", 100.0))

    def predict_with_target_rtg(self, states: Any, target_rtg: Any, actions: Any | None = None,
                                rewards: Any | None = None) -> "TwinPrediction":
        """The design's call: ``predicted_actions, predicted_rtg = predict_with_target_rtg(states=, target_rtg=0.02)``.

        ``target_rtg`` (and ``rewards``) are returns (0.02 = 2 %); they are scaled to the model's RTG units
        inside (:attr:`rtg_scale`: the checkpoint's scale, x100 for a bare model, as in design document 003).
        Returns a :class:`TwinPrediction`: unpacks to ``(action_logits, rtg_pred)`` torch tensors of shapes
        ``(B, T, A)`` and ``(B, T)`` (``B = 1`` for 2-D states) and reads as :meth:`predict`'s dict.
        """
        s = np.asarray(states.detach().cpu() if isinstance(states, torch.Tensor) else states, dtype=np.float32)
        k = self.rtg_scale
        tg = np.asarray(target_rtg.detach().cpu() if isinstance(target_rtg, torch.Tensor) else target_rtg, float) * k
        rw = None if rewards is None else np.asarray(rewards, float) * k
        out = self.predict(s[None] if s.ndim == 2 else s, tg, actions=actions, rewards=rw)
        return TwinPrediction(out)

    def predict(self, states: Any, target_rtg: Any, actions: Any | None = None,
                rewards: Any | None = None) -> dict[str, np.ndarray]:
        """Action and RTG predictions for a window, conditioned on a target return in the model's RTG units
        (already multiplied by :attr:`rtg_scale`; :meth:`predict_with_target_rtg` takes plain returns).

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
