"""Multi-task, instruction-varied fine-tuning against the single-task model (design document 004, "Advanced
training techniques").

One LoRA adapter is trained on three tasks mixed — the four-step **analysis** of a decision point, the **market
commentary** of the last hour and **chat answers** about a decision — each asked with one of several instruction
phrasings (the canonical one among them). The single-task adapter of notebook 06 saw analyses only. Both get the
same optimizer steps from the same base, so the comparison answers the design's question at a fixed budget:
does sharing the adapter with other tasks help or hurt each task at this model size?

Each task is scored on the test period by its own verifier, with the canonical prompt the pipelines send:

* analysis: the share of the four steps whose every claim is true (:class:`workbench.analysis.StepVerifier`);
* commentary: the share of the template's claims that the text states *and* gets right (a claim left out counts
  as wrong, so a terse text cannot score; :class:`workbench.llm.commentary.CommentaryVerifier`);
* chat: the share of the protocol's questions (:data:`workbench.llm.chat_eval.QUESTIONS`) answered relevantly and
  accurately by the model responder.

Intervals are bootstrap intervals over the independent units (prompts, commentary times, chat decision points);
differences are paired over the same units, with the smallest difference the design can detect (80 % power at
the 5 % level: 2.8 standard errors of the paired difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.llm.chat import ChatSession
from workbench.llm.chat_eval import QUESTIONS, Question, evaluate_chat
from workbench.llm.commentary import (COMMENTARY_INSTRUCTION, COMMENTARY_SYSTEM, CommentaryVerifier, commentary_facts,
                                      commentary_prompt, template_commentary)
from workbench.llm.data import facts_of

TASKS = ("analysis", "commentary", "chat")

#: Instruction phrasings per task; the empty one (analysis) and the canonical sentence (commentary) are those the
#: pipelines send, so training on them never moves the evaluation away from what is used.
ANALYSIS_INSTRUCTIONS: tuple[str, ...] = (
    "", "Analyse this decision point step by step.", "Write the four-step analysis and the signal for these facts.",
    "Given the market facts below, explain your trade decision in four steps.")
COMMENTARY_INSTRUCTIONS: tuple[str, ...] = (
    COMMENTARY_INSTRUCTION, "Summarise the last hour of the market in three sentences with these numbers.",
    "Write a short commentary on the market, stating only the numbers above.")


def analysis_examples(frame: pd.DataFrame, system: str | None, seed: int = 0,
                      instructions: Sequence[str] = ANALYSIS_INSTRUCTIONS) -> pd.DataFrame:
    """Analysis examples of decision points (``prompt``, ``completion``, ``time``), each asked with a seeded
    choice of ``instructions`` (prefixed on its own line). Columns: task, system, prompt, completion, time."""
    rng = np.random.default_rng([seed, 1])
    pick = rng.integers(0, len(instructions), size=len(frame))
    prompts = [(instructions[k] + "\n" if instructions[k] else "") + p for k, p in zip(pick, frame["prompt"])]
    return pd.DataFrame({"task": "analysis", "system": system, "prompt": prompts,
                         "completion": frame["completion"].to_numpy(), "time": frame["time"].to_numpy()})


def commentary_facts_at(market: pd.DataFrame, times: Sequence[int], window_minutes: int = 60) -> list[tuple[int, Any]]:
    """``(time, CommentaryFacts)`` of the window ending at each of ``times`` (UTC ms); a time with too little
    history before it is skipped."""
    out = []
    for t in times:
        try:
            out.append((int(t), commentary_facts(market, pd.Timestamp(int(t), unit="ms", tz="UTC"), window_minutes)))
        except ValueError:
            continue
    return out


def commentary_examples(market: pd.DataFrame, times: Sequence[int], window_minutes: int = 60, seed: int = 0,
                        instructions: Sequence[str] = COMMENTARY_INSTRUCTIONS) -> pd.DataFrame:
    """Commentary examples at ``times`` (UTC ms) from one-minute closes (notebook 02's ``log_close``): the
    template's commentary (every claim true) for the facts of the window ending at each time; times with too
    little history are skipped. The closing instruction is a seeded choice of ``instructions``."""
    rng = np.random.default_rng([seed, 2])
    rows = []
    for t, f in commentary_facts_at(market, times, window_minutes):
        prompt = commentary_prompt(f).replace(COMMENTARY_INSTRUCTION, instructions[int(rng.integers(len(instructions)))])
        rows.append({"task": "commentary", "system": COMMENTARY_SYSTEM, "prompt": prompt,
                     "completion": template_commentary(f), "time": int(t)})
    return pd.DataFrame(rows, columns=["task", "system", "prompt", "completion", "time"])


def chat_examples(frame: pd.DataFrame, tokenizer: Any, per_point: int = 2, seed: int = 0,
                  questions: Sequence[Question] = QUESTIONS) -> pd.DataFrame:
    """Chat examples: at each decision point, ``per_point`` seeded questions of the protocol (single-turn ones:
    a follow-up needs its history), the messages exactly as :class:`ChatSession` sends them to a model (system
    message with the facts and the decision's analysis quoted as data; the quoted question) and the facts
    responder's answer as the target (without the decision where the context window leaves it out). The question is re-typed for half of them (lower case, no question
    mark), so the wording varies as a user's would."""
    rng = np.random.default_rng([seed, 3])
    single = [q for q in questions if not q.follows]
    rows = []
    for r in frame.itertuples():
        f = facts_of(r.facts)
        for k in rng.choice(len(single), size=min(per_point, len(single)), replace=False):
            q = single[int(k)].text
            if rng.random() < 0.5:
                q = q.lower().rstrip("?")
            s = ChatSession(f, decision=r.completion, tokenizer=tokenizer)
            dec = None if "decision" in s.omitted else r.completion  # the target never rests on unseen text
            if dec is None:
                s = ChatSession(f, tokenizer=tokenizer)
            msgs, _, _ = s.messages(q)
            answer = ChatSession(f, decision=dec).ask(q).text
            rows.append({"task": "chat", "system": msgs[0]["content"], "prompt": msgs[-1]["content"],
                         "completion": answer, "time": int(r.time)})
    return pd.DataFrame(rows, columns=["task", "system", "prompt", "completion", "time"])


def mix(parts: Sequence[pd.DataFrame], seed: int = 0) -> pd.DataFrame:
    """The tasks' examples shuffled together (seeded)."""
    df = pd.concat(parts, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Scoring each task
# ------------------------------------------------------------------------------------------------
def commentary_score(text: str, f: Any, verifier: CommentaryVerifier | None = None) -> float:
    """Share of the template's claims for ``f`` that ``text`` states and gets right (missing = wrong)."""
    ver = verifier or CommentaryVerifier()
    expected = [c.name for c in ver.verify(template_commentary(f), f).claims]
    ok = {c.name: c.ok for c in ver.verify(text, f).claims}
    return float(np.mean([ok.get(n, False) for n in expected])) if expected else 0.0


@dataclass
class TaskSets:
    """The held-out units of each task: analysis examples (test prompts), commentary times, chat points."""

    analysis: pd.DataFrame
    commentary_times: list[int]
    chat: pd.DataFrame
    market: pd.DataFrame | None
    window_minutes: int = 60


def score_tasks(name: str, model: Any, tokenizer: Any, sets: TaskSets, generation: Any,
                generate_fn: Callable[..., list[str]] | None = None) -> pd.DataFrame:
    """One row per (task, unit) with the unit's ``score`` in [0, 1] for the model ``name``; see the module."""
    from workbench.llm.evaluate import generate, score_analyses

    gen = generate_fn or generate
    rows: list[dict[str, Any]] = []
    texts = gen(model, tokenizer, list(sets.analysis["prompt"]), generation)
    share = score_analyses(name, texts, sets.analysis)["true_step_share"]
    rows += [{"model": name, "task": "analysis", "unit": i, "score": float(v), "text": t}
             for i, (t, v) in enumerate(zip(texts, share))]
    if sets.market is not None and sets.commentary_times:
        cf = [f for _, f in commentary_facts_at(sets.market, sets.commentary_times, sets.window_minutes)]
        ctexts = gen(model, tokenizer, [commentary_prompt(f) for f in cf], generation, system=COMMENTARY_SYSTEM)
        rows += [{"model": name, "task": "commentary", "unit": i, "score": commentary_score(t, f), "text": t}
                 for i, (t, f) in enumerate(zip(ctexts, cf))]
    if len(sets.chat):
        facts = [facts_of(x) for x in sets.chat["facts"]]
        chat = evaluate_chat(lambda f, d: ChatSession(f, decision=d, model=model, tokenizer=tokenizer, responder="model",
                                                      generation=generation), facts, list(sets.chat["completion"]))
        per_point = chat.groupby("point")["accurate"].mean()
        rows += [{"model": name, "task": "chat", "unit": int(p), "score": float(v), "text": None}
                 for p, v in per_point.items()]
    return pd.DataFrame(rows)


def comparison_table(rows: pd.DataFrame, single: str, multi: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per task: each model's mean score with a 95 % bootstrap interval over units, the paired difference
    ``multi - single`` with its interval, and the smallest difference the design can detect (2.8 SE)."""
    out = []
    for task, g in rows.groupby("task", sort=False):
        wide = g.pivot_table(index="unit", columns="model", values="score")
        row: dict[str, Any] = {"task": task, "units": int(len(wide))}
        for m in (single, multi):
            v, lo, hi = metrics.bootstrap_ci(wide[m].to_numpy(float), np.mean, n_boot=n_boot, seed=seed)
            row.update({m: v, f"{m}_lo": lo, f"{m}_hi": hi})
        both = wide[[single, multi]].dropna()
        d, dlo, dhi = metrics.paired_bootstrap_diff(both[multi].to_numpy(float), both[single].to_numpy(float),
                                                   n_boot=n_boot, seed=seed)
        row.update({"diff": d, "diff_lo": dlo, "diff_hi": dhi, "detectable": metrics.detectable_difference(metrics.se_from_interval(dlo, dhi)),
                    "verdict": ("multi-task helps" if dlo > 0 else "multi-task hurts" if dhi < 0 else "no detectable difference")})
        out.append(row)
    return pd.DataFrame(out).set_index("task")


def multitask_data(ds: Any, tokenizer: Any, market: pd.DataFrame | None, system: str | None, commentary_every: int = 4,
                   chat_points: int = 500, chat_per_point: int = 2, window_minutes: int = 60,
                   seed: int = 0) -> pd.DataFrame:
    """The multi-task training mix from the SFT train split only (no eval-split or test-period row): every
    analysis, a commentary at every ``commentary_every``-th decision time (when ``market`` is given) and
    ``chat_per_point`` chat answers at ``chat_points`` seeded decision points."""
    tr = ds.train
    parts = [analysis_examples(tr, system, seed)]
    if market is not None:
        parts.append(commentary_examples(market, list(tr["time"].iloc[::max(1, commentary_every)]), window_minutes, seed))
    pts = tr.sample(min(chat_points, len(tr)), random_state=seed).sort_values("time")
    parts.append(chat_examples(pts, tokenizer, chat_per_point, seed))
    return mix(parts, seed)


def multitask_study(base_path: Any, single: Sequence[Any], multi: Sequence[Any], sets: TaskSets, generation: Any,
                    names: tuple[str, str] = ("single-task", "multi-task"), n_boot: int = 2000,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the single-task and the multi-task policies (adapter chains on ``base_path``) on every task:
    ``(comparison_table, per-unit rows)``."""
    from workbench.llm.train import load_policy

    rows = []
    for name, chain in zip(names, (single, multi)):
        model, tok = load_policy(base_path, [str(a) for a in chain])
        rows.append(score_tasks(name, model, tok, sets, generation))
    per_unit = pd.concat(rows, ignore_index=True)
    return comparison_table(per_unit, names[0], names[1], n_boot=n_boot, seed=seed), per_unit


@dataclass
class Stage:
    """Notebook 06's trained models as notebook 10 finds them: the base, the SFT adapter and how it was trained."""

    base: Any  # workbench.llm.train.BaseModel, loaded from its folder
    sft_dir: Any  # Path of the single-task SFT adapter
    lora: Any  # its LoRASettings
    settings: Any  # its TrainSettings (the multi-task adapter gets the same budget)
    task: Any  # the prompt format (TaskFormat) both were trained with


def load_stage(models_dir: Any) -> Stage:
    """The base model (``<models_dir>/workbench-tiny`` or the local model recorded by the SFT adapter) and the SFT
    adapter of notebook 06, with the LoRA and optimiser settings recorded in the adapter's ``workbench.json``.
    A missing folder raises ``FileNotFoundError`` saying to run notebook 06 first."""
    import json
    from pathlib import Path

    from workbench.llm.model import TaskFormat, load_base
    from workbench.llm.train import BaseModel, LoRASettings, TrainSettings

    sft_dir = Path(models_dir) / "sft_adapter"
    meta_path = sft_dir / "workbench.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{sft_dir} has no trained SFT adapter: run notebook 06 first")
    meta = json.loads(meta_path.read_text())
    base_path = Path(meta["base"])
    if not base_path.exists():
        raise FileNotFoundError(f"the SFT adapter's base {base_path} is missing: run notebook 06 first")
    model, tok, rep = load_base(base_path, load_in_4bit=False)
    lora = LoRASettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["lora"].items()})
    settings = TrainSettings(**meta["settings"])
    return Stage(BaseModel(model, tok, base_path, rep), sft_dir, lora, settings, TaskFormat.of(sft_dir, base_path))


def multitask_verdict(table: pd.DataFrame, multi: str = "multi-task", single: str = "single-task") -> str:
    """One plain sentence per task from :func:`comparison_table`."""
    parts = []
    for task, r in table.iterrows():
        parts.append(f"{task}: {multi} {r[multi]:.1%} [{r[multi + '_lo']:.1%}, {r[multi + '_hi']:.1%}] vs {single} "
                     f"{r[single]:.1%} (difference {r['diff']:+.1%} [{r['diff_lo']:+.1%}, {r['diff_hi']:+.1%}], "
                     f"detectable {r['detectable']:.1%}; {r['verdict']})")
    return "; ".join(parts) + "."
