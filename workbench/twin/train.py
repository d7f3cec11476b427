"""Training the trader twin: window datasets and loaders, RTG targets, class weights, the warm-up cosine
schedule and :class:`TraderTrainer` (``accelerate``: CPU by default, CUDA when present, several GPUs under
``accelerate launch`` with no code change).
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from workbench import config
from workbench.data.simulate import ACTIONS
from workbench.twin.checkpoint import BEST_CHECKPOINT, save_checkpoint

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
    select_on : {"loss", "action_ce", "macro_f1"}
        What early stopping and the checkpoint choice follow on the validation period: the training objective,
        the unweighted action cross-entropy (imitation itself, whatever the RTG term does), or macro-F1.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, learning_rate: float = 1e-4,
                 weight_decay: float = 0.01, warmup_steps: int = 100, grad_clip: float | None = 1.0,
                 action_loss_weight: float = 1.0, rtg_loss_weight: float = 0.1,
                 class_weights: Iterable[float] | None = None, seed: int = 0, min_lr_ratio: float = 0.1,
                 betas: tuple[float, float] = (0.9, 0.95), mixed_precision: str = "no", verbose: bool = False,
                 select_on: str = "loss") -> None:
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
        if select_on not in ("loss", "action_ce", "macro_f1"):
            raise ValueError(f"select_on must be loss, action_ce or macro_f1, got {select_on!r}")
        self.select_on = select_on
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
            plain_ce = F.cross_entropy(logits, target).item()
            mse = F.mse_loss(rtg_pred[mask], rtg_target[mask]).item()
        else:
            ce = plain_ce = mse = float("nan")
        pred = logits.argmax(-1).numpy()
        y = target.numpy()
        return {
            "loss": self.action_loss_weight * ce + self.rtg_loss_weight * mse,
            "action_ce": ce,
            "action_ce_unweighted": plain_ce,
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
        """Train with early stopping on the validation criterion (``select_on``: the loss by default).

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
        for epoch in config.progress(range(1, epochs + 1), "twin epochs"):
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
            crit = {"loss": val["loss"], "action_ce": val["action_ce_unweighted"],
                    "macro_f1": -val["macro_f1"]}[self.select_on]  # lower is better
            if crit < best - min_delta:
                best, bad = crit, 0
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
