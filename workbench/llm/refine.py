"""Iterative dataset refinement (design document 004): the model's analyses that fail the verifier are corrected
from the facts and fed back, round after round, with the gain of each round measured on held-out prompts.

Round ``r`` starts from the policy of round ``r - 1`` (the base with the chain of adapters so far):

1. it writes one analysis for each of ``per_round`` training prompts (a fresh seeded sample each round);
2. :class:`workbench.analysis.StepVerifier` checks every claim; an analysis whose four steps are all true is kept
   as written (a verified self-generated example, as in rejection-sampling fine-tuning), one that fails is
   **corrected from the facts**: replaced by the analyst's analysis of the same facts (every claim true by
   construction, :mod:`workbench.analysis.analyst`);
3. a new LoRA adapter is trained on those examples for ``steps`` optimizer steps, on top of the merged policy.

Gains could come from the extra steps alone, so a **control** arm runs the same rounds with the same number of
steps on a random sample of the original SFT examples (no verifier, no correction). Both arms are scored after
every round on the same held-out prompts with the same decoding; the table gives each round's true-step share
with a 95 % bootstrap interval over prompts, its gain over round 0 and the refined-minus-control difference,
paired by prompt, with the smallest difference the design can detect.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench import metrics

ARMS = ("refined", "control")


def _score(model: Any, tok: Any, examples: pd.DataFrame, generation: Any) -> np.ndarray:
    """True-step share of the model's analysis of each held-out prompt (:func:`score_analyses`' verdicts)."""
    from workbench.llm.evaluate import generate, score_analyses

    texts = generate(model, tok, list(examples["prompt"]), generation)
    return score_analyses("policy", texts, examples)["true_step_share"].to_numpy(float)


def refinement_examples(model: Any, tok: Any, sample: pd.DataFrame, generation: Any) -> tuple[pd.DataFrame, dict[str, int]]:
    """The round's training examples from ``sample`` (SFT rows): the model's analysis where all four steps verify,
    else the analyst's analysis of the same facts. Returns ``(prompt/completion frame, counts)``."""
    from workbench.llm.evaluate import generate, score_analyses

    texts = generate(model, tok, list(sample["prompt"]), generation)
    ok = score_analyses("draft", texts, sample)["all_steps_true"].to_numpy(bool)
    completion = np.where(ok, np.array(texts, dtype=object), sample["completion"].to_numpy(dtype=object))
    counts = {"generated": int(len(ok)), "verified_kept": int(ok.sum()), "corrected": int((~ok).sum())}
    return pd.DataFrame({"prompt": sample["prompt"].to_numpy(), "completion": completion}), counts


def refinement_study(base: Any, start_adapters: Sequence[str | Path], train: pd.DataFrame, held_out: pd.DataFrame,
                     out_dir: str | Path, rounds: int = 2, per_round: int = 64, steps: int = 40, lora: Any = None,
                     settings: Any = None, generation: Any = None, task: Any = None, seed: int = 0,
                     n_boot: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run both arms for ``rounds`` rounds; see the module docstring.

    Parameters
    ----------
    base : :class:`workbench.llm.train.BaseModel` (its folder is reloaded for every round's policy).
    start_adapters : the adapter chain of the starting policy (e.g. the SFT adapter).
    train : SFT training rows (``prompt``, ``completion``, ``facts``): the pool each round samples from.
    held_out : test-period rows (``prompt``, ``facts``) scored after each round.
    out_dir : folder of the rounds' adapters (``<arm>/round_<r>``).
    settings : :class:`workbench.llm.train.TrainSettings` of each round (``max_steps`` is set to ``steps``).

    Returns
    -------
    (table, per_prompt) : one row per (arm, round) with ``true_step_share`` [lo, hi], ``gain`` over round 0
    [lo, hi], the counts of the round's data, and ``refined_minus_control`` [lo, hi] with ``detectable``; and
    the per-prompt scores (arm, round, prompt, score).
    """
    from workbench.llm.train import BaseModel, load_policy, settings_for, train_sft

    s = dataclasses.replace(settings or settings_for("sft"), max_steps=int(steps), seed=seed)
    model, tok = load_policy(base.path, list(start_adapters))
    s0 = _score(model, tok, held_out, generation)
    scores: dict[tuple[str, int], np.ndarray] = {(arm, 0): s0 for arm in ARMS}
    info: dict[tuple[str, int], dict[str, Any]] = {}
    for arm in ARMS:
        chain = [str(a) for a in start_adapters]
        for r in range(1, rounds + 1):
            model, tok = load_policy(base.path, chain)
            sample = train.sample(min(per_round, len(train)), random_state=seed + 101 * r).reset_index(drop=True)
            if arm == "refined":
                data, counts = refinement_examples(model, tok, sample, generation)
            else:
                data, counts = sample[["prompt", "completion"]], {"generated": 0, "verified_kept": 0, "corrected": 0}
            res = train_sft(BaseModel(model, tok, base.path, base.report), data, None, Path(out_dir) / arm / f"round_{r}",
                            lora, s, task=task)
            chain.append(str(res.output_dir))
            model, tok = load_policy(base.path, chain)
            scores[(arm, r)] = _score(model, tok, held_out, generation)
            info[(arm, r)] = {**counts, "steps": res.steps, "seconds": res.seconds}
    rows = []
    for (arm, r), v in scores.items():
        m, lo, hi = metrics.bootstrap_ci(v, np.mean, n_boot=n_boot, seed=seed)
        g, glo, ghi = metrics.paired_bootstrap_diff(v, s0, n_boot=n_boot, seed=seed)
        row = {"arm": arm, "round": r, "true_step_share": m, "lo": lo, "hi": hi, "gain": g, "gain_lo": glo,
               "gain_hi": ghi, **info.get((arm, r), {"generated": 0, "verified_kept": 0, "corrected": 0, "steps": 0,
                                                      "seconds": 0.0})}
        if arm == "refined":
            d, dlo, dhi = metrics.paired_bootstrap_diff(v, scores[("control", r)], n_boot=n_boot, seed=seed)
            row.update({"refined_minus_control": d, "rmc_lo": dlo, "rmc_hi": dhi,
                        "detectable": metrics.detectable_difference(metrics.se_from_interval(dlo, dhi))})
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["arm", "round"], ascending=[False, True]).reset_index(drop=True)
    per_prompt = pd.DataFrame([{"arm": a, "round": r, "prompt": i, "score": float(x)}
                               for (a, r), v in scores.items() for i, x in enumerate(v)])
    return table, per_prompt


def refinement_verdict(table: pd.DataFrame) -> str:
    """A plain sentence on the last round: did refinement beat more steps on the original data?"""
    last = table[table["arm"] == "refined"].iloc[-1]
    ctrl = table[(table["arm"] == "control") & (table["round"] == last["round"])].iloc[0]
    d, lo, hi = last["refined_minus_control"], last["rmc_lo"], last["rmc_hi"]
    word = ("beats" if lo > 0 else "is worse than" if hi < 0 else "is not distinguishable from")
    return (f"After {int(last['round'])} round(s), refinement {word} the control: true steps "
            f"{last['true_step_share']:.1%} [{last['lo']:.1%}, {last['hi']:.1%}] vs {ctrl['true_step_share']:.1%} "
            f"[{ctrl['lo']:.1%}, {ctrl['hi']:.1%}] (difference {d:+.1%} [{lo:+.1%}, {hi:+.1%}], detectable "
            f"{last['detectable']:.1%}); gain over round 0 {last['gain']:+.1%} [{last['gain_lo']:+.1%}, {last['gain_hi']:+.1%}]; "
            f"{int(table.loc[table['arm'] == 'refined', 'corrected'].sum())} analyses were corrected from the facts.")
