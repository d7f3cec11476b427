"""Process versus outcome on held-out prompts: RL policies side by side, best-of-n reranking, the verdict.

For a set of analyses (one per test-period decision point and model) we report, each with a percentile
bootstrap 95 % interval (:func:`workbench.metrics.bootstrap_ci`):

* ``true_step_share``: share of the four steps whose claims are all true (the step verifier; Lightman et
  al. 2023's step labels);
* ``self_consistent``: share of analyses whose signal follows from their own steps;
* ``ece`` and ``brier``: calibration of the stated confidence against whether following the signal made
  money (trades with a known outcome; Guo et al. 2017; Brier 1950). Their intervals resample analyses;
* ``mean_ret`` and ``win_rate``: the market result of following the signals (trades only): mean return per
  share in Up-price units and the share of winning trades, replayed on the recorded quotes
  (:func:`workbench.llm.score_analyses`).

:func:`paired_difference` compares two models on the *same* prompts (paired bootstrap of the per-prompt
difference), which is what :func:`conclusion` uses to say whether one scheme beats another.

Best-of-n (Cobbe et al. 2021's verifier reranking; Lightman et al. 2023 compare outcome- and
process-supervised reward models this way): the SFT model samples ``n`` analyses per prompt and a scorer
keeps one: the outcome reward model, the process reward model (product of step probabilities), or the step
verifier (an oracle process score, the ceiling of process reranking).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import STEPS, RLConfig

METRICS = ("true_step_share", "self_consistent", "ece", "brier", "mean_ret", "win_rate")
HIGHER_IS_BETTER = {"true_step_share": True, "self_consistent": True, "ece": False, "brier": False, "mean_ret": True,
                    "win_rate": True}
LABELS = {"true_step_share": "true-step share", "self_consistent": "self-consistency", "ece": "ECE", "brier": "Brier",
          "mean_ret": "test-period return per share", "win_rate": "win rate"}


# ------------------------------------------------------------------------------------------------
# Generating and scoring
# ------------------------------------------------------------------------------------------------
def score_texts(name: str, texts: Sequence[str], examples: pd.DataFrame, source: Any, max_hold_ms: int,
                cfg: RLConfig | None = None) -> pd.DataFrame:
    """One row per analysis (``workbench.llm.score_analyses``'s columns, ``prompt_id`` = row of ``examples``)
    plus ``ret0``: the return of following the signal with a HOLD counted as 0 (NaN when unknown)."""
    from workbench.analysis.verifier import StepVerifier
    from workbench.llm import score_analyses

    ver = StepVerifier(cfg.verifier) if cfg is not None else None
    df = score_analyses(name, list(texts), examples.reset_index(drop=True), source, max_hold_ms, ver)
    df.insert(1, "prompt_id", np.arange(len(df)))
    df["ret0"] = np.where(df["signal"] == "HOLD", 0.0, df["ret"])
    return df


def evaluate_policy(name: str, model: Any, tokenizer: Any, examples: pd.DataFrame, generation: Any, source: Any,
                    max_hold_ms: int, cfg: RLConfig | None = None) -> pd.DataFrame:
    """Generate one analysis per prompt of ``examples`` (test period) and score it (:func:`score_texts`);
    ``gen_seconds`` holds the generation time."""
    from workbench.llm import generate

    t0 = time.perf_counter()
    texts = generate(model, tokenizer, list(examples["prompt"]), generation)
    secs = time.perf_counter() - t0
    return score_texts(name, texts, examples, source, max_hold_ms, cfg).assign(gen_seconds=secs)


def evaluate_policies(loaders: dict[str, Callable[[], tuple[Any, Any]]], examples: pd.DataFrame, generation: Any,
                      source: Any, max_hold_ms: int, cfg: RLConfig | None = None,
                      include_reference: bool = True) -> pd.DataFrame:
    """:func:`evaluate_policy` for each ``name -> loader`` (one model in memory at a time), plus the analyst's
    own analyses as ``reference (analyst)`` (what SFT imitates)."""
    out = []
    for name, load in loaders.items():
        model, tok = load()
        out.append(evaluate_policy(name, model, tok, examples, generation, source, max_hold_ms, cfg))
        del model
    if include_reference:
        out.append(score_texts("reference (analyst)", list(examples["completion"]), examples, source, max_hold_ms, cfg))
    return pd.concat(out, ignore_index=True)


# ------------------------------------------------------------------------------------------------
# Tables with intervals
# ------------------------------------------------------------------------------------------------
def _ci(x: np.ndarray, n_boot: int, seed: int, stat: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float, float]:
    return metrics.bootstrap_ci(np.asarray(x, float), stat, n_boot=n_boot, seed=seed)


def _calibration_ci(conf: np.ndarray, succ: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], float], n_boot: int,
                    seed: int) -> tuple[float, float, float]:
    """Bootstrap of a calibration metric by resampling (confidence, outcome) pairs through their indices."""
    if not len(conf):
        return np.nan, np.nan, np.nan
    idx = np.arange(len(conf), dtype=float)

    def stat(i: np.ndarray) -> float:
        j = i.astype(int)
        return fn(conf[j], succ[j])

    return metrics.bootstrap_ci(idx, stat, n_boot=n_boot, seed=seed)


def summary_table(scored: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per model: each of :data:`METRICS` with ``_lo`` / ``_hi`` (95 % percentile bootstrap), and
    ``n`` (analyses), ``n_trades``, ``n_outcomes`` (trades with a known result), ``all_steps_true``,
    ``well_formed`` and the share of each step type that is true."""
    rows = []
    for name, g in scored.groupby("model", sort=False):
        trades = g[g["signal"].isin(["BUY", "SELL"])]
        known = trades[trades["ret"].notna()]
        cal = known[known["confidence_valid"].astype(bool)]
        conf = cal["confidence"].astype(float).to_numpy()
        succ = (cal["ret"] > 0).astype(float).to_numpy()
        row: dict[str, Any] = {"model": name, "n": len(g), "n_trades": len(trades), "n_outcomes": len(known)}
        for key, values in (("true_step_share", g["true_step_share"]), ("self_consistent", g["self_consistent"])):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = _ci(values.astype(float).to_numpy(), n_boot, seed)
        row["ece"], row["ece_lo"], row["ece_hi"] = _calibration_ci(conf, succ, metrics.ece, n_boot, seed)
        row["brier"], row["brier_lo"], row["brier_hi"] = _calibration_ci(conf, succ, metrics.brier, n_boot, seed)
        row["mean_ret"], row["mean_ret_lo"], row["mean_ret_hi"] = _ci(known["ret"].to_numpy(), n_boot, seed)
        row["win_rate"], row["win_rate_lo"], row["win_rate_hi"] = _ci((known["ret"] > 0).astype(float).to_numpy(),
                                                                      n_boot, seed)
        row.update({"all_steps_true": float(g["all_steps_true"].mean()), "well_formed": float(g["well_formed"].mean()),
                    **{f"true_{s}": float(g[f"ok_{s}"].mean()) for s in STEPS}})
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def display_table(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The six metrics as ``value [lo, hi]`` strings, plus the counts: the notebook's final table."""
    out = pd.DataFrame(index=summary.index)
    for m in METRICS:
        fmt = f"{{:+.{digits + 1}f}}" if m == "mean_ret" else f"{{:.{digits}f}}"

        def cell(r: pd.Series, m: str = m, fmt: str = fmt) -> str:
            if not np.isfinite(r[m]):
                return "n/a"
            return f"{fmt.format(r[m])} [{fmt.format(r[f'{m}_lo'])}, {fmt.format(r[f'{m}_hi'])}]"

        out[LABELS[m]] = summary.apply(cell, axis=1)
    out["analyses"] = summary["n"].astype(int)
    out["trades (known outcome)"] = summary["n_outcomes"].astype(int)
    return out


def paired_difference(scored: pd.DataFrame, a: str, b: str, metric: str, n_boot: int = 1000,
                      seed: int = 0) -> tuple[float, float, float, int]:
    """Mean of ``a - b`` over the prompts both answered, with a paired percentile bootstrap interval.

    ``metric``: ``true_step_share``, ``self_consistent``, ``ret0`` (return of following the signal, HOLD =
    0), ``win`` (1 for a winning trade, 0 for a losing one or a HOLD) or ``brier`` (per-prompt squared error
    of the confidence against success; lower is better). Returns ``(diff, lo, hi, pairs)``.
    """
    def per_prompt(name: str) -> pd.Series:
        g = scored[scored["model"] == name].set_index("prompt_id")
        if metric == "win":
            v = (g["ret0"] > 0).astype(float).where(g["ret0"].notna())
        elif metric == "brier":
            ok = g["signal"].isin(["BUY", "SELL"]) & g["ret"].notna() & g["confidence_valid"].astype(bool)
            v = ((g["confidence"].astype(float) - (g["ret"] > 0).astype(float)) ** 2).where(ok)
        else:
            v = g[metric].astype(float)
        return v

    x, y = per_prompt(a), per_prompt(b)
    both = pd.concat([x.rename("a"), y.rename("b")], axis=1).dropna()
    if not len(both):
        return np.nan, np.nan, np.nan, 0
    d, lo, hi = metrics.paired_bootstrap_diff(both["a"].to_numpy(), both["b"].to_numpy(), n_boot=n_boot, seed=seed)
    return d, lo, hi, len(both)


# ------------------------------------------------------------------------------------------------
# Best-of-n
# ------------------------------------------------------------------------------------------------
Scorer = Callable[[Sequence[str], pd.DataFrame], np.ndarray]


def sample_candidates(model: Any, tokenizer: Any, examples: pd.DataFrame, n: int, generation: Any) -> pd.DataFrame:
    """``n`` sampled analyses per prompt: columns ``prompt_id``, ``sample`` (0..n-1), ``text``."""
    from workbench.llm import generate

    ex = examples.reset_index(drop=True)
    prompts = [p for p in ex["prompt"] for _ in range(n)]
    texts = generate(model, tokenizer, prompts, generation)
    return pd.DataFrame({"prompt_id": np.repeat(np.arange(len(ex)), n), "sample": np.tile(np.arange(n), len(ex)),
                         "text": texts})


def candidate_rows(candidates: pd.DataFrame, examples: pd.DataFrame) -> pd.DataFrame:
    """The decision-point row of each candidate (aligned with ``candidates``)."""
    return examples.reset_index(drop=True).iloc[candidates["prompt_id"].to_numpy()].reset_index(drop=True)


def orm_scorer(orm: Any) -> Scorer:
    """Outcome reward model (``RewardModelTrainer``) score of each analysis as the decision it states; an
    analysis without a usable signal scores ``-inf``."""
    def score(texts: Sequence[str], rows: pd.DataFrame) -> np.ndarray:
        from workbench.analysis.verifier import StepVerifier
        from workbench.llm import decision_from_analysis, facts_of

        ver = StepVerifier()
        decisions, where = [], []
        for i, (t, r) in enumerate(zip(texts, rows.itertuples())):
            f = facts_of(r.facts)
            d = decision_from_analysis(ver.verify(t, f).parsed, f, int(r.time), t, "best-of-n")
            if d is not None:
                decisions.append(d)
                where.append(i)
        out = np.full(len(texts), -np.inf)
        if decisions:
            out[where] = orm.score(decisions)
        return out

    return score


def prm_scorer(prm: Any, how: str = "product") -> Scorer:
    """Process reward model score: the product of the step probabilities (Lightman et al.) or another
    :func:`workbench.rlaif.aggregate_steps` rule."""
    def score(texts: Sequence[str], rows: pd.DataFrame) -> np.ndarray:
        from workbench.llm import facts_of
        from workbench.rlaif import aggregate_steps
        from workbench.rlhf.rewards import prm_step_probs

        return aggregate_steps(prm_step_probs(texts, [facts_of(f) for f in rows["facts"]], prm), how=how)

    return score


def verifier_scorer(cfg: RLConfig) -> Scorer:
    """The step verifier's weighted process reward (an oracle: it checks every claim against the facts)."""
    def score(texts: Sequence[str], rows: pd.DataFrame) -> np.ndarray:
        from workbench.llm import facts_of
        from workbench.rlhf.rewards import process_reward

        return process_reward(texts, [facts_of(f) for f in rows["facts"]], cfg)

    return score


def best_of_n(candidates: pd.DataFrame, examples: pd.DataFrame, scorers: dict[str, Scorer]) -> tuple[dict[str, list[str]],
                                                                                                    pd.DataFrame]:
    """The candidate each scorer ranks first at each prompt (ties: the earliest sample), plus
    ``single sample`` (sample 0: no reranking). Returns ``(name -> chosen texts, candidates with a score
    column per scorer)``."""
    rows = candidate_rows(candidates, examples)
    cand = candidates.copy()
    picks: dict[str, list[str]] = {"single sample (no reranking)": list(cand[cand["sample"] == 0]
                                                                        .sort_values("prompt_id")["text"])}
    for name, fn in scorers.items():
        cand[name] = np.asarray(fn(list(cand["text"]), rows), float)
        best = cand.sort_values(["prompt_id", name, "sample"], ascending=[True, False, True], kind="stable") \
            .groupby("prompt_id", sort=True).head(1).sort_values("prompt_id")
        picks[name] = list(best["text"])
    return picks, cand


def score_picks(picks: dict[str, list[str]], examples: pd.DataFrame, source: Any, max_hold_ms: int,
                cfg: RLConfig | None = None, prefix: str = "best-of-n: ") -> pd.DataFrame:
    """:func:`score_texts` of each scorer's chosen analyses (model names ``prefix + scorer``)."""
    return pd.concat([score_texts(prefix + name, texts, examples, source, max_hold_ms, cfg)
                      for name, texts in picks.items()], ignore_index=True)


# ------------------------------------------------------------------------------------------------
# The verdict
# ------------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """``a`` against ``b`` on one metric, paired over prompts."""

    a: str
    b: str
    metric: str
    diff: float
    lo: float
    hi: float
    pairs: int

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` (for ``a``, the interval excludes 0) or ``no clear difference``."""
        if not np.isfinite(self.lo):
            return "not measurable"
        good = {"brier": False}.get(self.metric, True)
        if self.lo > 0:
            return "better" if good else "worse"
        if self.hi < 0:
            return "worse" if good else "better"
        return "no clear difference"


PAIRED = {"true_step_share": "share of true steps", "self_consistent": "self-consistency",
          "brier": "Brier score (calibration)", "ret0": "return of following the signal (HOLD = 0)",
          "win": "share of prompts with a winning trade"}


def compare(scored: pd.DataFrame, a: str, b: str, metrics_: Sequence[str] = tuple(PAIRED), n_boot: int = 1000,
            seed: int = 0) -> list[Comparison]:
    """:class:`Comparison` of ``a`` against ``b`` on each paired metric."""
    return [Comparison(a, b, m, *paired_difference(scored, a, b, m, n_boot, seed)) for m in metrics_]


def comparisons_table(comps: Sequence[Comparison]) -> pd.DataFrame:
    """The comparisons as a table (difference, interval, pairs, verdict)."""
    return pd.DataFrame([{"a": c.a, "b": c.b, "metric": PAIRED[c.metric], "difference (a - b)": c.diff,
                          "lo": c.lo, "hi": c.hi, "pairs": c.pairs, "verdict for a": c.verdict} for c in comps])


def _sentence(c: Comparison) -> str:
    """``metric: +d [lo, hi] over n prompts, verdict`` (shares in percentage points)."""
    if c.metric in ("true_step_share", "self_consistent", "win"):
        fmt, scale, unit = "{:+.1f}", 100.0, " points"
    else:
        fmt, scale, unit = "{:+.4f}", 1.0, ""
    return (f"{PAIRED[c.metric]}: {fmt.format(scale * c.diff)}{unit} [{fmt.format(scale * c.lo)}, "
            f"{fmt.format(scale * c.hi)}] over {c.pairs} prompts, {c.verdict}")


def conclusion(rl_scored: pd.DataFrame | None, bon_scored: pd.DataFrame | None, process: str = "process-only",
               outcome: str = "outcome-only", bon_process: str = "best-of-n: process reward model",
               bon_outcome: str = "best-of-n: outcome reward model", n_boot: int = 1000, seed: int = 0) -> str:
    """A plain-language answer to "does rewarding each step beat rewarding only the outcome?", computed from
    the paired comparisons (95 % intervals of the per-prompt differences): for RL (``process`` vs
    ``outcome`` policy) and for best-of-n (process vs outcome reward model), on the truth of the steps and on
    the market result. "Beats" requires the interval to exclude 0."""
    lines: list[str] = []
    tallies: dict[str, list[str]] = {"reasoning": [], "market": []}
    for label, scored, a, b in (("RL fine-tuning (GRPO)", rl_scored, process, outcome),
                                ("Best-of-n reranking of the SFT model", bon_scored, bon_process, bon_outcome)):
        if scored is None or a not in set(scored["model"]) or b not in set(scored["model"]):
            continue
        comps = compare(scored, a, b, n_boot=n_boot, seed=seed)
        lines.append(f"{label}, {a} minus {b}:")
        lines += [f"  - {_sentence(c)}" for c in comps]
        for c in comps:
            kind = "market" if c.metric in ("ret0", "win") else "reasoning"
            tallies[kind].append(c.verdict)
    if not lines:
        return "Nothing to compare: the process and outcome rows are missing."

    def summary(kind: str, what: str) -> str:
        v = tallies[kind]
        if not v:
            return f"on {what}: not measured"
        if "better" in v and "worse" not in v:
            return f"on {what}: yes, process supervision came out ahead ({v.count('better')} of {len(v)} measures)"
        if "worse" in v and "better" not in v:
            return f"on {what}: no, outcome supervision came out ahead ({v.count('worse')} of {len(v)} measures)"
        if "better" in v and "worse" in v:
            return f"on {what}: mixed ({v.count('better')} measures favour process, {v.count('worse')} outcome)"
        return f"on {what}: no difference the intervals can detect at this sample size"

    lines.append("Does rewarding each reasoning step beat rewarding only the outcome? "
                 + summary("reasoning", "the quality of the reasoning (true steps, self-consistency, calibration)")
                 + "; " + summary("market", "the market result of following the signals") + ".")
    return "\n".join(lines)


def final_table(*summaries: pd.DataFrame) -> pd.DataFrame:
    """The rows of several :func:`summary_table` outputs stacked, as ``value [lo, hi]`` strings."""
    both = pd.concat([s for s in summaries if s is not None and len(s)])
    return display_table(both)


def facts_list(examples: pd.DataFrame) -> list[Facts]:
    from workbench.llm import facts_of

    return [facts_of(f) for f in examples["facts"]]


def attach_returns(candidates: pd.DataFrame, examples: pd.DataFrame, source: Any, cfg: RLConfig,
                   max_hold_ms: int) -> pd.DataFrame:
    """``ret0`` of each candidate: the return of following its signal (HOLD = 0; NaN without a signal or an
    outcome), replayed like the evaluation's (:class:`workbench.rlhf.rewards.ReplayOutcome`)."""
    from workbench.rlhf.rewards import ReplayOutcome

    rows = candidate_rows(candidates, examples)
    fn = ReplayOutcome(source, cfg, max_hold_ms)
    facts = facts_list(rows)
    ret = [fn(t, f, {"time": int(tm)})[0] for t, f, tm in zip(candidates["text"], facts, rows["time"])]
    return candidates.assign(ret0=np.asarray(ret, float))
