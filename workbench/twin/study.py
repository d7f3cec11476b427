"""Notebook 04's study of the trader twin: data, baselines, honest evaluation, steering, replay.

Evaluation modes of the twin on held-out windows (teacher forcing the trader's past actions, which are
known at decision time):

* ``causal``: RTG_0 is a fixed target (the training median of window returns) and RTG_{t+1} = RTG_t
  - r_t uses only rewards already realised. This is what a deployed twin could do; it is the headline.
* ``hindsight``: the RTG fed is the window's true return-to-go. It includes the reward of the very step
  being predicted, i.e. information from the future; reported only as an upper bound of what RTG
  conditioning carries, never as the twin's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from workbench.data.simulate import ACTIONS
from workbench.twin import steps as S


@dataclass
class TwinData:
    """Everything the twin and the baselines are trained and scored on."""

    steps: pd.DataFrame
    split: S.Split
    thresholds: S.ActionThresholds
    normalizer: S.Normalizer
    states: np.ndarray  # (n, 17) normalised
    actions: np.ndarray  # (n,)
    rewards: np.ndarray  # (n,)
    windows: dict[str, dict[str, np.ndarray]]
    rtg_scale: float = 100.0
    features: tuple[str, ...] = S.STATE_FEATURES
    late_window_s: float = 180.0
    levels: S.ExitLevels = S.ExitLevels()
    rtg_mode: str = "to_go"

    @property
    def masks(self) -> dict[str, np.ndarray]:
        return self.split.masks()

    def rows(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.masks[part])


def prepare(steps: pd.DataFrame, *, train: float = 0.6, val: float = 0.2, gap: int = 128, window: int = 128,
            train_stride: int = 64, rtg_scale: float | str = 100.0, features: str | tuple[str, ...] = "seed",
            levels: S.ExitLevels | None = None, rtg_mode: str = "to_go") -> TwinData:
    """Chronological split; thresholds, the late window, the normalisation and (``rtg_scale="auto"``) the RTG
    scale fitted on the training part; windows per part.

    ``features`` names a set of :data:`workbench.twin.steps.FEATURE_SETS` (``"seed"``: the design's 17,
    ``"trader"``: what the trader acts on) or lists columns. ``rtg_scale="auto"`` scales returns-to-go so that
    the training windows' RTG_0 has unit standard deviation. ``rtg_mode``: see
    :func:`workbench.twin.steps.make_windows`.
    """
    cols = S.FEATURE_SETS[features] if isinstance(features, str) else tuple(features)
    split = S.chronological_split(len(steps), train, val, gap)
    m = split.masks()
    flow = steps["flow"].to_numpy()
    th = S.fit_action_thresholds(flow[m["train"]])
    actions = S.classify_flow(flow, th)
    late = S.fit_late_window(steps["seconds_left"].to_numpy()[m["train"]], np.abs(flow[m["train"]]) > th.hold)
    steps = steps.assign(late=(steps["seconds_left"].to_numpy() < late).astype(float))
    norm = S.Normalizer.fit(steps[m["train"]], cols)
    states = norm.transform(steps)
    rewards = steps["reward"].to_numpy()
    if rtg_scale == "auto":
        raw = S.make_windows(states, actions, rewards, np.flatnonzero(m["train"]), window, stride=train_stride,
                             rtg_scale=1.0)["rtg"][:, 0]
        rtg_scale = float(1.0 / max(np.std(raw), 1e-9))
    windows = {part: S.make_windows(states, actions, rewards, np.flatnonzero(m[part]), window,
                                    stride=train_stride if part == "train" else window, rtg_scale=float(rtg_scale),
                                    rtg_mode=rtg_mode)
               for part in ("train", "val", "test")}
    return TwinData(steps, split, th, norm, states, actions, rewards, windows, float(rtg_scale), cols, late,
                    levels or S.ExitLevels(), rtg_mode)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 over the five classes, and the confusion matrix (rows true, columns predicted)."""
    labels = list(range(len(ACTIONS)))
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "confusion": confusion_matrix(y_true, y_pred, labels=labels)}


def _prev_actions(actions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    prev = np.full(len(rows), 2)
    ok = rows > 0
    prev[ok] = actions[rows[ok] - 1]
    return np.eye(len(ACTIONS))[prev]


def fit_baselines(data: TwinData, seed: int = 0) -> dict[str, Any]:
    """Majority class, behaviour cloning by logistic regression and by a small MLP on the same states,
    and logistic regression with the previous action too (the twin also sees a_{t-1})."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    tr = data.rows("train")
    x, y = data.states[tr], data.actions[tr]
    models: dict[str, Any] = {
        "majority class": DummyClassifier(strategy="most_frequent").fit(x, y),
        "BC logistic": LogisticRegression(max_iter=2000, class_weight="balanced").fit(x, y),
        "BC MLP": MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=300, early_stopping=True, random_state=seed).fit(x, y),
        "BC logistic + previous action": LogisticRegression(max_iter=2000, class_weight="balanced").fit(
            np.hstack([x, _prev_actions(data.actions, tr)]), y),
    }
    return models


def baseline_predictions(models: dict[str, Any], data: TwinData, part: str) -> dict[str, np.ndarray]:
    rows = data.rows(part)
    x = data.states[rows]
    out = {}
    for name, m in models.items():
        xx = np.hstack([x, _prev_actions(data.actions, rows)]) if "previous action" in name else x
        out[name] = m.predict(xx)
    return out


def twin_probabilities(inference: Any, data: TwinData, part: str, mode: str = "causal",
                       target: float | None = None, adjustment: np.ndarray | None = None) -> np.ndarray:
    """The twin's action probabilities ``(n_part, 5)`` for every step of ``part`` (teacher-forced past
    actions). ``mode="causal"``: RTG from ``target`` minus rewards already realised; ``"hindsight"``: the
    true RTG. ``adjustment`` is added to the logits (see :func:`logit_adjustment`)."""
    w = data.windows[part]
    rows, probs = [], []
    for i in range(len(w["mask"])):
        k = int(w["mask"][i].sum())
        st, ac, rw = w["states"][i, :k], w["actions"][i, :k], w["rewards"][i, :k] * data.rtg_scale
        if mode == "causal":  # the target, less the rewards already realised (fixed for the window in "window" mode)
            out = inference.predict(st, target, actions=ac,
                                                    rewards=rw if data.rtg_mode == "to_go" else None)
        elif mode == "hindsight":
            out = inference.predict(st, float(w["rtg"][i, 0]), actions=ac,
                                                    rewards=rw if data.rtg_mode == "to_go" else None)
        else:
            raise ValueError(f"mode must be causal or hindsight, got {mode!r}")
        logits = out["action_logits"] + (adjustment if adjustment is not None else 0.0)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        rows.append(w["index"][i, :k])
        probs.append(e / e.sum(-1, keepdims=True))
    full = np.full((len(data.actions), len(ACTIONS)), np.nan)
    full[np.concatenate(rows)] = np.concatenate(probs)
    return full[data.rows(part)]


def twin_predictions(inference: Any, data: TwinData, part: str, mode: str = "causal",
                     target: float | None = None, adjustment: np.ndarray | None = None) -> np.ndarray:
    """The twin's most likely class for every step of ``part`` (see :func:`twin_probabilities`)."""
    return twin_probabilities(inference, data, part, mode, target, adjustment).argmax(axis=1)


def median_target(data: TwinData) -> float:
    """The training median of window returns (RTG_0), the twin's default target."""
    w = data.windows["train"]
    return float(np.median(w["rtg"][:, 0]))


def hidden_policy_comparison(data: TwinData, decisions: pd.DataFrame, part: str, predictions: dict[str, np.ndarray]
                             ) -> pd.DataFrame:
    """On simulated data: the hidden policy's most likely action as a predictor (the best achievable
    accuracy), and each model's agreement with it. Steps without a decision (the market's last minute,
    inactive markets) are HOLD with certainty."""
    rows = data.rows(part)
    idx = data.steps.index[rows]
    t = pd.to_datetime(decisions["t"], unit="ms", utc=True)
    probs = decisions[[f"p_{a}" for a in ACTIONS]].to_numpy()
    p = pd.DataFrame(probs, index=t).reindex(idx)
    hold = np.zeros(len(ACTIONS))
    hold[ACTIONS.index("HOLD")] = 1.0
    p = p.fillna(pd.Series(hold, index=p.columns))
    best = p.to_numpy().argmax(axis=1)
    y = data.actions[rows]
    out = {"hidden policy (argmax of true probabilities)": {**{k: v for k, v in scores(y, best).items() if k != "confusion"},
                                                           "agreement_with_hidden_argmax": 1.0}}
    for name, pred in predictions.items():
        s = scores(y, pred)
        out[name] = {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                     "agreement_with_hidden_argmax": float((pred == best).mean())}
    return pd.DataFrame(out).T


def rtg_sweep_distribution(inference: Any, data: TwinData, part: str, targets: list[float],
                           adjustment: np.ndarray | None = None) -> pd.DataFrame:
    """Mean predicted action distribution on ``part`` for each target RTG (causal mode)."""
    rows = []
    for tg in targets:
        p = twin_probabilities(inference, data, part, "causal", tg, adjustment)
        rows.append({"target_rtg": tg, **dict(zip(ACTIONS, p.mean(axis=0)))})
    return pd.DataFrame(rows).set_index("target_rtg")


class TwinPolicy:
    """The twin acting on its own in :func:`workbench.twin.backtest.replay`: one agent per target RTG.

    As in training, the replay is cut into windows of ``horizon`` steps: at each window's start the
    context is cleared and RTG reset to the agent's target; within a window RTG falls by each realised
    reward (x ``rtg_scale``). Actions are sampled (``sample=True``, seeded) from
    ``softmax(logits + logit_adjustment)``, or the argmax: the trader is a stochastic policy, and its own
    most likely action is HOLD at almost every step, so a greedy twin would never trade. Pass
    :func:`logit_adjustment` of the training class weights to act on the trader's class frequencies
    rather than on the re-weighted ones.
    """

    def __init__(self, model: Any, targets: list[float], rtg_scale: float = 100.0, device: str = "cpu",
                 horizon: int | None = None, logit_adjustment: np.ndarray | None = None, sample: bool = True,
                 seed: int = 0, rtg_mode: str = "to_go") -> None:
        import torch

        self.torch = torch
        self.model = model.to(device).eval()
        self.targets = np.asarray(targets, dtype=np.float32)
        self.scale = rtg_scale
        self.device = device
        self.max_len = int(getattr(model, "max_len", 128))
        self.horizon = int(horizon or self.max_len)
        self.adjust = None if logit_adjustment is None else torch.as_tensor(logit_adjustment, dtype=torch.float32)
        self.sample = sample
        self.seed = seed
        self.decreasing = rtg_mode == "to_go"  # "window": the target stays fixed for the whole window

    def reset(self, n_agents: int) -> None:
        if n_agents != len(self.targets):
            raise ValueError(f"{n_agents} agents but {len(self.targets)} targets")
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rtg = self.targets.copy()
        self.rtgs: list[np.ndarray] = []
        self.n = 0
        self.gen = self.torch.Generator().manual_seed(self.seed)

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        torch = self.torch
        if self.n and self.n % self.horizon == 0:  # a new window: fresh context, target RTG again
            self.states, self.actions, self.rtgs = [], [], []
            self.rtg = self.targets.copy()
        self.n += 1
        self.states.append(states.astype(np.float32))
        self.rtgs.append(self.rtg.copy())
        s = np.stack(self.states[-self.max_len:], axis=1)  # (B, T, S)
        r = np.stack(self.rtgs[-self.max_len:], axis=1)  # (B, T)
        prev = self.actions[-(self.max_len - 1):] if self.max_len > 1 else []
        a = np.stack(prev + [np.full(len(states), 2)], axis=1)  # (B, T): the last entry is a placeholder
        with torch.no_grad():
            out = self.model(torch.as_tensor(s, device=self.device), torch.as_tensor(r, device=self.device),
                             torch.as_tensor(a, dtype=torch.long, device=self.device))
        logits = out["action_logits"][:, -1].float().cpu()
        if self.adjust is not None:
            logits = logits + self.adjust
        if self.sample:
            act = torch.multinomial(logits.softmax(-1), 1, generator=self.gen).squeeze(-1).numpy()
        else:
            act = logits.argmax(-1).numpy()
        self.actions.append(act)
        return act

    def observe(self, rewards: np.ndarray) -> None:
        if self.decreasing:
            self.rtg = self.rtg - np.asarray(rewards, np.float32) * self.scale


STACK_PREFIX = "gbm_logp_"


def augment(data: TwinData, probs: np.ndarray) -> tuple[TwinData, dict[str, np.ndarray]]:
    """``data`` with the log-probabilities of another model (e.g. :func:`workbench.twin.baselines.stacked_gbm`)
    appended to every state, standardised on the training period, windows rebuilt. Returns the new data and the
    standardisation (``mean``, ``std`` per class) the replay needs to build the same inputs online."""
    lp = np.log(np.clip(probs, 1e-6, 1.0))
    tr = data.rows("train")
    stats = {"mean": lp[tr].mean(axis=0), "std": lp[tr].std(axis=0) + 1e-9}
    states = np.hstack([data.states, ((lp - stats["mean"]) / stats["std"]).astype(np.float32)])
    first = data.windows["train"]["index"]
    stride = int(first[1, 0] - first[0, 0]) if len(first) > 1 else data.windows["train"]["mask"].shape[1]
    window = data.windows["train"]["mask"].shape[1]
    windows = {part: S.make_windows(states, data.actions, data.rewards, data.rows(part), window,
                                    stride=stride if part == "train" else window, rtg_scale=data.rtg_scale,
                                    rtg_mode=data.rtg_mode) for part in ("train", "val", "test")}
    names = data.features + tuple(f"{STACK_PREFIX}{a}" for a in ACTIONS)
    out = TwinData(**{**data.__dict__, "states": states, "windows": windows, "features": names})
    return out, stats


class BoostedTwinPolicy:
    """A twin trained on states augmented by a boosted model's probabilities (:func:`augment`), acting in the
    replay: at each step the booster reads the agent's own state history and past actions, its standardised
    log-probabilities are appended, and the twin acts on the result."""

    def __init__(self, twin: "TwinPolicy", booster: Any, stats: dict[str, np.ndarray]) -> None:
        from workbench.twin.baselines import ProbabilityPolicy

        self.twin, self.stats = twin, stats
        self.reader = ProbabilityPolicy(booster, sample=False)  # keeps the history the booster reads

    def reset(self, n_agents: int) -> None:
        self.twin.reset(n_agents)
        self.reader.reset(n_agents)

    def act(self, step: int, states: np.ndarray) -> np.ndarray:
        probs = self.reader.proba(states)
        lp = (np.log(np.clip(probs, 1e-6, 1.0)) - self.stats["mean"]) / self.stats["std"]
        act = self.twin.act(step, np.hstack([states, lp]).astype(np.float32))
        self.reader.record(act)
        return act

    def observe(self, rewards: np.ndarray) -> None:
        self.twin.observe(rewards)


def hidden_score_r2(data: TwinData, decisions: pd.DataFrame) -> pd.Series:
    """How much of the hidden policy's inputs the twin's states can explain (simulated data only): R^2 of
    a linear fit of each hidden input on the 17 normalised states, over the active decisions."""
    from sklearn.linear_model import LinearRegression

    t = pd.to_datetime(decisions["t"], unit="ms", utc=True)
    dd = decisions.set_index(t)
    common = data.steps.index.intersection(dd.index)
    pos = data.steps.index.get_indexer(common)
    x = data.states[pos]
    dd = dd.loc[common]
    act = dd["active"].to_numpy(dtype=bool)
    out = {}
    for col, label in (("score", "policy score"), ("edge", "mispricing (edge)"), ("mom_z", "60 s momentum"),
                       ("inv_ratio", "inventory"), ("upnl_per_share", "unrealised P&L per share")):
        y = dd[col].to_numpy(dtype=float)[act]
        out[label] = LinearRegression().fit(x[act], y).score(x[act], y)
    return pd.Series(out, name="R2 from the 17 states")


def window_returns(equity: np.ndarray, notional: float, horizon: int, scale: float = 100.0) -> np.ndarray:
    """Return per window of ``horizon`` steps (x ``scale`` % of notional): the RTG_0 the agent achieved."""
    eq = np.r_[0.0, np.asarray(equity, float)]
    ends = np.arange(horizon, len(eq), horizon)
    starts = ends - horizon
    return (eq[ends] - eq[starts]) / notional * scale


def verdict(table: pd.DataFrame, twin: str, others: list[str]) -> str:
    """A plain sentence: does the twin beat the named baselines on macro-F1?"""
    f1 = table["macro_f1"]
    lost = [o for o in others if f1[twin] <= f1[o]]
    named = lost or others
    values = ", ".join(f"{o} {f1[o]:.3f}" for o in named)
    if not lost:
        return f"The twin beats {', '.join(others)} on test macro-F1: {f1[twin]:.3f} against {values}."
    return f"The twin does NOT beat {', '.join(lost)} on test macro-F1: {f1[twin]:.3f} against {values}."


def replay_verdict(returns: pd.DataFrame, model: str, trader: str = "the trader (recorded)") -> str:
    """A plain sentence: does ``model``'s replay return interval overlap the recorded trader's?"""
    m, tr = returns.loc[model], returns.loc[trader]
    overlap = m["ci_high"] >= tr["ci_low"] and tr["ci_high"] >= m["ci_low"]
    return (f"{model}: return {m['return']:+.3f} of notional [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] against the "
            f"recorded trader's {tr['return']:+.3f} [{tr['ci_low']:+.3f}, {tr['ci_high']:+.3f}]: the intervals "
            + ("overlap." if overlap else "do NOT overlap: the twin does not earn what the trader earns."))


def steering_verdict(steer: dict[str, Any]) -> str:
    """A plain sentence on the steering test (see :func:`workbench.twin.steering.steering`)."""
    lo, hi = steer["spearman_ci"]
    works = steer["spearman"] >= 0.8 and lo > 0
    return (f"Steering {'works' if works else 'does NOT work'}: Spearman(target, realised return) = "
            f"{steer['spearman']:+.2f} [{lo:+.2f}, {hi:+.2f}] over {steer['n_targets']} targets "
            f"(P of a value this high without steering: {steer['p_no_steering']:.2f}).")


def real_wallet_summary(positions: pd.DataFrame, bars: pd.DataFrame, wallet: str, window: int = 128) -> pd.Series:
    """What a real Data-API export offers the twin: steps, fills, the class balance of its flow (thresholds
    fitted on its first 60%), and how many ``window``-step windows it would give."""
    b = bars[bars["wallet"] == wallet].sort_values("bar_end")
    flow = b["wallet_flow"].to_numpy()
    n = len(flow)
    out = {"wallet": wallet, "steps": n, "steps with fills": int((b["wallet_trades"] > 0).sum()),
           "fills": int(b["wallet_trades"].sum()), "windows of 128 steps": n // window,
           "markets": int(positions.loc[positions["wallet"] == wallet, "slug"].nunique())}
    train = flow[: int(0.6 * n)]
    if (np.abs(train) > 1e-9).sum() >= 4:
        th = S.fit_action_thresholds(train)
        bal = S.class_balance(S.classify_flow(flow, th))
        out.update({f"share {k}": float(v) for k, v in bal.items()})
    return pd.Series(out)


def loaders(data: TwinData, batch_size: int = 32, seed: int = 0) -> tuple[Any, Any]:
    """Training (shuffled, seeded) and validation loaders of the twin's windows; rewards are passed so the
    RTG head's target is exactly ``RTG_t - r_t``."""
    from workbench.twin import train as dt

    def make(part: str, shuffle: bool) -> Any:
        w = data.windows[part]
        ds = dt.SequenceDataset(w["states"], w["actions"], w["rtg"], w["mask"], rewards=w["rewards"] * data.rtg_scale)
        return dt.make_loader(ds, batch_size=batch_size, shuffle=shuffle, seed=seed)

    return make("train", True), make("val", False)


def train_twin(data: TwinData, checkpoint_dir: Any, *, d_model: int = 64, n_layers: int = 3, n_heads: int = 4,
               dropout: float = 0.1, rtg_dropout: float = 0.5, epochs: int = 30, patience: int = 6,
               batch_size: int = 32, learning_rate: float = 3e-4, warmup_steps: int = 50, select_on: str = "action_ce",
               class_weights: np.ndarray | None = None, seed: int = 0, device: str | None = None
               ) -> tuple[Any, pd.DataFrame]:
    """Build and train a :class:`~workbench.twin.TraderDecisionTransformer` on ``data``'s windows (seeded), with
    early stopping and the checkpoint (``checkpoint_dir/best_model.pt``, normalisation and RTG settings inside)
    on ``select_on``, on ``device`` (default: CUDA when available). Returns the trainer (best weights loaded) and
    its history."""
    import torch

    from workbench.twin.model import TraderDecisionTransformer
    from workbench.twin.train import TraderTrainer

    torch.manual_seed(seed)
    train_loader, val_loader = loaders(data, batch_size, seed)
    window = data.windows["train"]["mask"].shape[1]
    model = TraderDecisionTransformer(state_dim=data.states.shape[1], action_dim=len(ACTIONS), d_model=d_model,
                                      n_layers=n_layers, n_heads=n_heads, dropout=dropout, max_len=window,
                                      rtg_dropout=rtg_dropout)
    trainer = TraderTrainer(model, device=device, learning_rate=learning_rate, warmup_steps=warmup_steps, seed=seed,
                            select_on=select_on, class_weights=class_weights)
    norm = {**data.normalizer.to_dict(), "features": list(data.features), "rtg_scale": data.rtg_scale,
            "rtg_mode": data.rtg_mode}
    history = trainer.fit(train_loader, val_loader, epochs=epochs, patience=patience, checkpoint_dir=checkpoint_dir,
                          normalization=norm)
    return trainer, history


def logit_adjustment(class_weights: np.ndarray | None) -> np.ndarray | None:
    """``-log w``: training with class weights ``w`` makes the model's probabilities proportional to
    ``w_k p_k``; subtracting ``log w_k`` from the logits recovers the behaviour's own ``p_k`` for acting
    (Menon et al., 2021, "Long-tail learning via logit adjustment")."""
    if class_weights is None:
        return None
    return -np.log(np.asarray(class_weights, dtype=np.float64)).astype(np.float32)


def from_meta(steps: pd.DataFrame, meta: dict[str, Any]) -> TwinData:
    """Rebuild notebook 04's :class:`TwinData` from its saved step table and ``twin.json``."""
    levels = S.ExitLevels(**meta["levels"]) if meta.get("levels") else None
    return prepare(steps, train=meta["train_fraction"], val=meta["val_fraction"], gap=meta["gap"],
                   window=meta["window"], train_stride=meta["train_stride"], rtg_scale=meta["rtg_scale"],
                   features=tuple(meta.get("features", S.STATE_FEATURES)), levels=levels,
                   rtg_mode=meta.get("rtg_mode", "to_go"))


def periods(data: TwinData) -> pd.Series:
    """``train`` / ``val`` / ``test`` / ``gap`` for every step."""
    lab = np.full(len(data.steps), "gap", dtype=object)
    for part, m in data.masks.items():
        lab[m] = part
    return pd.Series(lab, index=data.steps.index, name="period")


def actions_at(inference: Any, data: TwinData, times_ms: np.ndarray, targets: dict[str, float],
               rule: tuple[np.ndarray, float] | None = None) -> dict[str, np.ndarray]:
    """The twin's class at given step times, per named target RTG, in the causal mode: the argmax, or with
    ``rule = (prior, exponent)`` the decision rule of :func:`workbench.twin.evaluate.decide` (notebook 04 saves
    both in ``twin.json``); steps in the gaps between periods get HOLD."""
    pos = data.steps.index.get_indexer(pd.to_datetime(np.asarray(times_ms), unit="ms", utc=True))
    if (pos < 0).any():
        raise ValueError("some times are not step starts of the twin's table")
    out = {}
    for name, tg in targets.items():
        full = np.full(len(data.steps), 2)
        for part in ("train", "val", "test"):
            if rule is None:
                full[data.rows(part)] = twin_predictions(inference, data, part, "causal", tg)
            else:
                from workbench.twin.evaluate import decide

                p = twin_probabilities(inference, data, part, "causal", tg)
                full[data.rows(part)] = decide(p, np.asarray(rule[0]), float(rule[1]))
        out[name] = full[pos]
    return out
