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
# # 07 · RLHF with process supervision: does rewarding each step beat rewarding the outcome?
#
# **What this notebook answers.** The crypto-trading RLHF guide behind this project borrows OpenAI's finding for
# mathematics — rewarding each reasoning step beats rewarding only the final answer ("Let's Verify Step by Step",
# Lightman et al. 2023; Cobbe et al. 2021 for outcome-supervised verifiers) — and applies it to trading. Here we
# test that claim on the four-step trading analyses of notebooks 05 and 06, and report what we find, whichever
# way it goes.
#
# **Two experiments**, both on held-out **test-period** prompts:
#
# 1. *Reinforcement learning.* Notebook 06's SFT model is fine-tuned with GRPO (Shao et al. 2024, DeepSeekMath:
#    a group of sampled analyses per prompt, each rewarded, advantages standardised within the group, a KL pull
#    towards the SFT model) for each reward scheme and each of `SEEDS` — same start, prompts and number of steps — with an
#    **outcome-only** reward (the market result of following the analysis' signal, replayed on the recorded
#    quotes), a **process-only** reward (every step scored: +0.5 if all its claims are true, −0.2 otherwise,
#    weighted per step, plus the guarded keyword rewards) and the guide's **combined** reward.
# 2. *Best-of-n.* The SFT model samples several analyses per prompt; the outcome reward model of notebook 05,
#    its process reward model, or the step verifier (an oracle) keeps one — Lightman et al.'s own comparison.
#
# Before training we check that there is something to learn: the reward's spread *within* GRPO groups (an advantage
# is a reward standardised within its group). After training, besides the share of true steps (which the process
# reward optimises, so it would "win" there by construction), three targets no scheme optimises directly: the
# expected P&L of the final signal under the simulator's true probability (evaluation only), the realised P&L of
# following it, and verifier claims the process reward does not see (`rlhf.HELD_OUT_CLAIMS`). For each: bootstrap
# 95 % intervals over prompts, paired comparisons on the same prompts averaged over seeds, and the smallest effect
# the design can detect; plus calibration of the stated confidence (ECE, Brier). RL prompts come from the train and validation periods
# only, ordered by a curriculum (clear, calm markets first; then mixed; then conflicting, near-threshold,
# volatile ones). The sizes come from `rlhf_config.yaml` and its `cpu` / `gpu` block.

# %% tags=["parameters"]
CONFIG = "rlhf_config.yaml"  # RLHF configuration (relative paths: the project root)
PROFILE = None  # its override block, "cpu" or "gpu" (None: by the device)
SFT_DIR = None  # folder with notebook 06's sft_adapter and base (None: models/llm of the work directory)
SCHEMES = ["outcome-only", "process-only", "combined"]  # reward schemes trained with GRPO
PROCESS_REWARD = "verifier"  # process reward during RL: "verifier" (step labels) or "prm" (notebook 05's model)
RL_PROMPTS = 96  # train/val prompts GRPO reads; RL steps: RL_PROMPTS / PROMPTS_PER_STEP x rlhf.rl_epochs (48 here)
PROMPTS_PER_STEP = 2  # prompts per RL step (each with NUM_GENERATIONS completions)
SEEDS = [7, 8, 9]  # GRPO seeds per scheme (same prompts, same start): the spread between seeds is part of the answer
RL_LEARNING_RATE = 2e-4  # LoRA learning rate of GRPO (None: rlhf.learning_rate of the configuration)
NUM_GENERATIONS = 8  # completions per prompt, the GRPO group (None: 4 on CPU, 8 on GPU)
MAX_COMPLETION_LENGTH = 256  # longest rollout in tokens (None: 240 on CPU, 512 on GPU)
KL_BETA = 0.04  # KL penalty towards the SFT model (Shao et al. 2024)
RL_TEMPERATURE = 0.9  # sampling temperature of the rollouts (checked below: signals must stay parseable)
CURRICULUM = "curriculum"  # prompt order: "curriculum" (easy first), "random" or "reverse"
N_EVAL_PROMPTS = 200  # held-out test-period prompts
BEST_OF_N = 8  # analyses sampled per prompt for reranking
TEMPERATURE = 0.7  # sampling temperature of the evaluation
MAX_NEW_TOKENS = 256  # longest analysis written at evaluation, in tokens
HOLD_MINUTES = 10  # longest hold when following a signal (positions also close at stop, target or expiry)
N_BOOT = 1000  # bootstrap replicates of the intervals
SEED = 7  # seed of prompt sampling, initialisation, rollouts and decoding

# %%
import pandas as pd
from IPython.display import display

from workbench import config, llm, plots, rlhf
from workbench.analysis import rlconfig

P = config.paths().ensure()
OUT = P.processed / "07_rlhf"
MODELS = P.models / "rlhf"
pd.set_option("display.max_columns", 40, "display.width", 220, "display.max_colwidth", 110)
cfg = rlconfig.load_config(rlhf.resolve_config(CONFIG), PROFILE or rlhf.device_kind())
inputs = rlhf.load_inputs(P.processed, P.models, cfg, SFT_DIR)
hold_ms = HOLD_MINUTES * 60_000
outcome = rlhf.ReplayOutcome(inputs.source, cfg, hold_ms)
display(inputs.describe().to_frame())

# %% [markdown]
# ## 1. The reward functions, and the guard against reward hacking
#
# Each row is one analysis of the same decision point, differing in one way; the columns are the components
# (`rlhf_config.yaml`'s values) and the total under each scheme. The guide pays for mentioning RSI, MACD,
# Bollinger bands and support/resistance. Paid naively, padding a *false* analysis with those words raises its
# reward; the guard pays a mention only inside a step whose claims are all true. The verifier requires the MACD,
# Bollinger and support/resistance claims, so a terse analysis that leaves them out is false, not "terse but true".

# %%
point = inputs.points[inputs.points["period"] == "train"].iloc[0]
crafted = rlhf.crafted_analyses(llm.facts_of(point["facts"]), cfg, SEED)
debug = rlhf.debug_rewards(list(crafted.values()), [llm.facts_of(point["facts"])] * len(crafted), cfg, outcome,
                           [{"time": int(point["time"])}] * len(crafted), names=list(crafted))
display(debug.round(3))

# %% [markdown]
# ## 2. Curriculum: clear, calm markets first
#
# Difficulty from the facts alone (no outcome): a small mispricing (ambiguity), high volatility, conflicting
# votes (mispricing, MACD, RSI), labels sitting on a threshold (a copying error flips them) and little time
# left. The pool is the train and validation periods, minus decision points whose outcome window reaches the
# test period; `RL_PROMPTS` are drawn evenly from the three stages and read in order.

# %%
pool = rlhf.rl_pool(inputs.points, hold_ms)
prompts = rlhf.build_curriculum(pool, cfg, RL_PROMPTS, SEED, CURRICULUM)
print(f"{len(pool):,} train/val decision points in the pool; {len(prompts)} RL prompts")
display(rlhf.stage_summary(prompts).round(3))
plots.save(rlhf.curriculum_figure(prompts), "07_curriculum");

# %% [markdown]
# ## 3. Is there anything to learn? Reward variance within GRPO groups, before training
#
# GRPO's advantage is a completion's reward standardised within its group (the completions of one prompt), so
# a group whose rewards are all equal teaches nothing. From the starting (SFT) policy, `NUM_GENERATIONS`
# rollouts per RL prompt at the rollout temperature: per scheme, the mean within-group standard deviation and
# the share of groups with no variance at all; and the share of rollouts with a parseable signal (an
# unparseable one gets the losing-trade reward, which is noise rather than signal).

# %%
settings = rlhf.rl_settings(cfg, learning_rate=RL_LEARNING_RATE, num_generations=NUM_GENERATIONS,
                            max_completion_length=MAX_COMPLETION_LENGTH, beta=KL_BETA, temperature=RL_TEMPERATURE,
                            prompts_per_step=PROMPTS_PER_STEP, seed=SEED)
display(pd.Series(settings.to_dict()).to_frame("GRPO settings").T)
rewards = rlhf.grpo_reward_functions(cfg, outcome, PROCESS_REWARD, inputs.reward_models.prm, SCHEMES)
sft_model, sft_tok = llm.load_policy(inputs.base, inputs.adapters)
variance, rollouts = rlhf.group_reward_variance(sft_model, sft_tok, prompts, rewards, settings.num_generations,
                                                settings.temperature, settings.max_completion_length, SEED)
display(variance.round(3))
del sft_model

# %% [markdown]
# ## 4. GRPO with each reward scheme, several seeds
#
# The SFT adapter is merged into the base and a new LoRA adapter is trained with trl's `GRPOTrainer` (rollouts
# sampled by the workbench's fast decoder over the current weights); the KL reference is the SFT model itself
# (the adapter disabled). Every scheme starts from the same weights and reads the same prompts in the same order;
# each is trained with every seed of `SEEDS`. The outcome reward replays each rollout's signal on the recorded
# quotes (entry at the ask or bid of the facts, exit at its stop, its target, the expiry or after
# `HOLD_MINUTES`); those windows end before the test period begins. The process reward does not see the
# verifier's label claims `rlhf.HELD_OUT_CLAIMS`: they are a held-out target below.

# %%
results = rlhf.train_schemes(inputs, prompts, rewards, settings, MODELS, seeds=SEEDS)
display(rlhf.training_summary(results).round(3))
plots.save(rlhf.training_figure({k: r.history for k, r in results.items()}, {k: r.records for k, r in results.items()}),
           "07_training");

# %% [markdown]
# ## 5. Held-out evaluation of the policies
#
# One analysis per test-period prompt from the SFT model and each policy (seeded sampling); the analyst's own
# analyses as a reference. Calibration: does a stated confidence of 0.8 win 80 % of the time (trades with a
# known outcome)? Market result: following each BUY / SELL on the recorded quotes, per share. Below the table,
# paired differences on the same prompts (process-only minus outcome-only).

# %%
examples = rlhf.test_examples(inputs.points, N_EVAL_PROMPTS)
generation = llm.GenerationSettings(temperature=TEMPERATURE, max_new_tokens=MAX_NEW_TOKENS, seed=SEED)
rl_scored = rlhf.evaluate_policies(rlhf.policy_loaders(inputs, results), examples, generation, inputs.source, hold_ms, cfg)
rl_summary = rlhf.summary_table(rl_scored, N_BOOT, SEED)
display(rlhf.display_table(rl_summary))

# %% [markdown]
# ### Targets no scheme optimises, and what the design can detect
#
# Per scheme and seed, on the same test prompts: the **expected P&L per share of the final signal under the
# simulator's true probability of Up** (evaluation only; real data has no truth), the **realised P&L** of
# following it (HOLD = 0), the share of true **held-out label claims** (not in the process reward), and the true-step
# share (which the process reward does optimise, shown for contrast). Then each pair of schemes, per prompt
# averaged over seeds: the paired difference with its 95 % interval and the **minimum detectable effect** (80 %
# power, two-sided 5 %) of this design.

# %%
true_path, truth_note = rlhf.truth_path(P.processed, P.raw)
print(truth_note)
names = {k: (r.scheme, int(r.info["seed"])) for k, r in results.items()}
rl_targets = rlhf.attach_targets(rl_scored, examples, true_path, names)
targets = rlhf.target_table(rl_targets[rl_targets["model"] != "reference (analyst)"], N_BOOT, SEED)
display(targets.round(4))
ceiling = rlhf.ev_ceiling(examples, true_path, N_BOOT, SEED) if true_path is not None else None
print("true-EV ceiling (the best action at each prompt under the truth):", ceiling)
pairs_ = [(a, b) for i, a in enumerate(SCHEMES) for b in SCHEMES[i + 1:]]
scheme_comparisons = pd.concat([rlhf.scheme_comparison(rl_targets, a, b, N_BOOT, SEED) for a, b in pairs_]
                               + [rlhf.scheme_comparison(rl_targets, s, "SFT", N_BOOT, SEED) for s in SCHEMES],
                               ignore_index=True)
display(scheme_comparisons.round(4))

# %% [markdown]
# ## 6. Best-of-n: outcome versus process reward model
#
# `BEST_OF_N` analyses per test prompt from the SFT model; each scorer keeps one. The process reward model
# scores an analysis by the product of its steps' probabilities (Lightman et al.); the verifier's weighted
# process reward is the oracle a perfect process model would reach.

# %%
bon_scored, candidates = rlhf.best_of_n_study(inputs, examples, BEST_OF_N, generation, hold_ms)
bon_summary = rlhf.summary_table(bon_scored, N_BOOT, SEED)
display(rlhf.display_table(bon_summary))

# %% [markdown]
# ## 7. Diagnostics: rewards per step type, the worst steps, and rewards against outcomes
#
# The guide's `analyze_steps` and `debug_rewards`: which step types are true how often, how the process reward
# model scores true and false steps of each type, the lowest-scored steps with the claims that failed, and how
# each reward correlates with what following the signal actually earned (Spearman, bootstrap interval).

# %%
steps = rlhf.step_table(list(rl_scored["text"]), rlhf.scored_facts(rl_scored, examples), cfg, inputs.reward_models.prm,
                        list(rl_scored["model"]), list(rl_scored["prompt_id"]))
display(rlhf.analyze_steps(steps, ("model", "step")).round(3))
display(rlhf.worst_steps(steps[steps["model"] != "reference (analyst)"], 8))
plots.save(rlhf.step_figure(steps), "07_steps");

# %%
candidates = rlhf.attach_returns(candidates, examples, inputs.source, cfg, hold_ms)
scorer_cols = [c for c in candidates.columns if c not in ("prompt_id", "sample", "text", "ret0")]
display(rlhf.reward_outcome_correlation(candidates, scorer_cols, "ret0", N_BOOT, SEED).round(3))
plots.save(rlhf.correlation_figure(candidates, scorer_cols, "ret0"), "07_reward_vs_return");

# %% [markdown]
# ## 8. The guide's entry point
#
# `RLHFTradingTrainer(config_path).generate_trading_analysis(market)` with the guide's example market. The
# generic dict lacks most of the prompt's facts (an Up/Down market's quotes, the move since the open...); the
# decision lists every assumption made. It loads the `combined` policy trained above.

# %%
trainer = rlhf.RLHFTradingTrainer(CONFIG, models_dir=P.models, profile=PROFILE)
market = {"symbol": "BTC", "close": 43250.0, "change_24h": 2.5, "rsi": 62.5, "macd": 0.15, "bb_position": 0.7}
decision = trainer.generate_trading_analysis(market)
print(decision["model"], decision["final_signal"], decision["confidence"])
print(decision["final_reasoning"])
print("assumptions:", *decision["assumptions"], sep="\n  - ")

# %% [markdown]
# ## 9. Process versus outcome: the table and the answer
#
# Each row: a reward scheme (RL) or a reranker (best-of-n); each cell: the estimate and its bootstrap 95 %
# interval on the same test-period prompts. The answer below is computed from the paired differences: a scheme
# "beats" another only when the interval of the per-prompt difference excludes zero.

# %%
final = rlhf.final_table(rl_summary, bon_summary)
plots.save(rlhf.comparison_figure(pd.concat([rl_summary, bon_summary])), "07_comparison")
rlhf.save_outputs(OUT, {"settings": settings.to_dict(), "schemes": SCHEMES, "process_reward": PROCESS_REWARD,
                        "rl_prompts": len(prompts), "n_eval_prompts": len(examples), "best_of_n": BEST_OF_N,
                        "market_outcomes": inputs.source_note, "policies": {k: str(r.output_dir) for k, r in results.items()}},
                  rl_summary=rl_summary, bon_summary=bon_summary, final_table=final, rl_analyses=rl_scored,
                  bon_analyses=bon_scored, candidates=candidates, steps=steps, prompts=prompts,
                  training=rlhf.training_summary(results), targets=targets, scheme_comparisons=scheme_comparisons,
                  group_variance=variance.reset_index())
llm.save_json(rlhf.rl_metrics(variance, targets, scheme_comparisons, settings.to_dict(),
                              {"seeds": SEEDS, "truth": truth_note, "n_eval_prompts": len(examples),
                               "held_out_claims": list(rlhf.HELD_OUT_CLAIMS), "true_ev_ceiling": ceiling,
                               "rl_seconds": {k: r.seconds for k, r in results.items()},
                               "rl_steps": {k: r.steps for k, r in results.items()}}), OUT / "metrics.json")
display(final)
print(rlhf.conclusion(rl_scored, bon_scored, process=f"process-only (seed {SEEDS[0]})" if len(SEEDS) > 1 else "process-only",
                      outcome=f"outcome-only (seed {SEEDS[0]})" if len(SEEDS) > 1 else "outcome-only", n_boot=N_BOOT,
                      seed=SEED))
print("\nAll seeds, per prompt averaged over seeds:")
for c in scheme_comparisons.itertuples():
    print(f"  {c.comparison} on {c.target}: {c.diff:+.4f} [{c.lo:+.4f}, {c.hi:+.4f}], {c.prompts} prompts; smallest "
          f"effect this design detects (80 % power): {c.mde_80pct_power:.4f} -> "
          f"{'detected' if c.detected else 'not detected'}")
