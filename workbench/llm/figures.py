"""Figures of notebook 06: training curves (pretraining / SFT / DPO) and the evaluation of base, SFT and DPO.

Pure functions: tables in, a matplotlib figure out; ``workbench.plots.save(fig, "06_...")`` writes them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workbench.analysis.rlconfig import STEPS
from workbench.plots import BUY_COLOR, NEUTRAL, SELL_COLOR, fit_width

_COLORS = {"base": "#bababa", "SFT": "#2166ac", "DPO": BUY_COLOR, "reference (analyst)": NEUTRAL}


def _col(h: pd.DataFrame, c: str) -> pd.DataFrame:
    return h[h[c].notna()] if c in h else h.iloc[0:0]


def training_curves(history: pd.DataFrame, title: str) -> plt.Figure:
    """Loss (train, validation), perplexity, learning rate, tokens/s and peak memory against the step.

    For DPO (``rewards/margins`` present) a sixth panel shows the reward margins and accuracies (train and
    validation); perplexity is then that of the chosen completions (approximate, see ``MetricsCallback``).
    """
    h = history
    dpo = "rewards/margins" in h
    fig, axes = plt.subplots(2, 3, figsize=fit_width(15, 7))
    ax = axes.ravel()
    tr, ev = _col(h, "loss"), _col(h, "eval_loss")
    ax[0].plot(tr["step"], tr["loss"], marker="o", ms=2, lw=1, label="train")
    if len(ev):
        ax[0].plot(ev["step"], ev["eval_loss"], marker="s", ms=4, lw=1.2, label="validation")
    ax[0].set(xlabel="optimizer step", ylabel="DPO loss" if dpo else "token NLL (nats)", title="loss")
    ax[0].legend(fontsize=8)
    pk, epk = ("chosen_perplexity", "eval_chosen_perplexity") if dpo else ("perplexity", "eval_perplexity")
    p, ep = _col(h, pk), _col(h, epk)
    ax[1].plot(p["step"], p[pk], marker="o", ms=2, lw=1, label="train")
    if len(ep):
        ax[1].plot(ep["step"], ep[epk], marker="s", ms=4, lw=1.2, label="validation")
    ax[1].set(xlabel="optimizer step", ylabel="perplexity", title="perplexity" + (" of chosen (approx.)" if dpo else ""),
              yscale="log")
    ax[1].legend(fontsize=8)
    lr = _col(h, "learning_rate")
    ax[2].plot(lr["step"], lr["learning_rate"], color=NEUTRAL)
    ax[2].set(xlabel="optimizer step", ylabel="learning rate", title="schedule (warm-up + cosine)")
    tps = _col(h, "tokens_per_s")
    ax[3].plot(tps["step"], tps["tokens_per_s"], marker="o", ms=2, color=SELL_COLOR)
    ax[3].set(xlabel="optimizer step", ylabel="tokens / s", title="throughput")
    mem = _col(h, "peak_memory_mb")
    ax[4].plot(mem["step"], mem["peak_memory_mb"], color=NEUTRAL)
    ax[4].set(xlabel="optimizer step", ylabel="MB", title="peak memory (RSS on CPU, max allocated on GPU)")
    if dpo:
        for key, style in (("rewards/margins", "-"), ("eval_rewards/margins", "--")):
            s = _col(h, key)
            ax[5].plot(s["step"], s[key], ls=style, marker="o", ms=2, color="#2166ac", label=key)
        a2 = ax[5].twinx()
        for key, style in (("rewards/accuracies", "-"), ("eval_rewards/accuracies", "--")):
            s = _col(h, key)
            a2.plot(s["step"], s[key], ls=style, marker="s", ms=2, color=BUY_COLOR, label=key)
        a2.set(ylim=(-0.02, 1.02), ylabel="accuracy")
        ax[5].set(xlabel="optimizer step", ylabel="reward margin", title="DPO rewards (chosen - rejected)")
        lines = ax[5].get_legend_handles_labels()[0] + a2.get_legend_handles_labels()[0]
        labels = ax[5].get_legend_handles_labels()[1] + a2.get_legend_handles_labels()[1]
        ax[5].legend(lines, labels, fontsize=7, loc="lower right")
    else:
        acc = _col(h, "mean_token_accuracy")
        ax[5].plot(acc["step"], acc["mean_token_accuracy"], marker="o", ms=2, label="train")
        eacc = _col(h, "eval_mean_token_accuracy")
        if len(eacc):
            ax[5].plot(eacc["step"], eacc["eval_mean_token_accuracy"], marker="s", ms=4, label="validation")
        ax[5].set(xlabel="optimizer step", ylabel="share", title="next-token accuracy", ylim=(0, 1))
        ax[5].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def evaluation_figure(summary: pd.DataFrame, title: str = "Held-out (test-period) prompts") -> plt.Figure:
    """Verifier shares per model, true share per step, and the market outcome of following each model."""
    s = summary
    names = list(s.index)
    colors = [_COLORS.get(n, "#762a83") for n in names]
    fig, axes = plt.subplots(1, 3, figsize=fit_width(16, 4.4))
    cols = ["true_step_share", "all_steps_true", "self_consistent", "well_formed", "signal_agreement"]
    x = np.arange(len(cols))
    wd = 0.8 / max(len(names), 1)
    for i, (n, c) in enumerate(zip(names, colors)):
        axes[0].bar(x + i * wd, s.loc[n, cols].astype(float), wd, color=c, label=n)
    axes[0].axhline(0.9, color="k", lw=0.6, ls=":")
    axes[0].set_xticks(x + wd * (len(names) - 1) / 2, ["true steps", "all 4 true", "self-consistent", "well formed",
                                                       "agrees w/ ref."], fontsize=8)
    axes[0].set(ylim=(0, 1.05), ylabel="share", title="step verifier (dotted: 90%)")
    axes[0].legend(fontsize=7)
    x = np.arange(len(STEPS))
    for i, (n, c) in enumerate(zip(names, colors)):
        axes[1].bar(x + i * wd, s.loc[n, [f"true_{st}" for st in STEPS]].astype(float), wd, color=c, label=n)
    axes[1].set_xticks(x + wd * (len(names) - 1) / 2, ["technical", "risk", "context", "signal"], fontsize=8)
    axes[1].set(ylim=(0, 1.05), ylabel="share of analyses", title="true share per step")
    m = s["mean_ret"].astype(float)
    if m.notna().any():
        err = np.vstack([(m - s["mean_ret_lo"]).clip(lower=0), (s["mean_ret_hi"] - m).clip(lower=0)]).astype(float)
        axes[2].bar(range(len(names)), m.fillna(0), color=colors, yerr=np.nan_to_num(err), capsize=4)
        for i, n in enumerate(names):
            axes[2].text(i, 0, f"n={int(s.loc[n, 'n_outcomes'])}\nwin {s.loc[n, 'win_rate']:.0%}"
                         if np.isfinite(s.loc[n, "win_rate"]) else "no trades", ha="center", va="bottom", fontsize=7)
        axes[2].axhline(0, color="k", lw=0.6)
        axes[2].set_xticks(range(len(names)), names, fontsize=8, rotation=15)
        axes[2].set(ylabel="return per share (Up price units)", title="following the signals (95% bootstrap CI)")
    else:
        axes[2].text(0.5, 0.5, "no market outcomes\n(no price source)", ha="center", va="center", transform=axes[2].transAxes)
        axes[2].set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curve_figure(probe: pd.DataFrame, title: str = "Tiny base: learning the task") -> plt.Figure:
    """Teacher-forced digit-copy accuracy and greedy true steps (model-only, grounded) per checkpoint, against
    optimiser steps (:class:`workbench.llm.probe.TaskProbe`'s table)."""
    fig, ax = plt.subplots(figsize=fit_width(7.5, 4))
    for col, label, style in (("copy_digit_accuracy", "copied digits right (teacher-forced)", "o-"),
                              ("true_steps_model_only", "true steps, model only", "s-"),
                              ("true_steps_grounded", "true steps, grounded", "^--")):
        if col in probe:
            ax.plot(probe["step"], probe[col], style, label=label)
    ax.axhline(0.6, color="k", lw=0.6, ls=":")
    ax.axhline(0.95, color="k", lw=0.6, ls="--")
    ax.set(xlabel="optimiser steps", ylabel="share", ylim=(0, 1.02), title=title + " (dotted 60 %, dashed 95 %)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
