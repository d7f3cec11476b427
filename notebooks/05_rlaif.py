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
# # 05 · RLAIF: from market outcomes to preferences to reward models
#
# **What this notebook answers.** Can market outcomes — not opinions — teach a model which trading
# decisions and which analyses are good? We replay history: at regular decision points, several
# candidates decide (the trader twin of notebook 04 at three target returns, three rule agents, and an
# analyst writing the four-step analysis, sometimes with controlled mistakes); a tracker follows each
# decision's position on the recorded quotes until its stop, target, the market's expiry or a time limit;
# comparable decisions (same market, same instant) become preference pairs; and two reward models learn
# from them: an **outcome** model (numeric features fused with a MiniLM text embedding, Bradley-Terry loss)
# and a **process** model that scores each reasoning step (step labels from the verifier, as in "Let's
# Verify Step by Step", Lightman et al., 2023). Which one picks better analyses, and better trades, on a
# later period?
#
# Everything persists in SQLite (`data/processed/05_rlaif/rlaif.db`, transactional, idempotent): re-running
# adds nothing twice. The components would run unchanged against a live price feed; here the price source
# is a replay whose clock hides the future.

# %% tags=["parameters"]
DECISION_EVERY = 7  # steps (minutes) between decision points; co-prime with 15, so they visit every minute of a market
RLAIF_EVERY = 8  # every k-th decision point gets the full candidate set (outcomes, pairs, reward models)
MISTAKE_SOURCES = 2  # analyses with controlled mistakes per decision point
HOLD_MINUTES = 10  # maximum holding time of a tracked position
METRIC = "risk_adjusted"  # preference metric: return, sharpe or risk_adjusted (return over 1 + abs(max drawdown))
MIN_MARGIN = 0.02  # minimum metric difference of a kept pair (Up-price units per share)
RM_EPOCHS = 10  # outcome reward model epochs (rlhf_config.yaml: reward_epochs)
RM_LEARNING_RATE = 1e-4  # outcome reward model learning rate (rlhf_config.yaml: reward_learning_rate)
RM_BATCH_SIZE = 64  # pairs per batch
RM_PATIENCE = 3  # early stopping on validation pair accuracy
PRM_EPOCHS = 30  # process reward model epochs
PRM_LEARNING_RATE = 1e-3  # process reward model learning rate
MONITOR_WINDOW = 100  # decisions per rolling window of the score-outcome correlation
MONITOR_THRESHOLD = 0.05  # alert when the rolling Spearman correlation falls below this
N_BOOT = 2000  # bootstrap replicates of the intervals
SEED = 7  # seed of candidates, training and bootstraps

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import display

from workbench import analysis, config, metrics, plots, twin
from workbench.analysis import rlconfig
from workbench.data import ingest
from workbench.rlaif import figures
from workbench.twin import backtest
from workbench.twin import study as twin_study
from workbench.rlaif import (OutcomeTracker, PreferenceGenerator, ProcessRewardModel, ProcessRewardTrainer,
                             RLAIFFineTuner, ReplayPriceSource, RewardModelTrainer, aggregate_steps, create_reward_model,
                             study)

P = config.paths().ensure()
OUT = P.processed / "05_rlaif"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 30, "display.width", 200)
cfg = rlconfig.load_config()
data01 = ingest.WalletData.read(P.processed / "01_ingestion")
steps = pd.read_parquet(P.processed / "04_twin" / "steps.parquet")
meta04 = json.loads((P.processed / "04_twin" / "twin.json").read_text())
data = twin_study.from_meta(steps, meta04)
periods = twin_study.periods(data)
book = backtest.QuoteBook(data01.events)
max_hold_ms = HOLD_MINUTES * 60_000
analyst = analysis.Analyst(cfg.verifier, seed=SEED)
points, facts = study.decision_points(steps, periods, DECISION_EVERY, book, analyst, capital=cfg.verifier.capital)
print(f"{points.attrs['incomplete']} candidate steps skipped: an indicator was still warming up (no 'nan' in a prompt)")
points = study.attach_outcomes(points, facts, analyst, ReplayPriceSource(book), max_hold_ms)
print(f"{len(points):,} decision points:", points["period"].value_counts().to_dict())
print("minutes left at the decision points:", pd.Series([f.minutes_left for f in facts]).describe().round(1).to_dict())
print(analysis.prompt_from_facts(facts[len(facts) // 2]), "\n")
print(points["completion"].iloc[len(facts) // 2])

# %% [markdown]
# ## 1. Candidates and their decisions
#
# At every `RLAIF_EVERY`-th decision point: the analyst's own decision; `MISTAKE_SOURCES` analyses with one
# or two controlled mistakes (wrong indicator values, claims that contradict the numbers, a signal against
# the analysis' own steps, a position above the risk limit); three rule agents (momentum, fair-value gap,
# contrarian RSI); and the twin at three target returns (its class-weighted most likely action, as
# trained). Every candidate carries a four-step analysis explaining its own signal, with the analyst's
# risk-budgeted size, stop and take profit.

# %%
inference = twin.TraderInference.from_checkpoint(meta04["checkpoint"])
twin_targets = {f"rtg={t:+.2f}": t for t in (meta04["targets"][1], meta04["default_target"], meta04["targets"][-2])}
rule = (meta04["decision_rule"]["prior"], meta04["decision_rule"]["exponent"]) if "decision_rule" in meta04 else None
twin_actions = twin_study.actions_at(inference, data, points["time"].to_numpy(), twin_targets, rule=rule)
subset = np.arange(0, len(points), RLAIF_EVERY)
decisions = study.candidates(points, facts, analyst, twin_actions, seed=SEED, mistake_sources=MISTAKE_SOURCES, subset=subset)
pg = PreferenceGenerator(OUT / "rlaif.db", min_preference_margin=MIN_MARGIN, hold_period_days=HOLD_MINUTES / 1440)
new = pg.record_decisions(decisions)
print(f"{len(decisions):,} candidate decisions at {len(subset):,} points; {new:,} new in the store (0 on a re-run)")
display(pd.crosstab(pd.Series([d.source for d in decisions], name="source"),
                    pd.Series([d.action for d in decisions], name="action")))

# %% [markdown]
# ## 2. Outcomes
#
# The tracker opens a position per decision (BUY at the ask, SELL at the bid, Up-equivalent) and updates
# it from the replay price source: it closes at the first quote crossing the stop or the take profit, at
# the market's settlement, or after `HOLD_MINUTES`. Returns are per share, in Up-price units.

# %%
tracker = OutcomeTracker(pg, ReplayPriceSource(book), auto_close_after_days=HOLD_MINUTES / 1440)
tracker.track_decisions(decisions)
closed = tracker.update_positions()
outs = pg.store.outcomes()
print(f"closed {closed:,} positions now (0 on a re-run: already closed); tracker stats:", tracker.get_stats())
by_source, exits = study.outcome_table(decisions, outs)
display(by_source.round(4))
display(exits.to_frame())

# %% [markdown]
# ## 3. Preferences
#
# Pairs of decisions made at the same decision point (same market, same instant), compared by the
# risk-adjusted return, kept when the difference reaches `MIN_MARGIN`, weighted by their margin. The report
# says how many were made, kept, and why the others were dropped. The period of a pair is that of its
# decision point: reward models train on the training period, stop early on the validation period and are
# judged on the test period.

# %%
pairs = pg.generate_preferences(METRIC, min_samples=10, ids={d.id for d in decisions})  # this run's decisions only
display(pd.Series(pg.last_report.as_dict(), name="pairs").to_frame())
parts = study.split_pairs(pairs)
print({k: len(v) for k, v in parts.items()})

# %% [markdown]
# ## 4. The outcome reward model
#
# Numeric features at decision time (the facts, the action, the stated confidence and size, and where the
# entry sits against the fair value) fused with the MiniLM embedding of the analysis (the mean of its steps'
# embeddings; each distinct step is embedded once and cached in the store). Bradley-Terry loss
# −log σ(s_chosen − s_rejected), weighted by margin; early stopping on validation pair accuracy. On the test
# period's pairs we compare with trivial baselines.

# %%
rm_model, encoder = create_reward_model(store=pg.store)
orm = RewardModelTrainer(rm_model, encoder, learning_rate=RM_LEARNING_RATE, seed=SEED)
orm_history = orm.train(parts["train"], parts["val"], epochs=RM_EPOCHS, batch_size=RM_BATCH_SIZE, patience=RM_PATIENCE)
orm.save(P.models / "rlaif" / "outcome_rm.pt", version="rm-1")
orm_score = dict(zip([d.id for d in decisions], orm.score(decisions)))
test_pairs = parts["test"]
pair_acc = pd.Series({"outcome reward model": study.pair_accuracy(orm_score, test_pairs), **study.heuristic_pair_accuracy(test_pairs)},
                     name=f"test-period pair accuracy ({len(test_pairs)} pairs)")
display(pair_acc.round(3).to_frame())

# %% [markdown]
# ## 5. The process reward model
#
# Each step of each analysis is labelled correct or incorrect by the step verifier (every claim checked
# against the facts at decision time: the cited RSI is the real RSI, "overbought" only when it is, the stated
# volatility matches, the size respects the risk rule, the signal agrees with the steps...). A small model
# learns to score each step from its text embedding, the numeric facts and which step it is. The score of an
# analysis is the product of its steps' probabilities (the probability that every step is correct, as in
# Lightman et al.); the verifier's own score weights steps by `rlhf_config.yaml`'s step weights.

# %%
verifier = analysis.StepVerifier(cfg.verifier)
verdicts = study.verify_decisions(decisions, verifier)
sd = study.step_data(decisions, verdicts)
prm = ProcessRewardTrainer(ProcessRewardModel(text_dim=encoder.dim), encoder, learning_rate=PRM_LEARNING_RATE, seed=SEED)
prm_history = prm.train(*sd.part("train"), val=sd.part("val"), epochs=PRM_EPOCHS)
prm.save(P.models / "rlaif" / "process_rm.pt", version="prm-1")
test_texts, test_feats, test_labels = sd.part("test")
display(study.step_evaluation(prm.step_probs(test_texts, test_feats), test_labels).round(3))
plots.save(figures.reward_training({"outcome reward model": orm_history, "process reward model": prm_history}), "05_reward_training");

# %% [markdown]
# ## 6. Outcome or process: which reward model picks better?
#
# At each decision point of the test period, each scorer picks one candidate (best-of-n): the outcome
# model, the process model, the verifier itself (its step-weighted share of true steps: an oracle process
# score), and for reference the clean analyst, the twin at its default target, and a random candidate. For
# each choice: the share of true steps of the chosen analyses, their self-consistency, and the market result
# of following them, with bootstrap 95% intervals.

# %%
weights = [cfg.step_weight(s) for s in analysis.STEPS]
prm_score = dict(zip([d.id for d in decisions], aggregate_steps(prm.step_probs(sd.texts, sd.features), how="product")))
verifier_score = dict(zip(verdicts.index, verdicts[[f"ok_{s}" for s in analysis.STEPS]].to_numpy(float) @ np.array(weights)))
groups = {k: v for k, v in study.by_point(decisions).items() if v[0].metadata["period"] == "test"}
rng = np.random.default_rng(SEED)
random_score = {d.id: float(rng.random()) for d in decisions}
default_twin = f"twin@rtg={meta04['default_target']:+.2f}"
picks = {"outcome reward model": study.pick(groups, orm_score), "process reward model": study.pick(groups, prm_score),
         "step verifier (oracle process score)": study.pick(groups, verifier_score),
         "analyst (clean)": {k: next(d for d in v if d.source == "analyst") for k, v in groups.items()},
         "twin at its default target": {k: next(d for d in v if d.source == default_twin) for k, v in groups.items()},
         "random candidate": study.pick(groups, random_score)}
comparison = study.compare_pickers(picks, outs, verdicts, n_boot=N_BOOT, seed=SEED)
display(comparison)
comparison.to_csv(OUT / "pickers.csv")
plots.save(figures.pickers(comparison), "05_pickers");

# %% [markdown]
# ## 7. Calibration of the stated confidence
#
# Does a stated confidence of 0.8 mean the trade makes money 80% of the time? Reliability curves, expected
# calibration error (ECE) and Brier score of each source's stated confidence against realised success on
# the test period.

# %%
test_decisions = [d for ds in groups.values() for d in ds]
calib = study.calibration_by_source(test_decisions, outs)
display(calib.round(3))
tables = {src: metrics.reliability_table([d.confidence for d in test_decisions if d.source == src and d.action != "HOLD"],
                                         [float(outs[d.id].ret > 0) for d in test_decisions if d.source == src and d.action != "HOLD"])
          for src in ("analyst", default_twin, "rule:fair_gap")}
plots.save(figures.reliability_diagram(tables), "05_reliability");

# %% [markdown]
# ## 8. Guided inference: an A/B replay
#
# Baseline: the twin's decision at its default target at each test decision point. Reward-guided: the
# candidate the outcome reward model ranks first (`RLAIFFineTuner.rerank_decisions`). Per-point P&L (size ×
# return), Sharpe ratio of per-point P&L, win rate, and the bootstrap interval of the mean per-point
# difference.

# %%
tuner = RLAIFFineTuner(orm, encoder, output_dir=OUT / "exports")
guided = {k: tuner.rerank_decisions(v)[0][0] for k, v in groups.items()}
ab, diff = study.ab_replay(picks["twin at its default target"], guided, outs, n_boot=N_BOOT, seed=SEED)
display(ab.round(4))
print(f"mean per-point P&L difference (guided - baseline): {diff[0]:+.3f} USDC, 95% interval [{diff[1]:+.3f}, {diff[2]:+.3f}]")

# %% [markdown]
# ## 9. Exports for fine-tuning (notebook 06)
#
# Preference pairs of the training and validation periods as trl's `{prompt, chosen, rejected}` JSONL (and
# conversational and OpenAI preference formats), supervised examples `{prompt, completion}` (and chat
# messages), and the decision-point table with the analyst's analysis and its outcome. Test-period data is
# never exported for training.

# %%
train_pairs = parts["train"] + parts["val"]
exports = {"dpo_trl": tuner.prepare_dpo_training_data(train_pairs, "trl"),
           "dpo_chat": tuner.prepare_dpo_training_data(train_pairs, "chat"),
           "dpo_openai": tuner.prepare_dpo_training_data(train_pairs, "openai"),
           "sft_trl": tuner.prepare_supervised_training_data(decisions=[d for d in decisions if d.source == "analyst"
                                                                       and d.metadata["period"] != "test"]),
           "sft_chat": tuner.prepare_supervised_training_data(decisions=[d for d in decisions if d.source == "analyst"
                                                                        and d.metadata["period"] != "test"], format="chat")}
pd.DataFrame([{"prompt": p.chosen.metadata["prompt"], "chosen": p.chosen.analysis, "rejected": p.rejected.analysis,
               "margin": p.margin, "weight": p.weight, "time": p.chosen.time, "market": p.chosen.symbol,
               "period": p.chosen.metadata["period"]} for p in train_pairs]).to_parquet(OUT / "exports" / "dpo_pairs.parquet")
points.to_parquet(OUT / "decision_points.parquet")
display(pd.Series({k: f"{sum(1 for _ in open(v))} rows -> {v.name}" for k, v in exports.items()}).to_frame("export"))
print(tuner.get_training_stats())

# %% [markdown]
# ## 10. Monitoring
#
# In production the reward model must keep tracking outcomes. The rolling Spearman correlation between its
# scores and realised returns of traded decisions, in time order over the test period, raises a warning when
# it falls below `MONITOR_THRESHOLD`.

# %%
traded = [d for d in test_decisions if d.action != "HOLD"]
mon = study.monitor(np.array([d.time for d in traded]), np.array([orm_score[d.id] for d in traded]),
                    np.array([outs[d.id].ret for d in traded]), window=MONITOR_WINDOW, threshold=MONITOR_THRESHOLD)
print(f"{mon.alerts} of {int(mon.table['spearman'].notna().sum())} windows below {MONITOR_THRESHOLD}")
plots.save(figures.monitor_figure(mon.table, MONITOR_THRESHOLD), "05_monitoring");

# %% [markdown]
# **What to read from this notebook.** The process reward model (and the verifier it imitates) picks
# analyses whose claims are true; whether it also picks better *trades* is an empirical question the
# table of section 6 answers with intervals — an analysis can be true and still lose money, and a false one
# can win. The outcome model learns from noisy market outcomes; its held-out pair accuracy next to the
# trivial baselines says how much it learnt. Notebook 07 takes up the question with reinforcement learning.
