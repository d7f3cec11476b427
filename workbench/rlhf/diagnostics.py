"""Diagnostics of the rewards (the guide's ``debug_rewards`` and ``analyze_steps`` scripts) and figures.

* :func:`debug_rewards`: every reward component of each analysis and its total under each scheme, with the
  guarded and the naive keyword rewards side by side (what the reward-hacking guard changes);
* :func:`step_table`: one row per analysis and step: present, true, its process reward, the process reward
  model's probability, the claims that failed;
* :func:`analyze_steps`: per step type: presence, accuracy, mean reward, mean PRM probability and how well the
  PRM separates true from false steps (ROC AUC);
* :func:`worst_steps`: the lowest-scored steps with the claims that failed (what to fix first);
* :func:`training_steps`: the reward function's per-completion records during RL, per step type and step;
* :func:`reward_outcome_correlation`: Spearman correlation of each reward with the realised return, with a
  bootstrap interval (does the reward track what the market paid?).
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench import metrics
from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import STEPS, RLConfig
from workbench.analysis.verifier import StepVerifier, split_steps
from workbench.plots import fit_width
from workbench.rlhf.rewards import OutcomeFn, Scheme, prm_step_probs, score

STEP_LABELS = {"technical_analysis": "technical", "risk_assessment": "risk", "market_context": "context",
               "signal_generation": "signal"}
SCHEME_COLORS = {"outcome-only": "#d73027", "process-only": "#4575b4", "combined": "#1a9850", "SFT": "#4d4d4d"}


def debug_rewards(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig, outcome_fn: OutcomeFn | None = None,
                  extras: Sequence[dict[str, Any]] | None = None, names: Sequence[str] | None = None,
                  schemes: Sequence[str] = ("outcome-only", "process-only", "combined")) -> pd.DataFrame:
    """One row per analysis: signal, true-step share, each component (process, outcome, calibration, guarded
    and naive mentions), the total under each scheme and under the combined scheme without the guard."""
    s = score(texts, facts, cfg, outcome_fn, extras)
    df = pd.DataFrame({"signal": s.signals, "confidence": s.confidences, "true_step_share": s.true_step_share,
                       "self_consistent": s.self_consistent, "return": s.returns, "process": s.process,
                       "outcome": s.outcome, "calibration": s.calibration, "mentions (guarded)": s.mentions,
                       "mentions (naive)": s.naive_mentions},
                      index=list(names) if names is not None else None)
    for sch in schemes:
        df[f"total: {sch}"] = s.total(Scheme.named(sch))
    df["total: combined without the guard"] = s.total(Scheme(guarded=False))
    return df


def step_table(texts: Sequence[str], facts: Sequence[Facts], cfg: RLConfig, prm: Any = None,
               model: str | Sequence[str] = "", prompt_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """One row per (analysis, step): ``present``, ``ok`` (all claims true), ``reward`` (its weighted process
    reward ``w_s x correct_step / incorrect_step``), ``prm_prob`` (with a process reward model), the failed
    claims and the step's text."""
    ver = StepVerifier(cfg.verifier)
    r = cfg.rewards
    probs = prm_step_probs(texts, facts, prm) if prm is not None else None
    models = [model] * len(texts) if isinstance(model, str) else list(model)
    ids = list(prompt_ids) if prompt_ids is not None else list(range(len(texts)))
    rows = []
    for i, (t, f) in enumerate(zip(texts, facts)):
        v = ver.verify(t, f)
        st = split_steps(t)
        for k, s in enumerate(STEPS):
            failed = [f"{c.name} ({c.detail})" for c in v.claims if c.step == s and not c.ok]
            rows.append({"model": models[i], "prompt_id": ids[i], "analysis": i, "step": s, "present": s in st,
                         "ok": bool(v.step_ok[s]), "reward": cfg.step_weight(s) * (r.correct_step if v.step_ok[s]
                                                                                  else r.incorrect_step),
                         "prm_prob": float(probs[i, k]) if probs is not None else np.nan,
                         "failed_claims": "; ".join(failed), "text": st.get(s, "")})
    return pd.DataFrame(rows)


def analyze_steps(table: pd.DataFrame, by: Sequence[str] = ("step",)) -> pd.DataFrame:
    """Per step type (and ``by`` columns): analyses, share present, accuracy (share true), mean process
    reward, mean PRM probability for true and for false steps, and the PRM's ROC AUC."""
    from sklearn.metrics import roc_auc_score

    rows = []
    for key, g in table.groupby(list(by), sort=False):
        y = g["ok"].astype(float).to_numpy()
        p = g["prm_prob"].to_numpy(float)
        has_p = np.isfinite(p).all() and len(p)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "n": len(g),
                     "present": float(g["present"].mean()), "accuracy": float(y.mean()),
                     "mean_reward": float(g["reward"].mean()),
                     "prm_prob_true": float(p[y == 1].mean()) if has_p and (y == 1).any() else np.nan,
                     "prm_prob_false": float(p[y == 0].mean()) if has_p and (y == 0).any() else np.nan,
                     "prm_auc": float(roc_auc_score(y, p)) if has_p and 0 < y.mean() < 1 else np.nan,
                     "most_failed_claim": _top_claim(g["failed_claims"])})
    out = pd.DataFrame(rows)
    if "step" in out:
        out["step"] = pd.Categorical(out["step"], categories=list(STEPS), ordered=True)
        out = out.sort_values([*[b for b in by if b != "step"], "step"]).reset_index(drop=True)
    return out


def _top_claim(col: pd.Series) -> str:
    names = [c.split(" (")[0] for cell in col if cell for c in cell.split("; ")]
    if not names:
        return ""
    s = pd.Series(names).value_counts()
    return f"{s.index[0]} ({s.iloc[0]}x)"


def worst_steps(table: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` lowest-scored present steps: false steps first, then the lowest PRM probability (a false
    step the PRM rates highly is the most misleading)."""
    t = table[table["present"]].copy()
    t["_prm"] = t["prm_prob"].fillna(0.0)
    t = t.sort_values(["ok", "reward", "_prm"], ascending=[True, True, False], kind="stable")
    return t.head(k)[["model", "prompt_id", "step", "ok", "reward", "prm_prob", "failed_claims", "text"]] \
        .reset_index(drop=True)


def training_steps(records: pd.DataFrame, every: int = 1) -> pd.DataFrame:
    """From :class:`workbench.rlhf.rewards.GRPOReward`'s records: per RL step, the mean reward, each
    component, and the share of true steps of each step type among that step's completions."""
    if not len(records):
        return pd.DataFrame()
    r = records.assign(block=(records["step"] // every) * every)
    cols = ["reward", "process", "outcome", "calibration", "true_step_share"] + [f"ok_{s}" for s in STEPS]
    out = r.groupby("block")[cols].mean()
    out["completions"] = r.groupby("block").size()
    out["no_signal"] = r.groupby("block")["signal"].apply(lambda s: float(s.isna().mean()))
    return out.rename_axis("rl_step").reset_index()


def reward_outcome_correlation(frame: pd.DataFrame, reward_cols: Sequence[str], return_col: str = "ret",
                               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman correlation of each reward column with the realised return (rows with both finite), with a
    percentile bootstrap interval (pairs resampled)."""
    rows = []
    for c in reward_cols:
        d = frame[[c, return_col]].replace([np.inf, -np.inf], np.nan).dropna()
        x, y = d[c].to_numpy(float), d[return_col].to_numpy(float)

        def rho(i: np.ndarray, x: np.ndarray = x, y: np.ndarray = y) -> float:
            j = i.astype(int)
            a, b = pd.Series(x[j]).rank(), pd.Series(y[j]).rank()
            return float(a.corr(b)) if a.std() > 0 and b.std() > 0 else np.nan

        est, lo, hi = metrics.bootstrap_ci(np.arange(len(d), dtype=float), rho, n_boot=n_boot, seed=seed) \
            if len(d) > 2 else (np.nan, np.nan, np.nan)
        rows.append({"reward": c, "n": len(d), "spearman": est, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------
def _color(name: str) -> str:
    for k, v in SCHEME_COLORS.items():
        if name.startswith(k):
            return v
    return "#7f7f7f"


def training_figure(histories: dict[str, pd.DataFrame], records: dict[str, pd.DataFrame] | None = None,
                    title: str = "GRPO training") -> plt.Figure:
    """Reward (mean and its standard deviation across the step's completions) per RL step and scheme; the
    true-step share and the share of each step type that is true among the rollouts, per scheme."""
    n = 2 + (1 if records else 0)
    fig, axes = plt.subplots(1, n, figsize=fit_width(5.2 * n, 3.8))
    for name, h in histories.items():
        h = h[h["reward"].notna()] if "reward" in h else h.iloc[0:0]
        if not len(h):
            continue
        axes[0].plot(h["step"], h["reward"], color=_color(name), label=name)
        if "reward_std" in h:
            axes[0].fill_between(h["step"], h["reward"] - h["reward_std"], h["reward"] + h["reward_std"],
                                 color=_color(name), alpha=0.12)
        if "components/true_step_share" in h:
            axes[1].plot(h["step"], h["components/true_step_share"], color=_color(name), label=name)
    axes[0].set(xlabel="RL step", ylabel="reward (own scheme)", title="Mean reward of the rollouts (± sd)")
    axes[1].set(xlabel="RL step", ylabel="share of true steps", title="True steps among the rollouts")
    axes[0].legend(fontsize=8)
    if records:
        ax = axes[2]
        styles = dict(zip(STEPS, ("-", "--", ":", "-.")))
        for name, rec in records.items():
            t = training_steps(rec)
            if not len(t):
                continue
            for s in STEPS:
                ax.plot(t["rl_step"], t[f"ok_{s}"].rolling(3, min_periods=1).mean(), color=_color(name),
                        ls=styles[s], lw=1, label=f"{name}: {STEP_LABELS[s]}" if name == next(iter(records)) else None)
        ax.set(xlabel="RL step", ylabel="share true (3-step mean)", title="Step accuracy by type during RL")
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def step_figure(table: pd.DataFrame, title: str = "Rewards per step type") -> plt.Figure:
    """Accuracy per step type and model (bars), and the process reward model's probability for true and
    false steps per step type (box plots): where the PRM's reward is informative."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=fit_width(13, 4))
    acc = table.groupby(["step", "model"], sort=False)["ok"].mean().unstack("model").reindex(list(STEPS))
    acc.index = [STEP_LABELS[s] for s in acc.index]
    acc.plot.bar(ax=ax1, rot=0, color=[_color(c) for c in acc.columns])
    ax1.set(ylabel="share of steps true", title="Step accuracy by type", ylim=(0, 1))
    ax1.legend(fontsize=7)
    if table["prm_prob"].notna().any():
        data, labels, colors = [], [], []
        for s in STEPS:
            for ok in (True, False):
                v = table[(table["step"] == s) & (table["ok"] == ok) & table["prm_prob"].notna()]["prm_prob"]
                data.append(v.to_numpy() if len(v) else np.array([np.nan]))
                labels.append(f"{STEP_LABELS[s]}\n{'true' if ok else 'false'}")
                colors.append("#1a9850" if ok else "#d73027")
        bp = ax2.boxplot(data, patch_artist=True, showfliers=False)
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
            patch.set_alpha(0.5)
        ax2.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax2.set(ylabel="PRM probability the step is correct", title="Process reward model by step type and truth")
    else:
        ax2.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def comparison_figure(summary: pd.DataFrame, title: str = "Process versus outcome on the test period") -> plt.Figure:
    """The six metrics per row of :func:`workbench.rlhf.evaluation.summary_table`, with 95 % intervals."""
    from workbench.rlhf.evaluation import LABELS, METRICS

    fig, axes = plt.subplots(1, len(METRICS), figsize=fit_width(3.1 * len(METRICS), 0.45 * len(summary) + 2.2), sharey=True)
    y = np.arange(len(summary))
    for ax, m in zip(axes, METRICS):
        v = summary[m].to_numpy(float)
        lo, hi = summary[f"{m}_lo"].to_numpy(float), summary[f"{m}_hi"].to_numpy(float)
        err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
        ax.errorbar(v, y, xerr=np.nan_to_num(err), fmt="o", color="k", ecolor="#7f7f7f", capsize=2)
        for yi, name in zip(y, summary.index):
            ax.plot(v[yi], yi, "o", color=_color(name.replace("best-of-n: ", "")))
        if m == "mean_ret":
            ax.axvline(0, color="k", lw=0.6)
        ax.set(title=LABELS[m], yticks=y)
        ax.tick_params(labelsize=7)
    axes[0].set_yticklabels(summary.index, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curriculum_figure(table: pd.DataFrame, title: str = "Curriculum: difficulty of the RL prompts") -> plt.Figure:
    """Difficulty in reading order (coloured by stage) and the mean of each component per stage."""
    from workbench.rlhf.curriculum import DIFFICULTY_WEIGHTS, STAGES

    colors = dict(zip(STAGES, ("#1a9850", "#fdae61", "#d73027")))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=fit_width(12, 3.6))
    ax1.scatter(table["order"], table["difficulty"], c=[colors[s] for s in table["stage"]], s=12)
    ax1.set(xlabel="order in which GRPO reads the prompts", ylabel="difficulty", title="Easy first")
    comp = table.groupby("stage")[list(DIFFICULTY_WEIGHTS)].mean().reindex([s for s in STAGES if s in set(table["stage"])])
    comp.T.plot.bar(ax=ax2, rot=0, color=[colors[s] for s in comp.index])
    ax2.set(ylabel="mean component (0-1)", title="What makes a stage hard")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def correlation_figure(frame: pd.DataFrame, reward_cols: Sequence[str], return_col: str = "ret",
                       title: str = "Reward against realised return") -> plt.Figure:
    """Scatter of each reward against the realised return (one panel per reward)."""
    fig, axes = plt.subplots(1, len(reward_cols), figsize=fit_width(4 * len(reward_cols), 3.4), squeeze=False)
    for ax, c in zip(axes[0], reward_cols):
        d = frame[[c, return_col]].replace([np.inf, -np.inf], np.nan).dropna()
        ax.scatter(d[c], d[return_col], s=8, alpha=0.5, color="#4d4d4d")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel=c, ylabel="return per share" if c == reward_cols[0] else None)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
