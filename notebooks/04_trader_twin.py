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
# # 04 · The trader twin: a Decision Transformer that imitates the trader, measured against what the data allow
#
# **What this notebook answers.** Can a model learn, from the trader's past trades only, to act like the trader
# (a *twin*), and can it be steered towards a target return? We train a Decision Transformer on (return-to-go,
# state, action) sequences and measure it honestly: on a later, held-out period; against the strongest cheap
# baseline on the same inputs (gradient boosting on the state and a flattened short history), behaviour cloning
# and the majority class; and, because the default data is simulated, against two **ceilings**: the hidden
# policy's own probabilities, and that policy averaged over what the files cannot show (the BTC price in the
# seconds after the last bar closed). Every model and ceiling is scored with **one decision rule** for
# macro-F1 (prior-corrected, fitted on validation), with log-loss and accuracy beside it and intervals from a
# bootstrap over markets.
#
# **Design choices.** One step is one minute, starting 5 s after each minute's BTC bar closes — the instant the
# simulated trader decides. Windows hold 128 steps (about two hours); training windows overlap (stride 16). The
# split is chronological with a 128-step gap. Every state feature uses data strictly before its step.

# %% tags=["parameters"]
STEP = "1min"  # step length (pandas offset)
STEP_OFFSET = "5s"  # steps start this long after each grid point (the trader's decision instants)
WINDOW = 128  # steps per sequence
ASSETS = ["btc"]  # underlyings studied; this notebook studies the first (notebook 01 ingests every asset there is)
TRAIN_STRIDE = 16  # step between training windows (validation and test windows do not overlap)
TRAIN_FRACTION = 0.6  # first share of steps for training
VAL_FRACTION = 0.2  # next share for validation; the rest is the test period
GAP = 128  # steps dropped between the parts
NOTIONAL = 5000.0  # USDC the trader commits: rewards and P&L features are fractions of it
FEATURES = "trader"  # state features of the twin: trader (what the trader acts on) or seed (the design's 17)
D_MODEL = 64  # width of the transformer
N_LAYERS = 3  # causal transformer layers
N_HEADS = 4  # attention heads
DROPOUT = 0.1  # dropout
RTG_MODE = "window"  # window: every step is conditioned on the window's return; to_go: the paper's return-to-go
RTG_DROPOUT = 0.5  # share of training windows without a target (a learned no-target input instead)
EPOCHS = 30  # maximum epochs
PATIENCE = 6  # early stopping on the validation action cross-entropy
SELECT_ON = "action_ce"  # what early stopping and the checkpoint follow: action_ce, macro_f1 or loss
BATCH_SIZE = 32  # windows per batch
LEARNING_RATE = 0.0003  # peak AdamW learning rate
WARMUP_STEPS = 50  # linear warm-up steps
N_TARGETS = 20  # target returns of the steering test (quantiles of the training windows' returns)
N_BOOT = 500  # bootstrap replicates over markets for every interval
N_MC = 256  # Monte Carlo draws per decision for the observable-information ceiling
SEED = 7  # seed of training, data loading, sampling and the bootstraps
REAL_WALLET = "0x6031b6eed1c97e853c6e0f03ad3ce3529351f96d"  # real wallet of notebook 01 (gabagool22)

# %%
import json
import time

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from workbench import config, plots, twin
from workbench.data import ingest, simulate
from workbench.data.simulate import ACTIONS
from workbench.twin import backtest, baselines, ceiling, evaluate, figures, steering, study
from workbench.twin import steps as sequences

torch.manual_seed(SEED)
P = config.paths().ensure()
OUT = P.processed / "04_twin"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 30, "display.width", 200)
t_start = time.perf_counter()
data01 = ingest.WalletData.read(P.processed / "01_ingestion").select(ASSETS[:1])
features = pd.read_parquet(P.processed / "02_features" / "features.parquet")
levels = sequences.ExitLevels.from_json(P.processed / "03_labeling" / "exit_barriers.json")
bars = ingest.rebar(data01, STEP, STEP_OFFSET)
steps = sequences.build_steps(data01.events, data01.positions, bars, features, notional=NOTIONAL, levels=levels)
split_kw = dict(train=TRAIN_FRACTION, val=VAL_FRACTION, gap=GAP, window=WINDOW, train_stride=TRAIN_STRIDE,
                rtg_scale="auto", levels=levels, rtg_mode=RTG_MODE)
data = study.prepare(steps, features=FEATURES, **split_kw)
wallet = data01.events["wallet"].iloc[0]
split_times = {part: (str(steps.index[rows[0]]), str(steps.index[rows[-1]]))
               for part in ("train", "val", "test") for rows in [data.rows(part)]}
display(pd.DataFrame(split_times, index=["from", "to"]).T.assign(
    steps=[len(data.rows(p)) for p in ("train", "val", "test")],
    windows=[len(data.windows[p]["mask"]) for p in ("train", "val", "test")]))
print(f"exit levels from notebook 03: take profit +{levels.take_profit:.2f}, stop loss -{levels.stop_loss:.2f} per share; "
      f"late window fitted on training: last {data.late_window_s:.0f} s; RTG scale {data.rtg_scale:.1f}")

# %% [markdown]
# ## 1. Two states: the design's 17 features, and what the trader acts on
#
# The design's 17 features (market microstructure, technical context, time, the agent's own state) stay
# available as the **seed** set. The **trader** set holds what a trader of these markets reacts to, all causal:
# the mispricing against a fair value priced from the last bar's own time stamp (`edge_obs`), the last minute's
# momentum, the Up quote and its change since the last step, the time to expiry and a late-window flag (the
# window fitted on the training period's trading rate), and the position against the take-profit / stop-loss
# levels that notebook 03 fitted to the trader's exits — unrealised P&L per share, the distances to both
# levels, the direction that flattens a position once a level is reached, inventory and the orders placed so far
# in the market. A linear fit of each hidden policy input on each state shows how much of it the files reveal.

# %%
display(steps[list(sequences.TRADER_FEATURES[:5]) + list(sequences.TRADER_FEATURES[6:])].describe().T[["mean", "std", "min", "max"]])
decisions, _ = simulate.load_truth(P.raw, wallet, data01.events["underlying"].iloc[0])
sim_cfg = simulate.load_sim_config(P.raw, wallet, data01.events["underlying"].iloc[0])
seed_data = study.prepare(steps, features="seed", **split_kw)
display(pd.DataFrame({"seed (17)": study.hidden_score_r2(seed_data, decisions),
                      "trader (12)": study.hidden_score_r2(data, decisions)}).round(3))

# %% [markdown]
# ## 2. Actions: five classes from the trader's flow
#
# Each step's action is the class of the trader's signed Up-equivalent flow: HOLD when it did not trade,
# BUY / SELL, and STRONG_BUY / STRONG_SELL above a size threshold fitted on the training period. On the simulated
# data we can check the classes against the actions the hidden policy actually drew.

# %%
balance = pd.DataFrame({part: sequences.class_balance(data.actions[data.rows(part)]) for part in ("train", "val", "test")})
display(balance.round(3))
print(f"STRONG threshold: {data.thresholds.strong:.1f} shares")
dec_t = pd.to_datetime(decisions["t"], unit="ms", utc=True)
inferred = pd.Series(data.actions, index=steps.index).reindex(dec_t)
known = inferred.notna().to_numpy()
print(f"inferred classes agree with the hidden policy's drawn actions on "
      f"{np.mean(inferred.to_numpy()[known] == decisions['action_id'].to_numpy()[known]):.1%} of decisions")

# %% [markdown]
# ## 3. Baselines, the twin, and the boosted twin
#
# Baselines on exactly the twin's inputs: the majority class, behaviour cloning by logistic regression and by an
# MLP, and **gradient boosting** (LightGBM) on the state plus the previous two states and three actions (the
# history a transformer sees, flattened), early-stopped on validation. The **twin** is the Decision Transformer:
# RTG, state and previous-action encoders, `N_LAYERS` causal layers, an action head and an RTG head. It is trained
# to imitate: early stopping and the checkpoint follow the validation action cross-entropy; RTG is scaled to unit
# variance; each training window is conditioned on its whole return (`RTG_MODE = "window"`), so no step's input
# contains its own reward — with the paper's return-to-go, a window's last step has RTG = its own reward, which
# gives the action away in training but never at deployment; and half the training windows see no target at all
# (`RTG_DROPOUT`), so imitation does not lean on it. No class weights: the decision rule below handles the rare
# classes. The **boosted twin** also receives the boosting model's probabilities as inputs (out of fold on the
# training period, so they are as noisy there as later).

# %%
fits = {"trader": baselines.fit_baselines(data, seed=SEED), "seed": baselines.fit_baselines(seed_data, seed=SEED)}
W = data.windows
prior = evaluate.class_prior(data.actions[data.rows("train")])

twin_kw = dict(d_model=D_MODEL, n_layers=N_LAYERS, n_heads=N_HEADS, dropout=DROPOUT, rtg_dropout=RTG_DROPOUT, epochs=EPOCHS,
               patience=PATIENCE, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, warmup_steps=WARMUP_STEPS,
               select_on=SELECT_ON, seed=SEED)
trainer, history = study.train_twin(data, P.models / "trader_twin", **twin_kw)
gbm_probs, booster = baselines.stacked_gbm(data, seed=SEED)
boosted_data, boost_stats = study.augment(data, gbm_probs)
boosted_trainer, boosted_history = study.train_twin(boosted_data, P.models / "trader_twin_boosted", **twin_kw)
display(pd.DataFrame({"twin": history.iloc[-1], "boosted twin": boosted_history.iloc[-1]}).T.round(4))
print(f"best epochs: twin {trainer.best_epoch}, boosted twin {boosted_trainer.best_epoch}")
plots.save(figures.training_curves(history), "04_training_curves");

# %%
inference = twin.TraderInference.from_checkpoint(P.models / "trader_twin" / "best_model.pt")
boosted_inference = twin.TraderInference.from_checkpoint(P.models / "trader_twin_boosted" / "best_model.pt")
target = study.median_target(data)
check = inference.predict(W["test"]["states"][0], target, actions=W["test"]["actions"][0])
direct = twin.TraderInference(trainer.model).predict(W["test"]["states"][0], target, actions=W["test"]["actions"][0])
print(f"reloaded checkpoint: max |logit difference| = {np.abs(check['action_logits'] - direct['action_logits']).max():.2e}")
print(f"default target (training median of window returns): {target:.3f}")

# %% [markdown]
# ## 4. Test period: every model against the ceilings, with one decision rule
#
# Each model gives action probabilities per test step; the twin is given the target at each window's start
# (causal). **Decision rule**: predict `argmax p_k / prior_k^a`, with the training class frequencies as prior and
# the exponent `a` fitted on the validation period for each model — the argmax (`a = 0`) almost never predicts a
# rare class, which caps macro-F1 even for the true probabilities. **Ceilings** (simulated data only, evaluation
# only): *full* = the hidden policy's probabilities; *observable* = that policy averaged by Monte Carlo over the
# seconds the files do not show (see `workbench.twin.ceiling`). On a real wallet no ceiling exists and the
# baselines are the yardstick. Intervals: bootstrap over the test period's markets.

# %%
parts = ("val", "test")
y = {p: data.actions[data.rows(p)] for p in parts}
groups = data.steps["slug"].to_numpy()[data.rows("test")]
probs = {"twin": [study.twin_probabilities(inference, data, p, "causal", target) for p in parts],
         "boosted twin": [study.twin_probabilities(boosted_inference, boosted_data, p, "causal", target) for p in parts]}
probs.update({name: [b.proba(data, p) for p in parts] for name, b in fits["trader"].items()})
probs.update({f"{name} (seed features)": [b.proba(seed_data, p) for p in parts] for name, b in fits["seed"].items()
              if name != "majority class"})
index = {p: data.steps.index[data.rows(p)] for p in parts}
probs["ceiling: observable information"] = [ceiling.observable_probabilities(decisions, sim_cfg, index[p], n_mc=N_MC, seed=SEED)
                                            for p in parts]
probs["ceiling: full (hidden policy)"] = [ceiling.full_probabilities(decisions, index[p]) for p in parts]
table, scored = evaluate.score_table(y["val"], y["test"], probs, groups, prior, n_boot=N_BOOT, seed=SEED)
display(table.round(3))
table.to_csv(OUT / "test_scores.csv")
best_baseline = max(["gradient boosting", "BC MLP", "BC logistic"], key=lambda n: scored[n]["macro_f1"])
comparisons = {f"{m} - {best_baseline}": evaluate.compare(y["test"], probs[m][1], probs[best_baseline][1], groups, prior,
                                                         scored[m]["exponent"], scored[best_baseline]["exponent"],
                                                         n_boot=N_BOOT, seed=SEED)
               for m in ("twin", "boosted twin")}
display(pd.DataFrame(comparisons).T)
obs = scored["ceiling: observable information"]["macro_f1"]
for m in ("twin", "boosted twin"):
    r, c = scored[m], comparisons[f"{m} - {best_baseline}"]
    beats = "beats" if c["ci"][0] > 0 else ("loses to" if c["ci"][1] < 0 else "is level with")
    print(f"{m}: macro-F1 {r['macro_f1']:.3f} {r['macro_f1_ci']}, {r['macro_f1'] / obs:.0%} of the observable ceiling "
          f"({obs:.3f}); it {beats} {best_baseline} ({scored[best_baseline]['macro_f1']:.3f}): difference "
          f"{c['difference']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}], smallest detectable {c['min_detectable']:.3f}")
cms = {name: evaluate.confusion(y["test"], evaluate.decide(probs[name][1], prior, scored[name]["exponent"]))
       for name in ("twin", "gradient boosting", "ceiling: observable information")}
plots.save(figures.confusion_matrices(cms, ACTIONS), "04_confusion");

# %% [markdown]
# ## 5. Steering by the target return
#
# One twin per target, at `N_TARGETS` quantiles of the training windows' returns, trades alone on the test
# period's recorded quotes, sampling its actions (as the trader does) with its own position feeding its own
# agent-state features (`workbench.twin.backtest`). Orders are sized like the trader's typical order of each
# class; costs are the quoted spread, no fees. If steering works, the realised return rises with the target:
# the Spearman correlation over the targets, with an interval from the market bootstrap and the chance of a
# value this high with no steering at all.

# %%
train_rtg0 = W["train"]["rtg"][:, 0]
targets = [float(np.quantile(train_rtg0, q)) for q in np.linspace(0.02, 0.98, N_TARGETS)]
test_steps = data.steps.iloc[data.rows("test")]
book = backtest.QuoteBook(data01.events)
execution = backtest.ExecutionModel.fit(steps["flow"].to_numpy()[data.masks["train"]], data.actions[data.masks["train"]])
names = [f"twin target {t:+.2f}" for t in targets]
replay_kw = dict(notional=NOTIONAL, levels=data.levels)
policy = study.TwinPolicy(inference.model, targets, data.rtg_scale, horizon=WINDOW, seed=SEED, rtg_mode=data.rtg_mode)
sweep = backtest.replay(test_steps, policy, names, book, execution, data.normalizer, **replay_kw)
sweep_pnl = steering.market_pnl(sweep.equity, sweep.slugs)
steer = steering.steering(sweep_pnl, targets, NOTIONAL, n_boot=N_BOOT, seed=SEED)
realised = steering.returns_with_ci(sweep_pnl, NOTIONAL, names, n_boot=N_BOOT, seed=SEED).assign(
    target=targets, trade_share=sweep.summary()["trade_steps"].to_numpy())
display(realised.round(3))
activity = steering.rank_correlation(np.abs(targets), realised["trade_share"].to_numpy())
print(study.steering_verdict(steer), f"Spearman(|target|, share of steps traded) = {activity:+.2f}.")
plots.save(figures.steering_figure(realised), "04_rtg_steering");

# %% [markdown]
# ## 6. The twin, the booster and the recorded trader on the test period
#
# The same replay for the twin at its median target (sampling, as in the sweep, and acting by the decision rule
# of section 4), the boosted twin and gradient boosting by the same rule, behaviour cloning, always HOLD, and the
# recorded trader. Returns are fractions of the notional over the whole test period, with intervals over markets.

# %%
def_rule = {m: -scored[m]["exponent"] * np.log(prior) for m in ("twin", "boosted twin", "gradient boosting", "BC logistic")}
runs = [
    backtest.replay(test_steps, study.TwinPolicy(inference.model, [target], data.rtg_scale, horizon=WINDOW, seed=SEED,
                                                 rtg_mode=data.rtg_mode), ["twin (sampled)"], book, execution,
                    data.normalizer, **replay_kw),
    backtest.replay(test_steps, study.TwinPolicy(inference.model, [target], data.rtg_scale, horizon=WINDOW, sample=False,
                                                 rtg_mode=data.rtg_mode, logit_adjustment=def_rule["twin"].astype(np.float32)),
                    ["twin"], book, execution, data.normalizer, **replay_kw),
    backtest.replay(test_steps, study.BoostedTwinPolicy(
        study.TwinPolicy(boosted_inference.model, [target], data.rtg_scale, horizon=WINDOW, sample=False,
                         rtg_mode=data.rtg_mode, logit_adjustment=def_rule["boosted twin"].astype(np.float32)),
        booster, boost_stats), ["boosted twin"], book, execution, data.normalizer, **replay_kw),
    backtest.replay(test_steps, baselines.ProbabilityPolicy(fits["trader"]["gradient boosting"], sample=False,
                                                           adjustment=def_rule["gradient boosting"]),
                    ["gradient boosting"], book, execution, data.normalizer, **replay_kw),
    backtest.replay(test_steps, baselines.ProbabilityPolicy(fits["trader"]["BC logistic"], sample=False,
                                                           adjustment=def_rule["BC logistic"]),
                    ["BC logistic"], book, execution, data.normalizer, **replay_kw),
    backtest.replay(test_steps, backtest.ConstantPolicy(), ["always HOLD"], book, execution, data.normalizer, **replay_kw),
]
trader_pnl = steering.market_pnl(np.cumsum(test_steps["reward"].to_numpy() * NOTIONAL), test_steps["slug"].to_numpy())
pnl = pd.concat([steering.market_pnl(r.equity, r.slugs).set_axis(r.names, axis=1) for r in runs] + [
    trader_pnl.set_axis(["the trader (recorded)"], axis=1)], axis=1)
returns = steering.returns_with_ci(pnl, NOTIONAL, list(pnl.columns), n_boot=N_BOOT, seed=SEED)
display(returns.round(3))
returns.to_csv(OUT / "replay_returns.csv")
for name in ("twin", "boosted twin", "gradient boosting"):
    print(study.replay_verdict(returns, name))
curves = {name: pd.Series(np.cumsum(pnl[name].reindex(pd.unique(test_steps["slug"])).to_numpy()))
          for name in ("the trader (recorded)", "twin", "boosted twin", "gradient boosting")}
plots.save(figures.equity_curves(curves, "Test period: cumulative P&L by market"), "04_backtest");

# %% [markdown]
# **Reading the results.** The ceilings say how much of the trader's behaviour these files can explain at all:
# the gap between the full and the observable ceiling is the trader's private information (the BTC price in the
# seconds after the last bar), which no twin trained on the files can copy. Within what is observable, the twin
# is judged against the best baseline on the same inputs (the sentences above say whether it beats it, is level
# with it, or loses, and how small a difference this test period can detect), and the boosted twin shows whether
# the transformer adds anything to the booster. The replay tells a different story from the scores: a twin that
# acts like the trader without its information pays the spread on trades its information does not justify, so
# it does not earn what the trader earns, and the steering sweep shows that the target return changes little of
# what the twin does: on these data the trader's returns vary with the market's path, not with a behaviour the
# twin could select by asking for more.

# %%
metrics = {
    "test": {name: {k: scored[name][k] for k in ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci", "log_loss",
                                                "log_loss_ci", "exponent")}
             for name in scored},
    "comparisons": comparisons,
    "steering": {k: steer[k] for k in ("n_targets", "spearman", "spearman_ci", "p_no_steering")} |
                {"spearman_abs_target_trade_share": activity},
    "replay": {name: {"return": float(row["return"]), "ci": [float(row["ci_low"]), float(row["ci_high"])]}
               for name, row in returns.iterrows()},
    "settings": {"features": list(data.features), "rtg_mode": data.rtg_mode, "rtg_dropout": RTG_DROPOUT,
                 "d_model": D_MODEL, "n_layers": N_LAYERS, "best_epoch": trainer.best_epoch,
                 "boosted_best_epoch": boosted_trainer.best_epoch, "n_boot": N_BOOT, "n_mc": N_MC,
                 "seconds": time.perf_counter() - t_start},
}
aliases = {"twin": "twin", "gbm": "gradient boosting", "bc_logistic": "BC logistic", "majority": "majority class",
           "ceiling_observable": "ceiling: observable information", "ceiling_full": "ceiling: full (hidden policy)",
           "boosted_twin": "boosted twin", "bc_mlp": "BC MLP"}
metrics["test"].update({alias: metrics["test"][name] for alias, name in aliases.items()})
metrics["replay"].update({"gbm": metrics["replay"]["gradient boosting"], "trader": metrics["replay"]["the trader (recorded)"]})
(OUT / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
steps.to_parquet(OUT / "steps.parquet")
meta = {"step": STEP, "offset": STEP_OFFSET, "window": WINDOW, "notional": NOTIONAL, "rtg_scale": data.rtg_scale,
        "rtg_mode": data.rtg_mode, "features": list(data.features), "levels": {"take_profit": levels.take_profit,
                                                                            "stop_loss": levels.stop_loss},
        "train_fraction": TRAIN_FRACTION, "val_fraction": VAL_FRACTION, "gap": GAP, "train_stride": TRAIN_STRIDE,
        "split": {"train_end": data.split.train_end, "val_start": data.split.val_start, "val_end": data.split.val_end,
                  "test_start": data.split.test_start, "n": data.split.n},
        "thresholds": data.thresholds.to_dict(), "default_target": target, "targets": targets,
        "decision_rule": {"prior": prior.tolist(), "exponent": scored["twin"]["exponent"]},
        "checkpoint": str(P.models / "trader_twin" / "best_model.pt"), "spearman_target_realised": steer["spearman"]}
(OUT / "twin.json").write_text(json.dumps(meta, indent=2))
print(f"notebook 04 ran in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## 7. The real wallets
#
# The same step table can be built from notebook 01's real Data-API exports, but they are eight hours of two
# wallets with no quotes or BTC bars: the market features are missing, and the data give a handful of 128-step
# windows — far too few to train or evaluate a twin. What can be said from them is descriptive: how often the
# wallet trades per minute and how its flow splits into classes.

# %%
real = ingest.WalletData.read(P.processed / "01_ingestion" / "real")
real_bars = ingest.rebar(real, STEP)
display(study.real_wallet_summary(real.positions, real_bars, REAL_WALLET, WINDOW).to_frame("real wallet"))
