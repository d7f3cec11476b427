# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (workbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Labeling: triple barriers, the trader's exits, and the optimal trading rule
#
# **What this notebook answers.** Did each trade reach its profit-taking barrier, its stop-loss, or run
# out of time first (the triple-barrier method, López de Prado, *Advances in Financial Machine Learning*,
# ch. 3)? Which barriers does the studied trader behave as if they used? And which barriers a mean-reverting
# price would call for (AFML ch. 13). It writes the trader's trade labels to `data/processed/03_labeling/`.
#
# Method notes: barriers are searched on prices strictly after each event's entry, and a label never reads
# a price after its first touch or its vertical barrier (tested). Asymmetric profit-taking / stop-loss
# multiples are honoured with or without a side (the old mlfinlab used the profit-taking multiple for both
# when no side was given).

# %% tags=["parameters"]
VOL_LOOKBACK = 100  # span of the EWM daily-volatility estimate (AFML snippet 3.1)
CUSUM_H = 0.02  # symmetric CUSUM threshold on log returns (dollar-bar pipeline)
PT_SL = [1.0, 1.0]  # profit-taking and stop-loss multiples of the target
ASSETS = ["btc"]  # underlyings studied; this notebook studies the first (notebook 01 ingests every asset there is)
MIN_RET = 0.005  # minimum target of an event
SLIDER_VERTICAL_BARS = 30  # default vertical barrier of the slider UI, in one-minute bars
SLIDER_H = 0.0015  # CUSUM threshold for the events shown on the simulated BTC path
EXIT_STEP = "60s"  # decision step at which the trader's exits are modelled
N_BOOT = 200  # bootstrap replicates (round trips) of the exit-barrier fit
OU_PATHS = 10000  # Ornstein-Uhlenbeck paths per (profit-taking, stop-loss) cell

# %%

import json

import numpy as np
import pandas as pd
from IPython.display import display

from workbench import config, plots
from workbench import labels as labeling
from workbench.data import external, ingest, simulate
from workbench.labels import ui

P = config.paths().ensure()
OUT = P.processed / "03_labeling"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 30, "display.width", 200)

# %% [markdown]
# ## 1. The classic pipeline on the AFML E-mini dollar bars
#
# Daily volatility (EWM of returns over about one day), symmetric CUSUM events, a one-day vertical
# barrier, profit-taking and stop-loss at one target each. The numbers below are the old mlfinlab tests
# (960 volatility values, the last 0.008968238932170641; 8 events, first target 0.010166261175903357 and
# last 0.006455887663302871; labels {1: 3, −1: 3, 0: 2}).

# %%
close = external.load_afml_dollar_bars()["close"]
vol = labeling.daily_vol(close, lookback=VOL_LOOKBACK)
events = labeling.cusum_filter(close, CUSUM_H)
vertical = labeling.add_vertical_barrier(events, close, num_days=1)
labels = labeling.triple_barrier(close, events, PT_SL, vol, vertical=vertical, min_ret=MIN_RET)
reproduction = pd.Series({"daily vol values": len(vol), "last daily vol": vol.iloc[-1], "CUSUM events": len(events),
                          "events kept": len(labels), "first target": labels["target"].iloc[0],
                          "last target": labels["target"].iloc[-1],
                          "labels": labels["label"].value_counts().sort_index().to_dict()}, dtype=object)
display(reproduction.to_frame("value"))
display(labels)

# %% [markdown]
# ## 2. Barriers by eye: a slider UI on the simulated BTC path
#
# One-minute BTC bars of notebook 02; events from a CUSUM filter, targets from the daily volatility.
# Drag the sliders (profit-taking and stop-loss multiples, vertical barrier in bars) and pick an event (or press
# "next event"): the zoomed panel shows that event's entry, both horizontal barriers, the vertical barrier and
# the first touch; beside it, how many events end at each barrier; below, every event on the whole path with
# the zoomed window shaded. The line above the figure gives the label counts. Everything is redrawn on
# release. The default setting is also saved as a figure (not shown twice), so a headless run produces it.

# %%
feat = pd.read_parquet(P.processed / "02_features" / "features.parquet")
btc = np.exp(feat["log_close"]).dropna()
btc_vol = labeling.daily_vol(btc, lookback=VOL_LOOKBACK)
btc_events = labeling.cusum_filter(btc, SLIDER_H)
fig = ui.barrier_figure(btc, btc_events, PT_SL[0], PT_SL[1], SLIDER_VERTICAL_BARS, btc_vol)
plots.save(fig, "03_barriers_default", close=True)  # saved for headless runs; the live figure is below
ui.barrier_sliders(btc, btc_events, btc_vol, pt=PT_SL[0], sl=PT_SL[1], vertical=SLIDER_VERTICAL_BARS)

# %% [markdown]
# ## 3. Labels for the trader's own trades
#
# Each fill of the simulated trader is labelled on the price path of what it traded: the Up-equivalent
# quotes of its market, which end at the settlement value (1 if the market resolved Up, else 0) when the
# market expires. Barriers are in probability units (the token's price), the vertical barrier is the
# market's end, and the label is a meta-label: 1 if the trade's direction earned money at the first touch.

# %%
data = ingest.WalletData.read(P.processed / "01_ingestion").select(ASSETS[:1])
entries = labeling.fill_entries(data.trades)
trade_labels = labeling.label_trades(data.events, entries, pt_sl=(0.12, 0.15))
trade_labels.to_parquet(OUT / "trade_labels.parquet")
summary = trade_labels.groupby("barrier")["label"].agg(["size", "mean"]).rename(
    columns={"size": "fills", "mean": "share profitable"})
display(summary)
display(plots.readable_times(trade_labels.head()))

# %% [markdown]
# ## 4. Which barriers explain the trader's exits?
#
# From the trader's closed round trips (a position opened from flat and closed back to flat, or held to
# settlement), we model each decision step as "exit or not" with two rates: one once a profit-taking,
# stop-loss or holding-time barrier has been reached, one before. The maximum-likelihood fit over the
# whole grid of levels, its confidence region and a bootstrap over round trips tell which levels the
# trader behaves as if they used. On the simulated data the true hidden levels are known (read from the
# simulator's truth folder for this comparison only).

# %%
trips = labeling.round_trips(data.positions)
fit = labeling.fit_exit_barriers(data.events, trips, data.positions, step=EXIT_STEP, n_boot=N_BOOT)
print(fit.summary())
display(fit.intervals)
wallet = data.events["wallet"].iloc[0]
truth_cfg = simulate.load_sim_config(P.raw, wallet).trader
truth = (truth_cfg.take_profit, truth_cfg.stop_loss)
print(f"hidden policy: take profit +{truth[0]:.2f}, stop loss -{truth[1]:.2f} (exits are probabilistic, not a rule)")
best = fit.best
pnl = labeling.barrier_pnl(data.events, trips, float(best["pt"]), float(best["sl"]), float(best["holding_s"]),
                           step=EXIT_STEP)
display(pd.DataFrame({"trader": [pnl["trader_pnl"].sum()], "fitted barrier rule": [pnl["rule_pnl"].sum()]},
                     index=["P&L on the same entries (USDC)"]))
display(pnl["rule_exit_reason"].value_counts().to_frame("rule exits"))
plots.save(ui.exit_fit_figure(fit, truth=truth, pnl=pnl), "03_exit_fit")
# the fitted levels (not the simulator's) are what notebook 04's trader features measure positions against
exit_barriers = {"take_profit": float(best["pt"]), "stop_loss": float(best["sl"]),
                 "holding_s": None if not np.isfinite(best["holding_s"]) else float(best["holding_s"]),
                 "intervals": fit.intervals.replace([np.inf], None).to_dict()}
(OUT / "exit_barriers.json").write_text(json.dumps(exit_barriers, indent=2, default=float));

# %% [markdown]
# **Reading the fit.** The levels at the maximum of the likelihood, and how flat the likelihood is around
# them (the confidence region), say how sharply the trader's exits point to a barrier rule. Replaying the
# fitted barriers on the same entries shows how much of the trader's P&L a pure barrier rule explains:
# the rest comes from the trader's other exit reasons (here, trading on mispricing).

# %% [markdown]
# ## 5. The optimal trading rule on Ornstein-Uhlenbeck paths (AFML ch. 13)
#
# Prices follow `P_t = (1 − φ) E[P] + φ P_{t−1} + σ ε_t` with `φ = 2^(−1/τ)` (τ the half-life), σ = 1,
# starting at 0, with a long-run forecast `E[P]`. For each rule on a 21 × 21 grid of profit-taking and
# stop-loss levels (0.5 to 10) we exit at the first touch or after 100 steps, and compute the Sharpe ratio
# of the exit P&L over the same simulated paths. The book finds: with no forecast (0) and a short
# half-life, small profit-taking and large stop-loss; with forecast 5 and half-life 5, profit-taking around
# 6; with forecast 5 and half-life 25, around 3.

# %%
cases = [(0.0, 5.0), (0.0, 25.0), (5.0, 5.0), (5.0, 25.0), (10.0, 5.0), (10.0, 25.0)]
grids = [labeling.ou_barrier_grid(f, tau, n_paths=OU_PATHS, seed=7) for f, tau in cases]
optima = pd.DataFrame([labeling.ou_optimum(g) for g in grids], index=pd.MultiIndex.from_tuples(cases, names=["forecast", "half-life"]))
display(optima)
plots.save(ui.ou_heatmap_panel(grids), "03_ou_heatmaps");
