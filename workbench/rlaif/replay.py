"""Design document 001's "online learning" against weekly retraining, on a replay of the preference stream.

The stream is the preference pairs in decision-time order, day by day. Two reward models start from the same
model trained on the first ``warmup_days``:

* **online**: :class:`workbench.rlaif.online.OnlineRewardModelTrainer` takes small Bradley-Terry steps on each
  day's pairs once that day is over;
* **weekly retrain**: every ``retrain_every_days`` a fresh model is trained from scratch on the last
  ``window_days`` of pairs; in between it stays fixed.

Each day's pairs are scored by both models *before* either learns from them (a prequential evaluation: no model
ever sees the pairs it is judged on). A **regime change** is built in where asked: from ``shift_day`` on, the
stream's pairs are labelled by another metric (e.g. the Sharpe ratio instead of the risk-adjusted return), a
change of what "better" means whose time is known, so how fast each learner tracks it can be measured.
Stability is the churn of the scores of a fixed probe set of decisions from one day to the next
(``1 - Spearman``): a learner that tracks fast but reorders everything daily is hard to trust.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from workbench import metrics
from workbench.rlaif.online import OnlineRewardModelTrainer, train_reward_model
from workbench.rlaif.store import PreferencePair

DAY_MS = 86_400_000


def _day(p: PreferencePair, t0: int) -> int:
    return int((p.chosen.time - t0) // DAY_MS)


def stream(before: Sequence[PreferencePair], after: Sequence[PreferencePair] | None = None,
           shift_day: int | None = None) -> list[list[PreferencePair]]:
    """Pairs per day (decision time, UTC days from the first pair): ``before``'s pairs up to ``shift_day``,
    ``after``'s from then on (``after=None``: no shift)."""
    allp = list(before) + list(after or [])
    if not allp:
        return []
    t0 = min(p.chosen.time for p in allp)
    n_days = max(_day(p, t0) for p in allp) + 1
    days: list[list[PreferencePair]] = [[] for _ in range(n_days)]
    for p in before:
        if shift_day is None or after is None or _day(p, t0) < shift_day:
            days[_day(p, t0)].append(p)
    for p in after or []:
        if shift_day is not None and _day(p, t0) >= shift_day:
            days[_day(p, t0)].append(p)
    return days


def _correct(trainer: Any, pairs: Sequence[PreferencePair]) -> np.ndarray:
    if not pairs:
        return np.zeros(0)
    s = trainer.score([x for p in pairs for x in (p.chosen, p.rejected)])
    d = s[0::2] - s[1::2]
    return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))


def replay(days: Sequence[Sequence[PreferencePair]], text_encoder: Any, *, probe: Sequence[Any], warmup_days: int = 7,
           retrain_every_days: int = 7, window_days: int = 7, epochs: int = 5, batch_size: int = 64,
           learning_rate: float = 1e-3, online_learning_rate: float = 1e-4, online_batch: int = 32,
           seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay the stream; returns ``(per day, per pair)``.

    Per day: pairs, accuracy of each learner on that day's pairs (before learning from them), the probe churn of
    each since the previous day, and whether the weekly model was retrained that day. Per pair: the day, its
    decision point, and whether each learner ranked it right (for intervals over decision points).
    """
    warm = [p for d in days[:warmup_days] for p in d]
    if not warm:
        raise ValueError(f"no pairs in the first {warmup_days} days to start from")
    online = train_reward_model(warm, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                text_encoder=text_encoder, seed=seed)
    learner = OnlineRewardModelTrainer(online, learning_rate=online_learning_rate)
    weekly = train_reward_model(warm, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                text_encoder=text_encoder, seed=seed)
    probe = list(probe)
    last = {"online": online.score(probe), "weekly": weekly.score(probe)}
    rows, per_pair = [], []
    rng = np.random.default_rng(seed)
    for t in range(warmup_days, len(days)):
        today = list(days[t])
        c_on, c_wk = _correct(online, today), _correct(weekly, today)
        retrained = False
        if today:  # learn from the day once it is over
            order = rng.permutation(len(today))
            for lo in range(0, len(order), online_batch):
                learner.update([today[i] for i in order[lo: lo + online_batch]])
        if (t - warmup_days + 1) % retrain_every_days == 0:
            recent = [p for d in days[max(0, t + 1 - window_days): t + 1] for p in d]
            if recent:
                weekly = train_reward_model(recent, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                            text_encoder=text_encoder, seed=seed)
                retrained = True
        now = {"online": online.score(probe), "weekly": weekly.score(probe)}
        churn = {k: float(1 - spearmanr(last[k], now[k]).statistic) if len(probe) > 2 else float("nan") for k in now}
        last = now
        rows.append({"day": t, "pairs": len(today), "online_acc": float(c_on.mean()) if len(today) else np.nan,
                     "weekly_acc": float(c_wk.mean()) if len(today) else np.nan, "online_churn": churn["online"],
                     "weekly_churn": churn["weekly"], "weekly_retrained": retrained})
        per_pair += [{"day": t, "point": p.chosen.metadata.get("decision_point", p.chosen.time), "online": a, "weekly": b}
                     for p, a, b in zip(today, c_on, c_wk)]
    return pd.DataFrame(rows), pd.DataFrame(per_pair)


def summary(per_pair: pd.DataFrame, daily: pd.DataFrame, windows: dict[str, tuple[int, int]], n_boot: int = 1000,
            seed: int = 0) -> pd.DataFrame:
    """Accuracy of each learner and their difference (online - weekly) in day windows ``{name: (first, last)}``,
    with bootstrap intervals over decision points, and the mean probe churn in each window."""
    rng = np.random.default_rng(seed)
    out = []
    for name, (a, b) in windows.items():
        w = per_pair[(per_pair["day"] >= a) & (per_pair["day"] <= b)]
        if w.empty:
            continue
        g = w.groupby("point")[["online", "weekly"]].agg(["sum", "count"])
        on_s, wk_s, n = g[("online", "sum")].to_numpy(), g[("weekly", "sum")].to_numpy(), g[("online", "count")].to_numpy()
        draws = rng.integers(0, len(n), (n_boot, len(n)))
        on_b, wk_b = on_s[draws].sum(1) / n[draws].sum(1), wk_s[draws].sum(1) / n[draws].sum(1)
        dd = daily[(daily["day"] >= a) & (daily["day"] <= b)]
        row = {"window": name, "days": f"{a}-{b}", "pairs": int(n.sum()), "online": on_s.sum() / n.sum(),
               "online_ci": np.quantile(on_b, [0.025, 0.975]).tolist(), "weekly": wk_s.sum() / n.sum(),
               "weekly_ci": np.quantile(wk_b, [0.025, 0.975]).tolist(),
               "online_minus_weekly": (on_s.sum() - wk_s.sum()) / n.sum(),
               "difference_ci": np.quantile(on_b - wk_b, [0.025, 0.975]).tolist(),
               "min_detectable": metrics.detectable_difference(float(np.std(on_b - wk_b, ddof=1))),
               "online_churn": float(dd["online_churn"].mean()), "weekly_churn": float(dd["weekly_churn"].mean())}
        out.append(row)
    return pd.DataFrame(out).set_index("window")
