"""The rule card: parameters in the trader's units with intervals, sentences, predictions, and recovery checks.

The card reports each kept term in units a trader reads (cents of mispricing, shares, seconds, USDC per share)
with its 95 % interval. :func:`predict` turns the fit into probabilities of the five *observed* classes per step
(a latent plain or STRONG class, read through the size threshold the classes were cut at), so the card is scored
with exactly the rule and intervals of every other model (:mod:`workbench.twin.evaluate`). On simulated data,
:func:`truth` converts the hidden policy to the same units and :func:`recovery` says which estimates cover it
(evaluation only: no fit reads the truth).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from workbench.rules.search import CardFit
from workbench.rules.terms import CANDIDATES, PolicyData

Z95 = 1.959963984540054
#: Card rows: parameter -> (label, unit, transform of the raw parameter to the card's unit).
ROWS: dict[str, tuple[str, str, Any]] = {
    "edge": ("mispricing (fair - mid)", "score per cent", lambda x: x),
    "momentum": ("last minute's momentum", "score per z", lambda x: x),
    "inventory": ("inventory", "score per 100 shares held", lambda x: x),
    "exit_push": ("push to flat at take profit / stop loss", "score", lambda x: x),
    "late_damp": ("score multiplier in the late window", "x", lambda x: x),
    "theta_1": ("threshold STRONG_SELL | SELL", "score", lambda x: x),
    "theta_2": ("threshold SELL | HOLD", "score", lambda x: x),
    "theta_3": ("threshold HOLD | BUY", "score", lambda x: x),
    "theta_4": ("threshold BUY | STRONG_BUY", "score", lambda x: x),
    "participation_logit": ("share of markets traded", "probability", expit),
    "log_base_size": ("plain order size at score 0", "shares", math.exp),
    "size_conviction": ("size growth per unit of |score|", "fraction", lambda x: x),
    "log_strong_mult": ("STRONG size multiple", "x", math.exp),
    "log_size_noise": ("size noise", "sd of log size", math.exp),
}
CHANGE_POINTS: dict[str, tuple[str, str, float]] = {
    "take_profit": ("take profit", "cents per share", 100.0), "stop_loss": ("stop loss", "cents per share", 100.0),
    "late_window": ("late window", "seconds before expiry", 1.0), "stop": ("no trading in the last", "seconds", 1.0),
}


def _row(name: str) -> tuple[str, str, Any]:
    if name.startswith("cand_"):
        c = name.removeprefix("cand_")
        return (f"candidate: {c}", f"score {CANDIDATES[c][3]}", lambda x: x)
    return ROWS[name]


def table(card: CardFit, boot: pd.DataFrame | None = None, truth_values: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per kept parameter and change point: estimate, 95 % interval (Wald over markets; bootstrap and
    profile where given), unit, and the true value when known."""
    f = card.fit
    rows = []
    for name in f.free_names:
        label, unit, tr = _row(name)
        x, se = f.params[name], f.se(name)
        lo, hi = sorted((tr(x - Z95 * se), tr(x + Z95 * se))) if math.isfinite(se) else (math.nan, math.nan)
        r = {"parameter": name, "term": label, "unit": unit, "estimate": tr(x), "lo": lo, "hi": hi, "interval": "Wald"}
        if boot is not None and name in boot.index:
            b = sorted((tr(boot.loc[name, "lo"]), tr(boot.loc[name, "hi"])))
            r.update({"boot_lo": b[0], "boot_hi": b[1]})
        rows.append(r)
    kept_exit = "exit" not in f.spec.dropped
    kept_late = "late" not in f.spec.dropped
    for name, (label, unit, scale) in CHANGE_POINTS.items():
        if (name in ("take_profit", "stop_loss") and not kept_exit) or (name == "late_window" and not kept_late):
            continue
        lo, hi = card.intervals.get(name, (math.nan, math.nan))
        rows.append({"parameter": name, "term": label, "unit": unit, "estimate": getattr(card.change_points, name) * scale,
                     "lo": lo * scale, "hi": hi * scale, "interval": "profile" if name != "stop" else "identified set"})
    out = pd.DataFrame(rows).set_index("parameter")
    if truth_values is not None:
        out["true"] = [truth_values.get(p, math.nan) for p in out.index]
        out["covered"] = (out["true"] >= out["lo"] - 1e-9) & (out["true"] <= out["hi"] + 1e-9)
    return out


def sentences(card: CardFit, tab: pd.DataFrame, d: PolicyData, agreement: float | None = None) -> list[str]:
    """The card in words, generated from the fit (only kept terms are stated)."""
    def iv(p: str, fmt: str = "{:.2f}") -> str:
        r = tab.loc[p]
        return f"{fmt.format(r['estimate'])} [{fmt.format(r['lo'])}, {fmt.format(r['hi'])}]"

    out = []
    th = [tab.loc[f"theta_{k}", "estimate"] for k in (1, 2, 3, 4)]
    if "edge" in tab.index and tab.loc["edge", "estimate"] > 0:
        buy_at = th[2] / tab.loc["edge", "estimate"]
        out.append(f"Buys Up when it is cheap: each cent the ask-side mid sits under fair value adds {iv('edge', '{:.3f}')} "
                   f"to the score; on mispricing alone a BUY becomes the likeliest action at about {buy_at:.1f} cents "
                   f"(score {th[2]:.2f}), a STRONG_BUY at {th[3] / tab.loc['edge', 'estimate']:.1f} cents.")
    if "momentum" in tab.index:
        out.append(f"Follows momentum: each standard deviation of the last minute's move adds {iv('momentum')}.")
    if "inventory" in tab.index:
        out.append(f"Leans against its inventory: {iv('inventory', '{:.3f}')} per 100 shares held"
                   + (f"; never holds more than {d.cap:.0f} shares net." if math.isfinite(d.cap) else "."))
    if "exit_push" in tab.index:
        out.append(f"Takes profit at +{iv('take_profit', '{:.1f}')} cents per share and cuts at -{iv('stop_loss', '{:.1f}')} "
                   f"cents: once either is reached the score moves {iv('exit_push')} towards flat.")
    if "late_damp" in tab.index:
        out.append(f"Calms down late: in the last {iv('late_window', '{:.0f}')} s its score is multiplied by {iv('late_damp')}.")
    out.append(f"Stops trading in the last {tab.loc['stop', 'lo']:.0f}-{tab.loc['stop', 'hi']:.0f} s (the decision grid "
               "does not say more).")
    if "participation_logit" in tab.index:
        out.append(f"Trades in {iv('participation_logit', '{:.1%}')} of markets and holds throughout the others.")
    if "log_base_size" in tab.index:
        s = f"Plain orders are {iv('log_base_size', '{:.0f}')} shares"
        if "size_conviction" in tab.index:
            s += f", growing {iv('size_conviction')} per unit of score"
        out.append(s + f"; STRONG orders are {iv('log_strong_mult')} times larger.")
    dropped = sorted(card.fit.spec.dropped)
    if dropped:
        out.append("Not part of the rules (dropped by likelihood-ratio tests): " + ", ".join(dropped) + ".")
    if agreement is not None:
        out.append(f"The card reproduces {agreement:.1%} of the trader's held-out decisions (its most likely class).")
    return out


def predict(card: CardFit, d: PolicyData, fallback: np.ndarray | None = None) -> np.ndarray:
    """``(M, K, 5)`` probabilities of the observed classes (``ACTIONS`` order) per step, given the market's earlier
    steps (whether the trader is active is updated by Bayes' rule as a market's steps are seen)."""
    f = card.fit
    p = f.params
    cp = card.change_points
    inv, ex = d.inventory / 100.0, d.exit_term(cp.take_profit, cp.stop_loss)
    lin = p["inventory"] * inv + p["exit_push"] * ex
    for c in f.spec.candidates:
        lin = lin + p[f"cand_{c}"] * d.extras[c]
    damp = np.where(d.seconds_left < cp.late_window, p["late_damp"], 1.0)
    s = (p["edge"] * d.edge + p["momentum"] * d.momentum + lin[..., None]) * damp[..., None]
    cdf = [expit(p[f"theta_{k}"] - s) for k in (1, 2, 3, 4)]
    lat = np.stack([1 - cdf[3], cdf[3] - cdf[2], cdf[2] - cdf[1], cdf[1] - cdf[0], cdf[0]], axis=-1)  # SB, B, H, S, SS
    mu = p["log_base_size"] + np.log1p(max(p["size_conviction"], -0.02) * np.abs(s))
    sn = math.exp(p["log_size_noise"])
    cut = math.log(d.strong) if math.isfinite(d.strong) and d.strong > 0 else math.inf
    big_plain = ndtr((mu - cut) / sn)  # P(a plain order is read as STRONG)
    big_strong = ndtr((mu + p["log_strong_mult"] - cut) / sn)
    obs = np.empty_like(lat)
    obs[..., 0] = lat[..., 0] * big_strong + lat[..., 1] * big_plain
    obs[..., 1] = lat[..., 0] * (1 - big_strong) + lat[..., 1] * (1 - big_plain)
    obs[..., 2] = lat[..., 2]
    obs[..., 3] = lat[..., 4] * (1 - big_strong) + lat[..., 3] * (1 - big_plain)
    obs[..., 4] = lat[..., 4] * big_strong + lat[..., 3] * big_plain
    pa = (obs * d.weights[..., None]).sum(axis=2)  # (M, K, 5) if active
    forced = d.seconds_left < cp.stop
    pa[forced] = np.eye(5)[2]
    fb = np.asarray(fallback if fallback is not None else np.eye(5)[2], dtype=np.float64)
    pa[~d.ok & ~forced] = fb
    pi = float(expit(p["participation_logit"]))
    out = np.empty_like(pa)
    post = np.full(d.n_markets, pi)
    for k in range(pa.shape[1]):  # sequential within a market: the posterior of "active" uses earlier steps only
        out[:, k] = post[:, None] * pa[:, k]
        out[:, k, 2] += 1 - post
        y = d.observed_class[:, k]
        present = d.index[:, k] >= 0
        p_y = pa[np.arange(d.n_markets), k, y]
        new = np.where(y == 2, post * p_y / np.maximum(post * p_y + (1 - post), 1e-300), 1.0)
        post = np.where(present, new, post)
    return out


def on_rows(probs: np.ndarray, d: PolicyData, rows: np.ndarray) -> np.ndarray:
    """Pick the step-table rows ``rows`` out of :func:`predict`'s grid: ``(len(rows), 5)``."""
    where = {int(i): (m, k) for m, k in zip(*np.nonzero(d.index >= 0)) for i in [d.index[m, k]]}
    mk = np.array([where[int(r)] for r in rows])
    return probs[mk[:, 0], mk[:, 1]]


def truth(policy: Any) -> dict[str, float]:
    """A :class:`workbench.data.simulate.TraderPolicy` in the card's units (evaluation only)."""
    tp = policy
    th = tuple(tp.thresholds)
    return {"edge": tp.beta_edge / 2.0, "momentum": tp.beta_momentum,
            "inventory": -tp.beta_inventory / tp.max_inventory * 100.0, "exit_push": tp.exit_push,
            "late_damp": tp.late_damp, "theta_1": th[0], "theta_2": th[1], "theta_3": th[2], "theta_4": th[3],
            "participation_logit": tp.participation, "log_base_size": tp.base_size,
            "size_conviction": tp.size_conviction, "log_strong_mult": tp.strong_mult, "log_size_noise": tp.size_noise,
            "take_profit": tp.take_profit * 100.0, "stop_loss": tp.stop_loss * 100.0,
            "late_window": float(tp.late_window_s), "stop": float(tp.min_time_left_s),
            **{f"cand_{c}": 0.0 for c in CANDIDATES}}


def effects_figure(tab: pd.DataFrame, title: str = "Rule card: effect of each term on the score") -> Any:
    """Estimates with 95 % intervals of the score terms (and the true values where known)."""
    import matplotlib.pyplot as plt

    rows = [p for p in ("edge", "momentum", "inventory", "exit_push", "late_damp") if p in tab.index]
    rows += [p for p in tab.index if str(p).startswith("cand_")]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(rows), 1)))
    y = np.arange(len(rows))
    est = tab.loc[rows, "estimate"].to_numpy(float)
    err = np.vstack([est - tab.loc[rows, "lo"].to_numpy(float), tab.loc[rows, "hi"].to_numpy(float) - est])
    ax.errorbar(est, y, xerr=np.abs(err), fmt="o", capsize=3, label="estimate, 95 % interval")
    if "true" in tab:
        ax.plot(tab.loc[rows, "true"].to_numpy(float), y, "x", color="C3", label="hidden policy")
    ax.set_yticks(y, [f"{tab.loc[r, 'term']} ({tab.loc[r, 'unit']})" for r in rows])
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def profiles_figure(card: CardFit) -> Any:
    """Profile log-likelihood of each change point (re-maximised over every other parameter)."""
    import matplotlib.pyplot as plt

    names = [n for n in ("take_profit", "stop_loss", "late_window") if n in card.profiles]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, n in zip(axes[0], names):
        p = card.profiles[n].sort_values(n)
        scale = CHANGE_POINTS[n][2]
        ax.plot(p[n] * scale, p["loglik"] - p["loglik"].max(), "o-", ms=3)
        ax.axhline(-1.92, color="grey", ls="--", lw=0.8)
        ax.set_xlabel(f"{CHANGE_POINTS[n][0]} ({CHANGE_POINTS[n][1]})")
        ax.set_ylim(max(-40, (p["loglik"] - p["loglik"].max()).min() - 1), 2)
    axes[0][0].set_ylabel("profile log-likelihood - max")
    fig.tight_layout()
    return fig
