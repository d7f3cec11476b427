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
# # 10 · One language model for three tasks, and a training set that corrects itself
#
# **What this notebook answers.** Design document 004's advanced training techniques, on notebook 06's models:
#
# 1. **Multi-task, instruction-tuned fine-tuning.** Does one LoRA adapter trained on analyses, market commentaries
#    and chat answers — each asked with varied instructions — write each of them better or worse than the
#    single-task adapter of notebook 06, which saw analyses only, at the same training budget?
# 2. **Iterative dataset refinement.** If the analyses the model gets wrong are corrected from the facts and fed
#    back, round after round, does the model improve more than it would from the same extra steps on the original
#    data?
#
# Every score is on notebook 06's test period (prompts, commentary times and decision points the adapters never
# saw), by each task's own verifier, with 95 % bootstrap intervals over those units and, for each comparison, the
# smallest difference the design can detect. The base, the SFT adapter and their settings are read from
# `models/llm/` (notebook 06 must have run); nothing here changes them.

# %% tags=["parameters"]
SPLIT_RATIO = 0.9  # SFT train share of the train+val periods (as notebook 06)
N_EVAL_PROMPTS = 200  # notebook 06's held-out sample of test prompts (the first ones are used below)
TEMPERATURE = 0.7  # sampling temperature
TOP_P = 0.95  # nucleus sampling mass
MAX_NEW_TOKENS = 256  # longest generated text in tokens
GREEDY = False  # greedy decoding instead of sampling
COMMENTARY_WINDOW = 60  # minutes summarised by a market commentary
MT_COMMENTARY_EVERY = 4  # multi-task: a commentary example at every k-th training decision time
MT_CHAT_POINTS = 500  # multi-task: training decision points with chat answers (2 questions each)
N_MT_EVAL = 100  # multi-task comparison: held-out analysis prompts and commentary times scored per model
N_MT_CHAT = 20  # multi-task comparison: held-out decision points asked the chat protocol
REFINE_ROUNDS = 2  # iterative refinement rounds (0: skip)
REFINE_PER_ROUND = 128  # training prompts the model writes (and the verifier checks) per round
REFINE_STEPS = 40  # optimizer steps per round, in both arms
N_REFINE_EVAL = 100  # held-out prompts scored after each round
SEED = 7  # seed of sampling, mixing and training

# %%
import pandas as pd
from IPython.display import display

from workbench import config
from workbench import llm
from workbench.llm import pipeline

P = config.paths().ensure()
OUT = P.processed / "10_llm_multitask"
MODELS = P.models / "llm"
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_columns", 40, "display.width", 220, "display.max_colwidth", 120)
stage = llm.load_stage(MODELS)
task = stage.task
inputs = llm.load_inputs(P.processed, SPLIT_RATIO, task.prompt_style)
ds = inputs.sft
examples = ds.test.sample(min(N_EVAL_PROMPTS, len(ds.test)), random_state=SEED).sort_values("time").reset_index(drop=True)
generation = llm.GenerationSettings(temperature=TEMPERATURE, top_p=TOP_P, max_new_tokens=MAX_NEW_TOKENS, greedy=GREEDY,
                                    seed=SEED)
bars = llm.market_data(P.processed)
print(f"base {stage.base.path} ({stage.base.parameters:,} parameters), SFT adapter {stage.sft_dir}, "
      f"{stage.settings.max_steps} steps of batch {stage.settings.batch_size}; test prompts {len(examples)}")

# %% [markdown]
# ## 1. The multi-task training mix
#
# From the SFT train split only: every analysis of notebook 06 (prefixed with one of four instruction phrasings,
# the canonical empty one among them), a commentary at every `MT_COMMENTARY_EVERY`-th decision time (the
# template's text for the hour before it, with one of three closing instructions), and two chat answers at each
# of `MT_CHAT_POINTS` decision points (the protocol's single-turn questions, half of them re-typed as a user
# would, the messages exactly as the chat session sends them to a model and the facts responder's answer as the
# target). One adapter trains on the shuffled mix with the single-task adapter's settings and step budget.

# %%
mt_data = llm.multitask_data(ds, stage.base.tokenizer, bars, task.system, commentary_every=MT_COMMENTARY_EVERY,
                             chat_points=MT_CHAT_POINTS, window_minutes=COMMENTARY_WINDOW, seed=SEED)
display(mt_data.groupby("task").size().to_frame("training examples"))
multi = llm.train_sft(stage.base, mt_data, None, MODELS / "multitask_adapter", stage.lora, stage.settings, task=task)
display(pd.Series(multi.summary()).to_frame("multi-task SFT"))

# %% [markdown]
# ## 2. Each task scored by its own verifier
#
# The canonical prompts the pipelines send, on the test period: the share of true analysis steps, the share of
# the template's commentary claims that a commentary states *and* gets right (a claim left out counts as wrong),
# and the share of the chat protocol's questions answered relevantly and accurately with the model answering.
# The single-task model was never trained on commentaries or chat, so its rows there are the floor the extra
# tasks must lift; the analysis row says what they cost.

# %%
mt_eval = examples.iloc[:N_MT_EVAL]
sets = llm.TaskSets(analysis=mt_eval, commentary_times=list(mt_eval["time"]), chat=examples.iloc[:N_MT_CHAT], market=bars,
                    window_minutes=COMMENTARY_WINDOW)
multitask_table, multitask_rows = llm.multitask_study(stage.base.path, [stage.sft_dir], [multi.output_dir], sets,
                                                      generation, seed=SEED)
display(multitask_table.round(3))
print(llm.multitask_verdict(multitask_table))

# %% [markdown]
# **Reading it.** The verdict line is the answer at this size and budget. The single-task rows for commentary and
# chat are the floor (the model never saw those tasks); the multi-task rows say whether a share of the same 250
# steps teaches a base that was pretrained on analyses alone a new output format. Where they stay near that floor
# while the analysis row drops, multi-task training has taken steps from the task the model could do without
# teaching it the others: at this size the tasks compete for the budget rather than help one another, and each
# new task needs its own pretraining text or many more steps. A larger base (the same cells with notebook 06's
# `BASE_MODEL` pointing at a local model) is where the design document expects sharing to pay.

# %% [markdown]
# ## 3. Iterative dataset refinement
#
# Round by round, the SFT model writes analyses for a fresh sample of training prompts; those whose four steps
# all verify are kept as written, those that fail are corrected from the facts (the analyst's analysis of the
# same facts), and a new adapter is trained on them on top of the current policy. A control arm spends the same
# steps on a random sample of the original SFT examples, so a gain from more steps alone is not credited to
# refinement. Both are scored after every round on the same held-out prompts with the same decoding.

# %%
refine_table, refine_rows = (llm.refinement_study(stage.base, [stage.sft_dir], ds.train, examples.iloc[:N_REFINE_EVAL],
                                                  MODELS / "refine", rounds=REFINE_ROUNDS, per_round=REFINE_PER_ROUND,
                                                  steps=REFINE_STEPS, lora=stage.lora, settings=stage.settings,
                                                  generation=generation, task=task, seed=SEED)
                             if REFINE_ROUNDS > 0 else (pd.DataFrame(), pd.DataFrame()))
if len(refine_table):
    display(refine_table.round(3))
    print(llm.refinement_verdict(refine_table))

# %% [markdown]
# ## 4. Saved outputs
#
# The multi-task adapter and the rounds' adapters under `models/llm/` (`multitask_adapter/`, `refine/<arm>/round_<r>/`);
# tables and `metrics.json` under `data/processed/10_llm_multitask/`.

# %%
pipeline.save_tables(OUT, multitask=multitask_table.reset_index(), multitask_units=multitask_rows.drop(columns="text"),
                     refinement=refine_table, refinement_prompts=refine_rows)
pipeline.save_json({"multitask": {"training_examples": mt_data.groupby("task").size().to_dict(), "steps": multi.steps,
                                  "seconds": round(multi.seconds, 1), "by_task": multitask_table.reset_index().to_dict("records"),
                                  "verdict": llm.multitask_verdict(multitask_table)},
                    "refinement": {"rounds": refine_table.to_dict("records"),
                                   "verdict": llm.refinement_verdict(refine_table) if len(refine_table) else None},
                    "generation": generation.to_dict(), "n_test_prompts": len(examples)}, OUT / "metrics.json")
print(sorted(p.name for p in OUT.iterdir()))
