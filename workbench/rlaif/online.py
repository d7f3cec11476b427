"""Design document 001's advanced sketches made real: a reward model per objective (``train_reward_model``) and
an online trainer that takes one small step per arriving preference (``OnlineRewardModelTrainer.update``).

The document's ``OnlineRewardModelTrainer`` builds a one-pair ``DecisionDataset`` and calls an undefined
``train_step``; here the step is the trainer's own Bradley-Terry loss on the new pair (or batch), with Adam at a
small learning rate and gradient clipping, so a stream of preferences moves the scores without retraining.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from workbench.rlaif.reward import RewardModel, RewardModelTrainer, TextEncoder, bradley_terry_loss, create_reward_model
from workbench.rlaif.store import PreferencePair


def train_reward_model(preferences: Sequence[PreferencePair], val_preferences: Sequence[PreferencePair] | None = None,
                       *, epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-3,
                       text_encoder: TextEncoder | None = None, seed: int = 0) -> RewardModelTrainer:
    """A freshly initialised reward model trained on ``preferences`` (the document's ``train_reward_model``): the
    trainer, whose ``score(decisions)`` the multi-objective example combines (e.g. one model on return pairs,
    one on Sharpe pairs)."""
    model, enc = create_reward_model(seed=seed) if text_encoder is None else (
        RewardModel(text_dim=text_encoder.dim, seed=seed), text_encoder)
    trainer = RewardModelTrainer(model, enc, learning_rate=learning_rate, seed=seed)
    trainer.train(preferences, val_preferences, epochs=epochs, batch_size=batch_size)
    return trainer


class OnlineRewardModelTrainer:
    """One gradient step per new preference (or batch), on a model already trained (its standardiser stays).

    Parameters
    ----------
    model : the :class:`RewardModel` to update in place (or a :class:`RewardModelTrainer`'s).
    text_encoder : its encoder.
    learning_rate : Adam's step (the document's 1e-5; larger for a visible effect on a small stream).
    """

    def __init__(self, model: RewardModel | RewardModelTrainer, text_encoder: TextEncoder | None = None,
                 learning_rate: float = 1e-5) -> None:
        if isinstance(model, RewardModelTrainer):
            self.trainer = model
        else:
            if text_encoder is None:
                raise ValueError("a bare RewardModel needs its text_encoder")
            self.trainer = RewardModelTrainer(model, text_encoder, learning_rate=learning_rate)
        self.model = self.trainer.model
        self.text_encoder = self.trainer.encoder
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.steps = 0

    def update(self, new_preference: PreferencePair | Sequence[PreferencePair]) -> float:
        """One step on the Bradley-Terry loss of the new pair(s); returns that loss before the step."""
        pairs = [new_preference] if isinstance(new_preference, PreferencePair) else list(new_preference)
        if not pairs:
            raise ValueError("no preference to learn from")
        T = self.trainer._tensors(pairs)
        self.model.train()
        loss = bradley_terry_loss(self.model(T.num_c, T.txt_c), self.model(T.num_r, T.txt_r), T.w)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.model.eval()
        self.steps += 1
        return float(loss.detach())

    def margin(self, pair: PreferencePair) -> float:
        """``score(chosen) - score(rejected)`` now (positive: the pair is ranked right)."""
        s = self.trainer.score([pair.chosen, pair.rejected])
        return float(np.diff(s[::-1])[0])
