"""Baselines the twin must beat, on exactly its inputs: majority class, behaviour cloning by logistic
regression and by an MLP, and gradient boosting (LightGBM) on the state plus a flattened short history.

Every baseline exposes ``proba(data, part) -> (n, 5)`` so that it is scored, and acts in the replay, exactly
like the twin (:mod:`workbench.twin.evaluate`, :class:`ProbabilityPolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.data.simulate import ACTIONS

K = len(ACTIONS)


def history_features(states: np.ndarray, actions: np.ndarray, rows: np.ndarray, state_lags: int = 2,
                     action_lags: int = 3) -> np.ndarray:
    """``[s_t, s_{t-1}, ..., s_{t-state_lags}, onehot(a_{t-1}), ..., onehot(a_{t-action_lags})]`` for each step
    in ``rows``: the window a transformer sees, flattened to its last few steps. Earlier steps (and the past
    actions, known at decision time) come from the full step sequence; before the first step, zeros / HOLD."""
    rows = np.asarray(rows)
    parts = []
    for lag in range(state_lags + 1):
        r = rows - lag
        x = np.where((r >= 0)[:, None], states[np.maximum(r, 0)], 0.0)
        parts.append(x)
    for lag in range(1, action_lags + 1):
        r = rows - lag
        a = np.where(r >= 0, actions[np.maximum(r, 0)], ACTIONS.index("HOLD"))
        parts.append(np.eye(K)[a])
    return np.hstack(parts).astype(np.float32)


@dataclass
class Baseline:
    """A fitted classifier and how it reads a step: the state alone, or the state with its history."""

    name: str
    model: Any
    history: bool = False

    def inputs(self, states: np.ndarray, actions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return history_features(states, actions, rows) if self.history else states[rows]

    def proba(self, data: Any, part: str) -> np.ndarray:
        """``(n_part, 5)`` probabilities on a period of a :class:`~workbench.twin.study.TwinData`."""
        rows = data.rows(part)
        return self.predict_proba(self.inputs(data.states, data.actions, rows))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.zeros((len(x), K))
        p[:, self.model.classes_] = self.model.predict_proba(x)  # classes absent from training stay at 0
        return p


def fit_baselines(data: Any, seed: int = 0, gbm: bool = True) -> dict[str, Baseline]:
    """Majority class, BC logistic (balanced weights), BC MLP, and LightGBM on the state + history (early
    stopping on the validation period's log-loss), all fitted on the training period only."""
    import lightgbm as lgb
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    tr, va = data.rows("train"), data.rows("val")
    x, y = data.states[tr], data.actions[tr]
    out = {"majority class": Baseline("majority class", DummyClassifier(strategy="prior").fit(x, y)),
           "BC logistic": Baseline("BC logistic", LogisticRegression(max_iter=3000, class_weight="balanced").fit(x, y)),
           "BC MLP": Baseline("BC MLP", MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=300, early_stopping=True,
                                                      random_state=seed).fit(x, y))}
    if gbm:
        xh = history_features(data.states, data.actions, tr)
        xv = history_features(data.states, data.actions, va)
        m = lgb.LGBMClassifier(objective="multiclass", n_estimators=3000, learning_rate=0.03, num_leaves=31,
                               min_child_samples=40, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                               reg_lambda=1.0, random_state=seed, n_jobs=2, verbose=-1)
        m.fit(xh, y, eval_set=[(xv, data.actions[va])], eval_metric="multi_logloss",
              callbacks=[lgb.early_stopping(100, verbose=False)])
        out["gradient boosting"] = Baseline("gradient boosting", m, history=True)
    return out


class ProbabilityPolicy:
    """A baseline acting in :func:`workbench.twin.backtest.replay`: it samples its action from its probabilities
    (seeded), as the twin and the trader do, or (``sample=False``) takes the argmax of ``log p + adjustment``
    (``adjustment = -exponent * log prior`` is the decision rule of :mod:`workbench.twin.evaluate`; the same
    convention as :class:`~workbench.twin.study.TwinPolicy`'s ``logit_adjustment``).
    Its own past states and actions feed its history features, exactly as :func:`history_features` builds them."""

    def __init__(self, baseline: Baseline, seed: int = 0, sample: bool = True,
                 adjustment: np.ndarray | None = None) -> None:
        self.b, self.seed, self.sample = baseline, seed, sample
        self.adjustment = np.zeros(K) if adjustment is None else np.asarray(adjustment, dtype=np.float64)

    def reset(self, n_agents: int) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.past_states: list[np.ndarray] = []
        self.past_actions: list[np.ndarray] = []
        self.n = n_agents

    def proba(self, states: np.ndarray) -> np.ndarray:
        """The baseline's probabilities ``(n_agents, 5)`` for this step (the step's states are remembered)."""
        self.past_states = (self.past_states + [states])[-3:]
        if not self.b.history:
            return self.b.predict_proba(states)
        hold = np.eye(K)[np.full(self.n, 2)]
        s = self.past_states[::-1] + [np.zeros_like(states)] * (3 - len(self.past_states))  # s_t, s_{t-1}, s_{t-2}
        a = [np.eye(K)[x] for x in self.past_actions[::-1]] + [hold] * (3 - len(self.past_actions))
        return self.b.predict_proba(np.hstack([*s, *a]).astype(np.float32))

    def record(self, actions: np.ndarray) -> None:
        """Remember the actions taken at this step (the next steps' history)."""
        self.past_actions = (self.past_actions + [np.asarray(actions)])[-3:]

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        p = self.proba(states)
        if self.sample:
            act = (self.rng.random((len(p), 1)) > p.cumsum(axis=1)).sum(axis=1).clip(0, K - 1)
        else:
            act = (np.log(np.clip(p, 1e-12, 1.0)) + self.adjustment).argmax(axis=1)
        self.record(act)
        return act

    def observe(self, rewards: np.ndarray) -> None:
        pass


def stacked_gbm(data: Any, seed: int = 0, n_folds: int = 5, n_estimators: int | None = None) -> tuple[np.ndarray, Baseline]:
    """Gradient-boosting probabilities for every step, usable as an input of another model (stacking).

    On the training period they are **out of fold** (contiguous blocks; each block predicted by a model fitted
    on the others), so a model trained on them sees probabilities as noisy as those it will get later; on
    every other step they come from the model fitted on the whole training period (returned too, for the
    replay). ``n_estimators`` defaults to the early-stopped size of :func:`fit_baselines`' model.
    """
    import lightgbm as lgb

    tr, va = data.rows("train"), data.rows("val")
    x_all = history_features(data.states, data.actions, np.arange(len(data.actions)))
    y = data.actions

    def model(n: int) -> Any:
        return lgb.LGBMClassifier(objective="multiclass", n_estimators=n, learning_rate=0.03, num_leaves=31,
                                  min_child_samples=40, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                                  reg_lambda=1.0, random_state=seed, n_jobs=2, verbose=-1)

    if n_estimators is None:
        probe = model(3000).fit(x_all[tr], y[tr], eval_set=[(x_all[va], y[va])], eval_metric="multi_logloss",
                                callbacks=[lgb.early_stopping(100, verbose=False)])
        n_estimators = int(probe.best_iteration_ or 3000)
    full = Baseline("gradient boosting", model(n_estimators).fit(x_all[tr], y[tr]), history=True)
    probs = np.zeros((len(y), K))
    probs[:] = full.predict_proba(x_all)
    for block in np.array_split(tr, n_folds):
        rest = np.setdiff1d(tr, block)
        probs[block] = Baseline("fold", model(n_estimators).fit(x_all[rest], y[rest]), history=True).predict_proba(
            x_all[block])
    return probs, full
