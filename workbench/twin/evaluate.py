"""Scoring the twin and its yardsticks on one footing: one decision rule, intervals over markets.

Every model, baseline and ceiling gives action probabilities ``(n, 5)`` per step. They are scored alike:

* **macro-F1 with a prior-corrected decision rule**: predict ``argmax_k p_k / prior_k ** a`` with ``prior`` the
  training class frequencies and the exponent ``a`` fitted on the *validation* period for each model (the
  argmax, ``a = 0``, hardly ever predicts a rare class, so it caps macro-F1 even for the true probabilities);
* **accuracy** of the plain argmax, and **log-loss** of the probabilities (both independent of ``a``);
* **bootstrap intervals over markets** (the independent units: steps within a market share its path), and
  for a comparison of two models the paired bootstrap of their difference, with the smallest difference the
  design can detect (80 % power at the 5 % level: 2.8 standard errors).

Why hand-written: scikit-learn scores one prediction vector; the market-clustered bootstrap, the fitted
decision rule and the detectable effect are what an honest comparison needs on top.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench import metrics as wb_metrics
from workbench.data.simulate import ACTIONS

K = len(ACTIONS)
EXPONENTS = np.round(np.linspace(0.0, 1.5, 31), 3)


def class_prior(actions: np.ndarray, n_classes: int = K) -> np.ndarray:
    """Class frequencies (add-one smoothed, so no class has prior 0)."""
    c = np.bincount(np.asarray(actions, dtype=np.int64), minlength=n_classes).astype(np.float64) + 1.0
    return c / c.sum()


def decide(probs: np.ndarray, prior: np.ndarray, exponent: float) -> np.ndarray:
    """``argmax_k log p_k - exponent * log prior_k`` per row."""
    return (np.log(np.clip(probs, 1e-12, 1.0)) - exponent * np.log(prior)[None, :]).argmax(axis=1)


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int = K) -> float:
    """Macro-F1 over all ``n_classes`` (a class never true nor predicted scores 0, as scikit-learn's
    ``zero_division=0`` with ``labels=range(n_classes)``)."""
    cm = confusion(y, pred, n_classes).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1.0), 0.0)))


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int = K) -> np.ndarray:
    """Confusion matrix ``(n_classes, n_classes)``: rows true class, columns predicted."""
    cm = np.bincount(np.asarray(y) * n_classes + np.asarray(pred), minlength=n_classes * n_classes)
    return cm.reshape(n_classes, n_classes)


def fit_exponent(probs: np.ndarray, y: np.ndarray, prior: np.ndarray, grid: np.ndarray = EXPONENTS) -> float:
    """The exponent of :func:`decide` that maximises macro-F1 on ``(probs, y)`` (the validation period)."""
    scores = [macro_f1(y, decide(probs, prior, a)) for a in grid]
    return float(grid[int(np.argmax(scores))])


def metrics(y: np.ndarray, probs: np.ndarray, prior: np.ndarray, exponent: float) -> dict[str, float]:
    """``macro_f1`` (the decision rule), ``macro_f1_argmax``, ``accuracy`` (argmax) and ``log_loss`` (nats)."""
    p = np.clip(probs, 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    arg = p.argmax(axis=1)
    return {"macro_f1": macro_f1(y, decide(p, prior, exponent)), "macro_f1_argmax": macro_f1(y, arg),
            "accuracy": float((arg == y).mean()), "log_loss": float(-np.log(p[np.arange(len(y)), y]).mean())}


def _market_draws(groups: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_boot`` bootstrap samples that resample whole markets (groups) with replacement."""
    codes, uniq = pd.factorize(np.asarray(groups))
    rows = [np.flatnonzero(codes == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    return [np.concatenate([rows[g] for g in rng.integers(0, len(rows), len(rows))]) for _ in range(n_boot)]


def score(y: np.ndarray, probs: np.ndarray, groups: np.ndarray, prior: np.ndarray, exponent: float, *,
          n_boot: int = 300, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """:func:`metrics` with percentile intervals from a bootstrap over markets (``groups``): each metric ``m``
    gets ``m_ci = [lo, hi]``; the exponent used is reported."""
    point = metrics(y, probs, prior, exponent)
    draws = [metrics(y[r], probs[r], prior, exponent) for r in _market_draws(groups, n_boot, seed)]
    q = [(1 - level) / 2, (1 + level) / 2]
    out: dict[str, Any] = {"exponent": exponent, **point}
    for k in point:
        out[f"{k}_ci"] = [float(v) for v in np.quantile([d[k] for d in draws], q)]
    return out


def compare(y: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, groups: np.ndarray, prior: np.ndarray,
            exp_a: float, exp_b: float, *, metric: str = "macro_f1", n_boot: int = 300, seed: int = 0,
            level: float = 0.95) -> dict[str, Any]:
    """Paired bootstrap over markets of ``metric(a) - metric(b)``: the difference, its interval, its standard
    error and the smallest difference this test set can detect (80 % power, two-sided 5 %: 2.8 SE)."""
    diff = metrics(y, probs_a, prior, exp_a)[metric] - metrics(y, probs_b, prior, exp_b)[metric]
    d = np.array([metrics(y[r], probs_a[r], prior, exp_a)[metric] - metrics(y[r], probs_b[r], prior, exp_b)[metric]
                  for r in _market_draws(groups, n_boot, seed)])
    q = [(1 - level) / 2, (1 + level) / 2]
    se = float(d.std(ddof=1))
    return {"metric": metric, "difference": float(diff), "ci": [float(v) for v in np.quantile(d, q)], "se": se,
            "min_detectable": wb_metrics.detectable_difference(se)}


def score_table(y_val: np.ndarray, y_test: np.ndarray, models: dict[str, tuple[np.ndarray, np.ndarray]],
                groups_test: np.ndarray, prior: np.ndarray, *, n_boot: int = 300, seed: int = 0
                ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Score every model alike: ``models[name] = (validation probs, test probs)``; the exponent is fitted on
    validation, the metrics and intervals on test. Returns a display table and the full results."""
    res = {}
    for name, (p_val, p_test) in models.items():
        a = fit_exponent(p_val, y_val, prior)
        res[name] = score(y_test, p_test, groups_test, prior, a, n_boot=n_boot, seed=seed)
    rows = {n: {"macro-F1": r["macro_f1"], "macro-F1 95% CI": "[{:.3f}, {:.3f}]".format(*r["macro_f1_ci"]),
                "macro-F1 (argmax)": r["macro_f1_argmax"], "accuracy": r["accuracy"], "log-loss": r["log_loss"],
                "exponent a": r["exponent"]} for n, r in res.items()}
    return pd.DataFrame(rows).T, res
