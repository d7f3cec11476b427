"""The seed's five evaluation criteria, scored automatically on 1-5 scales.

Design document 004 evaluates analyses by factual accuracy, technical relevance, coherence, specificity and
language quality (target: 4.0 each). Each score here is ``1 + 4 x`` a share in [0, 1] computed from the step
verifier and simple text checks, so 5 means every check passes and 1 none:

* **factual accuracy**: share of the analysis' claims that are true (a missing required claim counts false);
* **technical relevance**: share of the six market facts an analysis must use that it states with a value (RSI,
  MACD histogram, Bollinger width, volatility, fair value against the Up price, support/resistance);
* **coherence**: the four steps present in order; the signal follows from the analysis' own steps; step 4
  restates step 2 (the same size and stop, or no position for a HOLD);
* **specificity**: the decision's numbers are stated (signal, confidence, size, stop loss, take profit) and, for
  a trade, the entry and the risk in USDC;
* **language quality**: no repeated word 4-grams, printable ASCII only, every step ends a sentence, length
  within half and twice the reference analysis', and at least 90 % of the words are the analyst's words.

Checked against trivial rules in ``tests/test_llm_criteria.py``: the analyst's analysis of *another* decision
point (a template with wrong numbers) scores ~5 on language and specificity but low on factual accuracy, so no
single criterion is the target; the notebook reports all five.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import STEPS
from workbench.analysis.verifier import StepVerifier, split_steps

CRITERIA = ("factual_accuracy", "technical_relevance", "coherence", "specificity", "language_quality")
TARGET = 4.0

_N = r"[+-]?\d+(?:\.\d+)?"
_RELEVANT = (r"RSI(?:\(14\))?\s*(?:is)?\s*" + _N, r"MACD histogram\s*(?:is)?\s*" + _N, r"Bollinger width\s*(?:is)?\s*" + _N,
             r"Volatility\s*(?:is)?\s*" + _N, r"fair value of\s*" + _N, r"Support\s*" + _N + r".*resistance\s*" + _N)


@functools.lru_cache(maxsize=1)
def analyst_vocabulary() -> frozenset[str]:
    """The words the analyst writes (every signal, label and mistake, over varied synthetic facts)."""
    from workbench.analysis.analyst import Analyst
    from workbench.analysis.facts import MISTAKES, SIGNALS
    from workbench.llm.data import synthetic_facts

    a, words = Analyst(seed=0), set()
    for i, f in enumerate(synthetic_facts(120, seed=0)):
        for sig in SIGNALS:
            words |= set(re.findall(r"[A-Za-z]{2,}", a.write(f, signal=sig, mistakes=[MISTAKES[i % len(MISTAKES)]]).text))
    return frozenset(words)


def _scale(share: float) -> float:
    return float(1.0 + 4.0 * np.clip(share, 0.0, 1.0))


def score_one(text: str, f: Facts, reference: str | None = None, verifier: StepVerifier | None = None) -> dict[str, float]:
    """The five criteria of one analysis (1-5 each)."""
    ver = verifier or StepVerifier()
    v = ver.verify(text, f)
    claims = v.claims
    factual = sum(c.ok for c in claims) / len(claims) if claims else 0.0
    relevant = float(np.mean([bool(re.search(p, text, re.I | re.S)) for p in _RELEVANT]))
    p = v.parsed
    signal = p.get("signal")
    matches = [c.ok for c in claims if c.name in ("matches_risk_step", "hold_no_risk")]
    coherent = float(np.mean([v.well_formed, v.self_consistent, bool(matches) and all(matches)]))
    decision = [signal is not None] + [p.get(k) is not None for k in ("confidence", "size", "stop", "take_profit")]
    if signal in ("BUY", "SELL"):
        decision += ["risk_entry" in p, bool(re.search(r"risks\s+" + _N + r"\s+USDC", text))]
    specific = float(np.mean(decision))
    words = re.findall(r"[A-Za-z0-9.%+-]+", text)
    grams = [tuple(words[i: i + 4]) for i in range(max(len(words) - 3, 0))]
    no_repeat = len(set(grams)) == len(grams)
    printable = all(32 <= ord(ch) < 127 or ch == "\n" for ch in text)
    steps = split_steps(text)
    ended = bool(steps) and all(steps.get(s, "").rstrip().endswith(".") for s in STEPS if s in steps)
    ratio = len(text) / max(len(reference), 1) if reference else 1.0
    sized = 0.5 <= ratio <= 2.0
    vocab = analyst_vocabulary() | set(re.findall(r"[A-Za-z]{2,}", reference or ""))
    alpha = re.findall(r"[A-Za-z]{2,}", text)
    known = bool(alpha) and float(np.mean([w in vocab for w in alpha])) >= 0.9
    language = float(np.mean([no_repeat, printable, ended, sized, known]))
    return {"factual_accuracy": _scale(factual), "technical_relevance": _scale(relevant), "coherence": _scale(coherent),
            "specificity": _scale(specific), "language_quality": _scale(language)}


def score_criteria(texts: Sequence[str], facts: Sequence[Facts], references: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per analysis, one column per criterion (1-5)."""
    ver = StepVerifier()
    refs: Sequence[Any] = references if references is not None else [None] * len(texts)
    return pd.DataFrame([score_one(t, f, r, ver) for t, f, r in zip(texts, facts, refs)], columns=list(CRITERIA))


def criteria_table(scored: pd.DataFrame, examples: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean score per model and criterion with a 95 % bootstrap interval over prompts, from
    :func:`workbench.llm.evaluate.evaluate_models`' rows (``model``, ``text``; per model in the order of
    ``examples``) and its examples."""
    from workbench import metrics
    from workbench.llm.data import facts_of

    rows = []
    for name, g in scored.groupby("model", sort=False):
        ex = examples.iloc[: len(g)]  # each model's rows follow the examples' order
        sc = score_criteria(list(g["text"]), [facts_of(x) for x in ex["facts"]], list(ex["completion"]))
        for c in CRITERIA:
            m, lo, hi = metrics.bootstrap_ci(sc[c].to_numpy(float), np.mean, n_boot=n_boot, seed=seed)
            rows.append({"model": name, "criterion": c, "score": m, "lo": lo, "hi": hi, "meets_target": m >= TARGET})
    return pd.DataFrame(rows)
