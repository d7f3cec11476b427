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
# # 04 · The trader twin: a Decision Transformer that imitates the trader and can be steered
#
# **What this notebook answers.** Can a model learn, from the trader's past trades only, to act like the
# trader (a *twin*), and can it be steered towards a target return? We train a Decision Transformer on
# (return-to-go, state, action) sequences and measure it honestly: on a later, held-out period; against
# majority-class and behaviour-cloning baselines on the same states; and, because the default data is
# simulated, against the trader's true hidden policy.
#
# **Design choices.** One step is one minute, starting 5 s after each minute's BTC bar closes — the instant
# the simulated trader decides (its decision interval is 60 s). The design's 15-minute step would fold
# about fifteen decisions, in both directions, into one action; the step is a parameter. Windows hold 128
# steps (about two hours), RTG_t is the trader's return from step t to the window's end (×100, in % of a
# 5,000 USDC notional), the split is chronological with a 128-step gap, and every state feature uses data
# strictly before its step.

# %% tags=["parameters"]
STEP = "1min"  # step length (pandas offset)
STEP_OFFSET = "5s"  # steps start this long after each grid point (the trader's decision instants)
WINDOW = 128  # steps per sequence
TRAIN_STRIDE = 64  # step between training windows (validation and test windows do not overlap)
TRAIN_FRACTION = 0.6  # first share of steps for training
VAL_FRACTION = 0.2  # next share for validation; the rest is the test period
GAP = 128  # steps dropped between the parts
NOTIONAL = 5000.0  # USDC the trader commits: rewards and P&L features are fractions of it
D_MODEL = 128  # width of the transformer
N_LAYERS = 6  # causal transformer layers
N_HEADS = 8  # attention heads
DROPOUT = 0.1  # dropout
EPOCHS = 25  # maximum epochs
PATIENCE = 5  # early stopping on validation loss
BATCH_SIZE = 32  # windows per batch
LEARNING_RATE = 3e-4  # peak AdamW learning rate
WARMUP_STEPS = 50  # linear warm-up steps
BALANCED_CLASSES = True  # weight the cross-entropy by inverse class frequency (macro-F1 is the target)
RTG_QUANTILES = [0.1, 0.25, 0.5, 0.75, 0.9]  # target RTGs of the steering sweep, as training quantiles
SEED = 7  # seed of training and data loading
REAL_WALLET = "0x6031b6eed1c97e853c6e0f03ad3ce3529351f96d"  # real wallet of notebook 01 (gabagool22)

# %%
import json

import numpy as np
import pandas as pd
import torch
from IPython.display import display
from scipy.stats import spearmanr

from workbench import config, plots, twin
from workbench.data import ingest, simulate
from workbench.data.simulate import ACTIONS
from workbench.twin import backtest, figures, study
from workbench.twin import steps as sequences

torch.manual_seed(SEED)
torch.set_num_threads(max(1, torch.get_num_threads()))
P = config.paths().ensure()
OUT = P.processed / "04_twin"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 30, "display.width", 200)
data01 = ingest.WalletData.read(P.processed / "01_ingestion")
features = pd.read_parquet(P.processed / "02_features" / "features.parquet")
bars = ingest.rebar(data01, STEP, STEP_OFFSET)
steps = sequences.build_steps(data01.events, data01.positions, bars, features, notional=NOTIONAL)
data = study.prepare(steps, train=TRAIN_FRACTION, val=VAL_FRACTION, gap=GAP, window=WINDOW, train_stride=TRAIN_STRIDE)
wallet = data01.events["wallet"].iloc[0]
split_times = {part: (str(steps.index[rows[0]]), str(steps.index[rows[-1]]))
               for part in ("train", "val", "test") for rows in [data.rows(part)]}
display(pd.DataFrame(split_times, index=["from", "to"]).T.assign(
    steps=[len(data.rows(p)) for p in ("train", "val", "test")],
    windows=[len(data.windows[p]["mask"]) for p in ("train", "val", "test")]))

# %% [markdown]
# ## 1. The state: 17 causal features
#
# The design's groups: market microstructure (fractionally differenced log price with notebook 02's *d**,
# Yang-Zhang volatility, volume z-score), technical context (RSI, MACD histogram, Bollinger width), time,
# and the agent's own state (unrealised P&L, P&L as % of the position, inventory, position-size ratio,
# time since entry). Four time features are replaced, because they carry nothing here while the
# replacements are what a trader of 15-minute binary markets reacts to: the design's hour sine/cosine
# duplicates the time of day; its day-of-week sine/cosine sees four weekly cycles in a month of markets
# that are identical every day except for their volatility, which is already a feature. In their place:
# the **time to expiry**, the **fair-value gap** (the Up probability implied by BTC's move since the market
# opened and the current volatility, minus the quoted Up mid), the last minute's **momentum** (return over
# volatility) and the **Up price**. All are normalised with statistics of the training period only.

# %%
groups = pd.Series({f: g for g, fs in sequences.FEATURE_GROUPS.items() for f in fs}, name="group")
display(steps[list(sequences.STATE_FEATURES)].describe().T[["mean", "std", "min", "max"]].join(groups))

# %% [markdown]
# ## 2. Actions: five classes from the trader's flow
#
# Each step's action is the class of the trader's signed Up-equivalent flow: HOLD when it did not trade,
# BUY / SELL, and STRONG_BUY / STRONG_SELL above a size threshold fitted on the training period (the split
# of log sizes that minimises within-class variance). On the simulated data we can check the classes
# against the actions the hidden policy actually drew.

# %%
decisions, _ = simulate.load_truth(P.raw, wallet)
balance = pd.DataFrame({part: sequences.class_balance(data.actions[data.rows(part)]) for part in ("train", "val", "test")})
display(balance.round(3))
print(f"STRONG threshold: {data.thresholds.strong:.1f} shares")
dec_t = pd.to_datetime(decisions["t"], unit="ms", utc=True)
inferred = pd.Series(data.actions, index=steps.index).reindex(dec_t)
known = inferred.notna().to_numpy()
print(f"inferred classes agree with the hidden policy's drawn actions on {np.mean(inferred.to_numpy()[known] == decisions['action_id'].to_numpy()[known]):.1%} of decisions")

# %% [markdown]
# **How much of the trader's policy can a twin see?** The hidden policy reacts to its mispricing signal,
# 60-second momentum, inventory and unrealised P&L. A linear fit of each of them on the 17 states shows
# what the recorded data can reveal: the mispricing depends on BTC's moves within the last seconds (a
# binary option's fair value moves by several cents in a few seconds), which one-minute bars do not
# contain. The trader has an informational edge no twin trained on these files can copy; the hidden
# policy's own accuracy below is therefore a ceiling the twin cannot be expected to reach.

# %%
display(study.hidden_score_r2(data, decisions).round(3).to_frame())

# %% [markdown]
# ## 3. Baselines and the twin
#
# Baselines on exactly the same states: majority class, behaviour cloning by logistic regression (class
# weights balanced) and by a small MLP, and logistic regression that also sees the previous action (the
# twin does). The twin: separate RTG, state and previous-action encoders, concatenated and projected to
# `D_MODEL`, learned positions, `N_LAYERS` causal layers, an action head and an RTG head; loss = 1.0 ×
# cross-entropy + 0.1 × MSE(RTG), AdamW with warm-up and cosine decay, gradient clipping, early stopping on
# validation loss. The checkpoint (`models/trader_twin/best_model.pt`, with its configuration and the
# normalisation statistics) is reloaded before evaluation.

# %%
baselines = study.fit_baselines(data, seed=SEED)
W = data.windows
train_loader, val_loader = study.loaders(data, BATCH_SIZE, SEED)
model = twin.TraderDecisionTransformer(state_dim=len(sequences.STATE_FEATURES), action_dim=len(ACTIONS), d_model=D_MODEL,
                                     n_layers=N_LAYERS, n_heads=N_HEADS, dropout=DROPOUT, max_len=WINDOW)
weights = twin.balanced_class_weights(W["train"]["actions"], W["train"]["mask"]) if BALANCED_CLASSES else None
trainer = twin.TraderTrainer(model, learning_rate=LEARNING_RATE, warmup_steps=WARMUP_STEPS, class_weights=weights, seed=SEED)
history = trainer.fit(train_loader, val_loader, epochs=EPOCHS, patience=PATIENCE,
                      checkpoint_dir=P.models / "trader_twin", normalization=data.normalizer.to_dict())
display(history.round(4))
plots.save(figures.training_curves(history), "04_training_curves");

# %%
inference = twin.TraderInference.from_checkpoint(P.models / "trader_twin" / "best_model.pt")
target = study.median_target(data)
check = inference.predict_with_target_rtg(W["test"]["states"][0], target, actions=W["test"]["actions"][0])
direct = twin.TraderInference(trainer.model).predict_with_target_rtg(W["test"]["states"][0], target, actions=W["test"]["actions"][0])
print(f"reloaded checkpoint: max |logit difference| = {np.abs(check['action_logits'] - direct['action_logits']).max():.2e}")
print(f"default target RTG (training median of window returns): {target:.3f}")

# %% [markdown]
# ## 4. Test period: accuracy, macro-F1, the hidden policy
#
# The twin is scored in the **causal** mode: it is given the target RTG at each window's start and sees
# the RTG fall by the rewards already realised, plus the trader's past actions (known at decision time).
# The **hindsight** row feeds the true return-to-go, which contains the reward of the step being predicted:
# it uses the future and is shown only as an upper bound of what RTG conditioning carries.

# %%
y_test = data.actions[data.rows("test")]
preds = {"twin (causal RTG)": study.twin_predictions(inference, data, "test", "causal", target),
         "twin (hindsight RTG, uses the future)": study.twin_predictions(inference, data, "test", "hindsight", target)}
preds.update(study.baseline_predictions(baselines, data, "test"))
table = study.hidden_policy_comparison(data, decisions, "test", preds)
display(table.round(3))
table.to_csv(OUT / "test_scores.csv")
print(study.verdict(table, "twin (causal RTG)", ["BC logistic", "BC MLP", "majority class"]))
cms = {name: study.scores(y_test, preds[name])["confusion"] for name in ("twin (causal RTG)", "BC logistic", "BC MLP")}
plots.save(figures.confusion_matrices(cms, ACTIONS), "04_confusion");

# %% [markdown]
# ## 5. Steering by the target return, and the twin trading alone
#
# The twin was trained with class weights (so that rare BUY/SELL classes count for macro-F1); to *act*, its
# logits are shifted by −log(weight) (logit adjustment, Menon et al., 2021), which recovers the trader's
# own class frequencies. Its most likely action is then HOLD almost everywhere — as it is for the hidden
# policy, which trades by drawing from its probabilities — so the twin acts the same way: it **samples**
# from its adjusted distribution (seeded). For targets at quantiles of the training windows' returns, we
# (a) look at the mean action distribution the twin predicts on the test period and (b) let the twin trade
# alone on the test period's recorded quotes, one agent per target, with its own position feeding its own
# agent-state features (`workbench.backtest`).
# Orders are sized like the trader's typical order of each class; costs are the quoted spread, no fees.
# The Sharpe ratio is that of per-market P&L (not annualised).
# If steering works, the realised return should rise with the target (Spearman correlation).

# %%
train_rtg0 = W["train"]["rtg"][:, 0]
targets = [float(np.quantile(train_rtg0, q)) for q in RTG_QUANTILES]
adjustment = study.logit_adjustment(weights)
distribution = study.rtg_sweep_distribution(inference, data, "test", targets, adjustment)
display(distribution.round(3))
test_steps = steps.iloc[data.rows("test")]
book = backtest.QuoteBook(data01.events)
execution = backtest.ExecutionModel.fit(steps["flow"].to_numpy()[data.masks["train"]], data.actions[data.masks["train"]])
names = [f"twin RTG={t:+.2f}" for t in targets]
policy = study.TwinPolicy(inference.model, targets, data.rtg_scale, horizon=WINDOW, logit_adjustment=adjustment, seed=SEED)
twin_run = backtest.replay(test_steps, policy, names, book, execution, data.normalizer, notional=NOTIONAL)
realised = pd.DataFrame({"target_rtg": targets,
                         "realised": [study.window_returns(twin_run.equity[:, j], NOTIONAL, WINDOW).mean() for j in range(len(targets))]})
rho = spearmanr(realised["target_rtg"], realised["realised"]).statistic
display(realised.round(3))
print(f"Spearman(target, realised) = {rho:+.2f} over {len(targets)} targets")
plots.save(figures.rtg_steering(distribution, realised, rho), "04_rtg_steering");

# %%
others = backtest.replay(test_steps, backtest.ClassifierPolicy(baselines["BC logistic"]), ["BC logistic alone"], book,
                         execution, data.normalizer, notional=NOTIONAL)
hold = backtest.replay(test_steps, backtest.ConstantPolicy(), ["always HOLD"], book, execution, data.normalizer, notional=NOTIONAL)
trader_equity = np.cumsum(test_steps["reward"].to_numpy() * NOTIONAL)
summary = pd.concat([twin_run.summary(), others.summary(), hold.summary(),
                     pd.DataFrame(backtest.summarize_equity(trader_equity, test_steps["slug"].to_numpy(), NOTIONAL),
                                  index=["the trader (recorded)"])])
display(summary.round(3))
summary.to_csv(OUT / "backtest_summary.csv")
mid = names[len(names) // 2]
curves = {"the trader (recorded)": pd.Series(trader_equity, index=test_steps.index),
          mid: pd.Series(twin_run.equity[:, names.index(mid)], index=test_steps.index),
          "BC logistic alone": pd.Series(others.equity[:, 0], index=test_steps.index)}
plots.save(figures.equity_curves(curves, "Test period: cumulative P&L"), "04_backtest");

# %% [markdown]
# **Reading the backtest.** The recorded trader trades on its informational edge (second-level BTC moves)
# and sizes with conviction; the twin sees one-minute bars and trades the trader's *typical* size of each
# class. A twin that imitates the trader's visible behaviour — how often and in which direction it
# trades — does not inherit an edge it cannot observe, and pays the spread on every trade: compare its
# P&L with the trader's and with holding above, and read the Spearman correlation for what steering by a
# target return achieves here, before reading anything into the imitation scores.

# %%
steps.to_parquet(OUT / "steps.parquet")
meta = {"step": STEP, "offset": STEP_OFFSET, "window": WINDOW, "notional": NOTIONAL, "rtg_scale": data.rtg_scale,
        "train_fraction": TRAIN_FRACTION, "val_fraction": VAL_FRACTION, "gap": GAP, "train_stride": TRAIN_STRIDE,
        "class_weights": None if weights is None else [float(x) for x in weights],
        "split": {"train_end": data.split.train_end, "val_start": data.split.val_start, "val_end": data.split.val_end,
                  "test_start": data.split.test_start, "n": data.split.n},
        "thresholds": data.thresholds.to_dict(), "default_target": target, "targets": targets,
        "checkpoint": str(P.models / "trader_twin" / "best_model.pt"), "spearman_target_realised": rho}
(OUT / "twin.json").write_text(json.dumps(meta, indent=2));

# %% [markdown]
# ## 6. The real wallets
#
# The same step table can be built from notebook 01's real Data-API exports, but they are eight hours of
# two wallets with no quotes or BTC bars: the market features are missing, and the data give a handful of
# 128-step windows — far too few to train or evaluate a twin (the simulated study above uses hundreds).
# What can be said from them is descriptive: how often the wallet trades per minute and how its flow
# splits into classes.

# %%
real = ingest.WalletData.read(P.processed / "01_ingestion" / "real")
real_bars = ingest.rebar(real, STEP)
display(study.real_wallet_summary(real.positions, real_bars, REAL_WALLET, WINDOW).to_frame("real wallet"))
