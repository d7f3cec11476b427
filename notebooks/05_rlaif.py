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
RLAIF_EVERY = 2  # every k-th decision point gets the full candidate set (outcomes, pairs, reward models)
MISTAKE_SOURCES = 2  # analyses with controlled mistakes per decision point
ASSETS = ["btc"]  # underlyings studied; this notebook studies the first (notebook 01 ingests every asset there is)
HOLD_MINUTES = 10  # maximum holding time of a tracked position
METRIC = "risk_adjusted"  # preference metric: return, sharpe or risk_adjusted (return over 1 + abs(max drawdown))
MIN_MARGIN = 0.02  # minimum metric difference of a kept pair (Up-price units per share)
RM_EPOCHS = 30  # outcome reward model epochs (rlhf_config.yaml's reward_epochs is 3 for a GPU-sized model)
RM_LEARNING_RATE = 3e-4  # outcome reward model learning rate (higher than rlhf_config.yaml's 1e-4: a small MLP head)
RM_BATCH_SIZE = 256  # pairs per batch
RM_PATIENCE = 5  # early stopping on validation pair accuracy
PRM_EPOCHS = 30  # process reward model epochs
PRM_LEARNING_RATE = 1e-3  # process reward model learning rate
MONITOR_WINDOW = 50  # decision points per rolling window of the within-point reward-outcome correlation
MONITOR_FINE = 0.5  # the seed's thresholds: above this the reward model is fine
MONITOR_RETRAIN = 0.3  # below this, retrain
VARY = True  # candidates draw their own stop, take profit, size and holding time (not only the action)
EV_MARGIN = 0.01  # smallest expected-value difference of a pair of the expected-value test set (per share)
N_PATHS = 400  # Monte Carlo paths per decision point of the realised-label ceiling
N_BOOT = 2000  # bootstrap replicates of the intervals (decision points resampled)
SEED = 7  # seed of candidates, training and bootstraps
FRONTIER_WEIGHTS = [0.0, 0.25, 0.5, 0.75, 1.0]  # weights on the return model in the two-objective picker
REPLAY_SHIFT_DAY = 15  # day of the replay's regime change (pairs labelled by the Sharpe ratio from then on)
REPLAY_WARMUP_DAYS = 7  # days both learners start from
REPLAY_RETRAIN_EVERY = 7  # days between retrainings from scratch
REPLAY_WINDOW_DAYS = 7  # days of pairs a retraining uses
REPLAY_EPOCHS = 5  # epochs of each training from scratch in the replay
REPLAY_ONLINE_LR = 0.0001  # Adam step of the online learner
PPO_AGENT = ""  # notebook 08's ppo_agent.zip to add as a candidate agent ("ppo"); empty: none (08 runs after 05)

# %%
import json

import numpy as np
import pandas as pd
from IPython.display import display

from workbench import analysis, config, metrics, plots, twin
from workbench.agent import ppo
from workbench.analysis import rlconfig
from workbench.data import ingest, simulate
from workbench.rlaif import (OutcomeTracker, PreferenceGenerator, ProcessRewardModel, ProcessRewardTrainer,
                             ReplayPriceSource, RewardModelTrainer, RLAIFFineTuner, aggregate_steps,
                             create_reward_model, figures, study, train_reward_model)
from workbench.rlaif import truth as rlaif_truth
from workbench.rlaif import replay, yardsticks
from workbench.rlaif.store import PreferencePair
from workbench.twin import backtest
from workbench.twin import study as twin_study

P = config.paths().ensure()
OUT = P.processed / "05_rlaif"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 30, "display.width", 200)
cfg = rlconfig.load_config()
data01 = ingest.WalletData.read(P.processed / "01_ingestion").select(ASSETS[:1])
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
# At every `RLAIF_EVERY`-th decision point: the analyst's own decision; `MISTAKE_SOURCES` analyses with one or two
# controlled mistakes (wrong indicator values, claims that contradict the numbers, a signal against the analysis'
# own steps, a position above the risk limit); three rule agents (momentum, fair-value gap, contrarian RSI); and
# the twin at three target returns (and, with `PPO_AGENT`, notebook 08's PPO agent: run 08, then this notebook with
# `-p PPO_AGENT models/ppo_agent/ppo_agent.zip`). Every candidate carries a four-step analysis explaining its own signal. With
# `VARY`, every candidate but the clean analyst also draws its own stop, take profit, share of the risk budget
# and holding time, so two candidates with the same action still differ in outcome: a pair then carries
# information about more than the action.

# %%
inference = twin.TraderInference.from_checkpoint(meta04["checkpoint"])
twin_targets = {f"rtg={t:+.2f}": t for t in (meta04["targets"][1], meta04["default_target"], meta04["targets"][-2])}
rule = (meta04["decision_rule"]["prior"], meta04["decision_rule"]["exponent"]) if "decision_rule" in meta04 else None
twin_actions = twin_study.actions_at(inference, data, points["time"].to_numpy(), twin_targets, rule=rule)
subset = np.arange(0, len(points), RLAIF_EVERY)
agents = {"ppo": ppo.classes_at(ppo.load_agent(PPO_AGENT), steps, book, points["time"].to_numpy())} if PPO_AGENT else {}
decisions = study.candidates(points, facts, analyst, twin_actions, seed=SEED, mistake_sources=MISTAKE_SOURCES, subset=subset,
                             vary=VARY, agents=agents)
pg = PreferenceGenerator(OUT / "rlaif.db", min_preference_margin=MIN_MARGIN, hold_period_days=HOLD_MINUTES / 1440)
new = pg.record_decisions(decisions)
print(f"{len(decisions):,} candidate decisions at {len(subset):,} points; {new:,} new in the store (0 on a re-run)")
display(pd.crosstab(pd.Series([d.source for d in decisions], name="source"),
                    pd.Series([d.action for d in decisions], name="action")))

# %% [markdown]
# ## 2. Outcomes, and what the simulator knows
#
# The tracker opens a position per decision (BUY at the ask, SELL at the bid, Up-equivalent) and updates it from
# the replay price source: it closes at the first quote crossing the stop or the take profit, at the market's
# settlement, or after the candidate's holding time (at most `HOLD_MINUTES`). Returns are per share, in Up-price
# units. Beside the realised outcome, the simulator's truth gives each candidate's **expected value** per share at
# the true probability of Up (BUY: p − ask, SELL: bid − p, HOLD: 0) — for evaluation only.

# %%
tracker = OutcomeTracker(pg, ReplayPriceSource(book), auto_close_after_days=HOLD_MINUTES / 1440)
tracker.track_decisions(decisions)
closed = tracker.update_positions()
outs = pg.store.outcomes()
print(f"closed {closed:,} positions now (0 on a re-run: already closed); tracker stats:", tracker.get_stats())
by_source, exits = study.outcome_table(decisions, outs)
display(by_source.round(4))
display(exits.to_frame())
wallet = data01.events["wallet"].iloc[0]
true_path = rlaif_truth.TruePath(simulate.load_sim_config(P.raw, wallet, data01.events["underlying"].iloc[0]))  # evaluation only
ev = rlaif_truth.expected_values(decisions, true_path)
realised = {i: o.ret for i, o in outs.items()}
print(f"expected value per share by source (simulator truth):",
      pd.Series({d.id: ev[d.id] for d in decisions}).groupby([d.source for d in decisions]).mean().round(4).to_dict())

# %% [markdown]
# ## 3. Preferences
#
# Pairs of decisions made at the same decision point, compared by the risk-adjusted return, kept when the
# difference reaches `MIN_MARGIN`, weighted by their margin. The period of a pair is that of its decision point:
# reward models train on the training period, stop early on the validation period and are judged on the test
# period. Pairs of one point share its price path: the independent units are decision points, and every interval
# below resamples them.

# %%
pairs = pg.generate_preferences(METRIC, min_samples=10, ids={d.id for d in decisions})  # this run's decisions only
display(pd.Series(pg.last_report.as_dict(), name="pairs").to_frame())
parts = study.split_pairs(pairs)
distinct = {k: len({(p.chosen.metadata["decision_point"], p.chosen.action, p.rejected.action) for p in v})
            for k, v in parts.items()}
independent = {k: {"pairs": len(v), "decision points": len({p.chosen.metadata["decision_point"] for p in v}),
                   "distinct (point, action pair) comparisons": distinct[k]} for k, v in parts.items()}
display(pd.DataFrame(independent).T)
groups_all = study.by_point(decisions)
ev_pairs = {part: rlaif_truth.ev_pairs([d for d in decisions if d.metadata["period"] == part], ev, EV_MARGIN)
            for part in ("train", "val", "test")}
print({part: len(v) for part, v in ev_pairs.items()}, "expected-value pairs (weights: one per point and action pair)")

# %% [markdown]
# ## 4. The outcome reward model: measured against what outcomes can teach
#
# The seed's production path: numeric features at decision time (the facts, the action, stated confidence and
# size, where the entry sits against the fair value) fused with the MiniLM embedding of the analysis, Bradley-Terry
# loss, trained on **realised** outcomes, as a user with real trades must. Three yardsticks on the test period:
# (a) the **realised-label ceiling**: a realised outcome is one draw of the future, so even the true state cannot
# predict every label — a Monte Carlo of BTC and the market maker's quotes, through the tracker's exit rules, gives
# the Bayes classifier's expected accuracy, from what the files show (the BTC price since the last bar close drawn,
# not known: the yardstick) and from the full true state (the audit's number); accuracy is also reported as the
# share of the way from 0.5 to the first; (b) the **expected-value test set**: does learning from noisy outcomes recover the
# true ordering? (c) an **EV-trained** model (same architecture, pairs labelled by expected value on the training
# period) as the upper reference. Baselines: prefer HOLD, HOLD then the favourite, the edge heuristic (estimated
# fair value minus price), prefer higher confidence.

# %%
rm_model, encoder = create_reward_model(store=pg.store, seed=SEED)
orm = RewardModelTrainer(rm_model, encoder, learning_rate=RM_LEARNING_RATE, seed=SEED)
orm_history = orm.train(parts["train"], parts["val"], epochs=RM_EPOCHS, batch_size=RM_BATCH_SIZE, patience=RM_PATIENCE)
orm.save(P.models / "rlaif" / "outcome_rm.pt", version=f"rm-realised-{METRIC}-{len(parts['train'])}")
orm_score = dict(zip([d.id for d in decisions], orm.score(decisions)))
ev_model, _ = create_reward_model(store=pg.store, seed=SEED)
ev_trainer = RewardModelTrainer(ev_model, encoder, learning_rate=RM_LEARNING_RATE, seed=SEED)
as_pairs = {part: [PreferencePair(hi, lo, "expected_value", float(ev[hi.id] - ev[lo.id]), w, hi.time)
                   for hi, lo, w in ev_pairs[part]] for part in ev_pairs}
ev_history = ev_trainer.train(as_pairs["train"], as_pairs["val"], epochs=RM_EPOCHS, batch_size=RM_BATCH_SIZE,
                              patience=RM_PATIENCE)
ev_trainer.save(P.models / "rlaif" / "ev_rm.pt", version=f"rm-ev-reference-{len(as_pairs['train'])}")
ev_score = dict(zip([d.id for d in decisions], ev_trainer.score(decisions)))
scorers = {name: {d.id: f(d) for d in decisions} for name, f in yardsticks.baseline_scorers().items()}
test_pairs = parts["test"]
ceiling_kw = dict(margin=MIN_MARGIN, max_hold_ms=max_hold_ms, metric=METRIC, n_paths=N_PATHS, seed=SEED)
ceiling = rlaif_truth.realised_label_ceiling(test_pairs, true_path, observable=True, **ceiling_kw)
ceiling_state = rlaif_truth.realised_label_ceiling(test_pairs, true_path, **ceiling_kw)
acc = lambda score, pp: yardsticks.pair_accuracy_ci(score, pp, n_boot=N_BOOT, seed=SEED)  # noqa: E731
realised_table = pd.DataFrame({"outcome reward model (realised)": acc(orm_score, test_pairs),
                               "EV-trained reference": acc(ev_score, test_pairs),
                               **{n: acc(s, test_pairs) for n, s in scorers.items()}}).T
realised_table["share of the way to the ceiling"] = [yardsticks.normalised_accuracy(a, ceiling["ceiling"])
                                                     for a in realised_table["acc"]]
print(f"realised-label ceiling over {len(test_pairs)} test pairs (Bayes, Monte Carlo): {ceiling['ceiling']:.3f} from what "
      f"the files show, {ceiling_state['ceiling']:.3f} from the full true state (check: its pick agrees with the realised "
      f"label on {ceiling_state['bayes_on_realised']:.3f} of them)")
display(realised_table)
ev_table = pd.DataFrame({"outcome reward model (realised)": acc(orm_score, ev_pairs["test"]),
                         "EV-trained reference": acc(ev_score, ev_pairs["test"]),
                         **{n: acc(s, ev_pairs["test"]) for n, s in scorers.items()}}).T
display(ev_table)
groups = {k: v for k, v in groups_all.items() if v[0].metadata["period"] == "test"}
risk_adj = {i: o.risk_adjusted for i, o in outs.items()}
within = pd.DataFrame({name: {"with the realised metric": yardsticks.within_point_spearman(groups, s, risk_adj, seed=SEED)["mean"],
                              "with the expected value": yardsticks.within_point_spearman(groups, s, ev, seed=SEED)["mean"]}
                       for name, s in {"outcome reward model (realised)": orm_score, "EV-trained reference": ev_score,
                                       "edge heuristic": scorers["edge heuristic"]}.items()}).T
display(within.round(3))
best_ev_baseline = max(scorers, key=lambda n: ev_table.loc[n, "acc"])
orm_ev, base_ev = ev_table.loc["outcome reward model (realised)"], ev_table.loc[best_ev_baseline]
print(f"On the expected-value test set the realised-trained model scores {orm_ev['acc']:.3f} {np.round(orm_ev['ci'], 3).tolist()} "
      f"against the best baseline ({best_ev_baseline}) {base_ev['acc']:.3f} {np.round(base_ev['ci'], 3).tolist()}: "
      + ("it beats it with non-overlapping intervals." if orm_ev["ci"][0] > base_ev["ci"][1] else
         "it does NOT beat it with non-overlapping intervals."))

# %% [markdown]
# ## 5. The process reward model, with labels that can disagree with the analyst
#
# Steps 1–3 of each analysis are labelled by the fact verifier (each claim checked against the facts at decision
# time). Step 4, the trading signal, is labelled by its **outcome** — a trade is correct when its expected value
# is positive, a HOLD when no trade at its point has an expected value above `EV_MARGIN` (on real data: the
# realised return) — not by agreement with the analyst's vote. A small model learns to score each step from its
# text embedding, the numeric facts and which step it is; an analysis' score is the product of its steps'
# probabilities (Lightman et al.).

# %%
verifier = analysis.StepVerifier(cfg.verifier)
verdicts = study.verify_decisions(decisions, verifier)
step4 = yardsticks.outcome_step4_labels(decisions, ev, EV_MARGIN)
verdicts["ok_signal_generation"] = [bool(step4.get(i, 0.0)) for i in verdicts.index]
sd = study.step_data(decisions, verdicts)
prm = ProcessRewardTrainer(ProcessRewardModel(text_dim=encoder.dim, seed=SEED), encoder, learning_rate=PRM_LEARNING_RATE,
                           seed=SEED)
prm_history = prm.train(*sd.part("train"), val=sd.part("val"), epochs=PRM_EPOCHS)
prm.save(P.models / "rlaif" / "process_rm.pt", version="prm-facts+outcome-1")
test_texts, test_feats, test_labels = sd.part("test")
display(study.step_evaluation(prm.step_probs(test_texts, test_feats), test_labels).round(3))
plots.save(figures.reward_training({"outcome reward model": orm_history, "process reward model": prm_history}), "05_reward_training");

# %% [markdown]
# ## 6. Outcome or process: which scorer picks better decisions?
#
# At each test decision point each scorer picks one candidate (best-of-n, ties broken at random). Every picker is
# judged on the same two targets, neither of which any scorer was trained to maximise: the **expected value** of
# the pick (simulator truth) and its **realised return** per share, with intervals over decision points. The fact
# checks of steps 1–3 alone are a picker of their own (they never see an outcome), not an oracle.

# %%
prm_score = dict(zip([d.id for d in decisions], aggregate_steps(prm.step_probs(sd.texts, sd.features), how="product")))
fact_score = dict(zip(verdicts.index, verdicts[[f"ok_{s}" for s in analysis.STEPS[:3]]].to_numpy(float).mean(axis=1)))
rng = np.random.default_rng(SEED)
random_score = {d.id: float(rng.random()) for d in decisions}
default_twin = f"twin@rtg={meta04['default_target']:+.2f}"
picks = {"outcome reward model (realised)": yardsticks.pick(groups, orm_score, SEED),
         "process reward model (facts + outcome step 4)": yardsticks.pick(groups, prm_score, SEED),
         "fact checks of steps 1-3 only": yardsticks.pick(groups, fact_score, SEED),
         "EV-trained reference": yardsticks.pick(groups, ev_score, SEED),
         "edge heuristic": yardsticks.pick(groups, scorers["edge heuristic"], SEED),
         "analyst (clean)": {k: next(d for d in v if d.source == "analyst") for k, v in groups.items()},
         "twin at its default target": {k: next(d for d in v if d.source == default_twin) for k, v in groups.items()},
         "random candidate": yardsticks.pick(groups, random_score, SEED)}
comparison = yardsticks.judge_pickers(picks, ev, realised, n_boot=N_BOOT, seed=SEED)
display(comparison)
comparison.to_csv(OUT / "pickers.csv")
vs_analyst = {name: yardsticks.paired_difference(picks[name], picks["analyst (clean)"], ev, n_boot=N_BOOT, seed=SEED)
              for name in ("outcome reward model (realised)", "process reward model (facts + outcome step 4)")}
display(pd.DataFrame(vs_analyst).T)
d_orm = vs_analyst["outcome reward model (realised)"]
print(f"best-of-n with the outcome reward model vs the clean analyst, mean EV per share: {d_orm['difference']:+.4f} "
      f"{np.round(d_orm['ci'], 4).tolist()} (detectable: {d_orm['min_detectable']:.4f}): "
      + ("higher, with an interval above 0." if d_orm["ci"][0] > 0 else "NOT higher with an interval above 0."))
plots.save(figures.pickers(comparison), "05_pickers");

# %% [markdown]
# **Two objectives** (the design document's multi-objective reward models). A second reward model is trained the
# same way on pairs made by the **Sharpe ratio** of the realised path (the risk objective), beside the outcome
# model trained on the risk-adjusted return. The picker scores `w x return model + (1 - w) x risk model`, both
# standardised, and takes the best of n at each test decision point. Each weight gives a point: the mean realised
# return and the mean maximum drawdown per share of its picks, with intervals over decision points. The frontier is
# measured, not asserted: if it is flat, the two models pick alike.

# %%
sharpe_parts = study.split_pairs(pg.generate_preferences("sharpe", min_samples=10, ids={d.id for d in decisions},
                                                         store=False))
risk_model = train_reward_model(sharpe_parts["train"], sharpe_parts["val"], epochs=RM_EPOCHS, batch_size=RM_BATCH_SIZE,
                                learning_rate=RM_LEARNING_RATE, text_encoder=encoder, seed=SEED)
risk_score = dict(zip([d.id for d in decisions], risk_model.score(decisions)))
frontier = yardsticks.objective_frontier(groups, orm_score, risk_score, outs, FRONTIER_WEIGHTS, ev, n_boot=N_BOOT,
                                         seed=SEED)
print(f"{len(sharpe_parts['train']):,} Sharpe training pairs; the risk model's test pair accuracy on them: "
      f"{yardsticks.pair_accuracy_ci(risk_score, sharpe_parts['test'], n_boot=N_BOOT, seed=SEED)['acc']:.3f}")
display(frontier.round(4))
plots.save(figures.frontier_figure(frontier), "05_objective_frontier");

# %% [markdown]
# **Online learning against weekly retraining** (the design document's online trainer). The preference stream is
# replayed day by day in decision-time order. Both learners start from one model trained on the first
# `REPLAY_WARMUP_DAYS`; the online one takes small Bradley-Terry steps on each day's pairs once the day is over, the
# other is retrained from scratch every `REPLAY_RETRAIN_EVERY` days on the last `REPLAY_WINDOW_DAYS`. Each day's
# pairs are scored *before* either learner sees them. From `REPLAY_SHIFT_DAY` on the pairs are labelled by the Sharpe
# ratio instead of the risk-adjusted return: a regime change of what "better" means, at a known time. Stability is
# the day-to-day churn (1 - Spearman) of the scores of 300 fixed early decisions. Intervals resample decision
# points.

# %%
stream_days = replay.stream(pairs, [p for v in sharpe_parts.values() for p in v], shift_day=REPLAY_SHIFT_DAY)
probe = [p.chosen for d in stream_days[:REPLAY_WARMUP_DAYS] for p in d][:300]
replay_daily, replay_pairs = replay.replay(stream_days, encoder, probe=probe, warmup_days=REPLAY_WARMUP_DAYS,
                                           retrain_every_days=REPLAY_RETRAIN_EVERY, window_days=REPLAY_WINDOW_DAYS,
                                           epochs=REPLAY_EPOCHS, batch_size=RM_BATCH_SIZE, learning_rate=RM_LEARNING_RATE,
                                           online_learning_rate=REPLAY_ONLINE_LR, seed=SEED)
last_day = len(stream_days) - 1
replay_table = replay.summary(replay_pairs, replay_daily, {
    "before the shift": (REPLAY_WARMUP_DAYS, REPLAY_SHIFT_DAY - 1),
    "first 3 days after": (REPLAY_SHIFT_DAY, min(REPLAY_SHIFT_DAY + 2, last_day)),
    "later": (REPLAY_SHIFT_DAY + 3, last_day)}, n_boot=N_BOOT, seed=SEED)
display(replay_daily.round(3))
display(replay_table.round(3))
plots.save(figures.replay_figure(replay_daily, REPLAY_SHIFT_DAY), "05_online_vs_retrain");

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
# ## 8. Guided inference: an A/B replay per share
#
# Baseline: the twin's decision at its default target at each test decision point. Reward-guided: the candidate
# the outcome reward model ranks first (`RLAIFFineTuner.rerank_decisions`). Both are compared **per share** (the
# reward model learnt per-share outcomes; a larger position would win or lose by its size alone): the mean
# realised return and the mean expected value, with intervals of the paired difference.

# %%
tuner = RLAIFFineTuner(orm, encoder, output_dir=OUT / "exports")
guided = {k: tuner.rerank_decisions(v)[0][0] for k, v in groups.items()}
ab = pd.DataFrame({"realised return per share": yardsticks.paired_difference(guided, picks["twin at its default target"],
                                                                            realised, n_boot=N_BOOT, seed=SEED),
                   "expected value per share": yardsticks.paired_difference(guided, picks["twin at its default target"], ev,
                                                                           n_boot=N_BOOT, seed=SEED)}).T
display(ab)

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
# The seed's rule for a reward model in production: its correlation with outcomes on recent decisions should stay
# above 0.5 (fine); below 0.3, retrain. Computed correctly for a model that orders candidates within a decision
# point: the mean within-point Spearman correlation of reward and realised risk-adjusted return, over rolling
# windows of `MONITOR_WINDOW` test decision points. The reward model's version tag is its training metric and
# pair count.

# %%
mon = yardsticks.monitor_within_points(groups, orm_score, risk_adj, window=MONITOR_WINDOW, fine=MONITOR_FINE,
                                       retrain=MONITOR_RETRAIN)
display(mon["state"].value_counts().to_frame("windows"))
plots.save(figures.monitor_figure(mon, MONITOR_RETRAIN, MONITOR_FINE), "05_monitoring");

# %%
metrics_out = {
    "realised": {"reward_model": realised_table.loc["outcome reward model (realised)", ["acc", "ci"]].to_dict(),
                 "ceiling": ceiling["ceiling"], "ceiling_true_state": ceiling_state["ceiling"],
                 "bayes_pick_on_realised_labels": ceiling_state["bayes_on_realised"],
                 "normalised": realised_table.loc["outcome reward model (realised)", "share of the way to the ceiling"],
                 "ev_trained": realised_table.loc["EV-trained reference", ["acc", "ci"]].to_dict(),
                 "baselines": {n: realised_table.loc[n, ["acc", "ci"]].to_dict() for n in scorers}},
    "ev": {"reward_model": ev_table.loc["outcome reward model (realised)", ["acc", "ci"]].to_dict(),
           "ev_trained": ev_table.loc["EV-trained reference", ["acc", "ci"]].to_dict(),
           "baselines": {n: ev_table.loc[n, ["acc", "ci"]].to_dict() for n in scorers}},
    "n_independent_pairs": independent,
    "within_point_spearman": within.to_dict(),
    "pickers": {n: r[["mean_ev", "ev_ci", "mean_return", "return_ci", "trade_share"]].to_dict()
                for n, r in comparison.iterrows()},
    "reward_model_vs_analyst_ev": d_orm,
    "objective_frontier": frontier.to_dict("records"),
    "online_vs_retrain": {"windows": replay_table.to_dict(orient="index"), "daily": replay_daily.to_dict("records")},
    "ab_per_share": ab.to_dict(orient="index"),
    "monitoring": mon["state"].value_counts().to_dict(),
    "versions": {"outcome": f"rm-realised-{METRIC}-{len(parts['train'])}", "ev": f"rm-ev-reference-{len(as_pairs['train'])}",
                 "process": "prm-facts+outcome-1"},
}
(OUT / "metrics.json").write_text(json.dumps(metrics_out, indent=2, default=float))

# %% [markdown]
# **What to read from this notebook.** Realised outcomes are noisy labels: the ceiling says how much of them any
# model could predict, and the expected-value test set says whether what the reward model learnt from them is the
# true ordering of decisions. The pickers are judged on expected value and realised return, never on a score one
# of them was trained on; the sentences above say plainly where the reward model wins and where it does not.
# Notebook 07 takes up the process-versus-outcome question with reinforcement learning.
