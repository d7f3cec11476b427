"""Datasets for notebook 06: decision points (notebook 05's contract), SFT examples, preference pairs, checks.

The contract (written by notebook 05 under ``processed/05_rlaif``):

* ``decision_points.parquet``: one row per decision point, chronological, with the columns of
  :data:`DECISION_POINT_COLUMNS` (``facts`` is the JSON of :meth:`workbench.analysis.Facts.to_dict`,
  ``prompt = prompt_from_facts(facts)``, ``completion`` the analyst's clean four-step analysis, ``period``
  one of ``train`` / ``val`` / ``test``);
* ``exports/dpo_trl.jsonl``: preference pairs ``{"prompt", "chosen", "rejected", "margin", "weight"}``
  and ``exports/dpo_pairs.parquet``: the same rows plus ``time``, ``market``, ``period``;
* ``exports/sft_trl.jsonl``: ``{"prompt", "completion"}``.

:func:`synthetic_decision_points` builds a table in exactly that schema from random but plausible facts
(tests and development never read notebook outputs). :func:`build_sft_dataset` splits the ``train`` and
``val`` periods 90/10 chronologically for supervised fine-tuning and keeps the ``test`` period apart for
the final evaluation; :func:`quality_checks` reports the action balance, the indicator coverage of every
completion and duplicated prompts across the split.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from workbench import atomic
from workbench.analysis.analyst import Analyst, prompt_from_facts
from workbench.analysis.facts import MISTAKES, SIGNALS, Facts

DECISION_POINT_COLUMNS = ("time", "market", "facts", "prompt", "completion", "signal", "confidence", "outcome_ret",
                          "period")
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "margin", "weight")
PERIODS = ("train", "val", "test")
CONTRACT_DIR = "05_rlaif"
DECISION_POINTS_FILE = "decision_points.parquet"
DPO_JSONL = "exports/dpo_trl.jsonl"
DPO_PARQUET = "exports/dpo_pairs.parquet"
SFT_JSONL = "exports/sft_trl.jsonl"
MARKET_MS = 15 * 60_000

#: indicator -> (pattern in the prompt, pattern in the completion). A prompt carrying the indicator needs a
#: completion that mentions it.
INDICATORS: dict[str, tuple[str, str]] = {
    "RSI": (r"RSI\(14\)", r"\bRSI\b"),
    "MACD": (r"MACD histogram", r"\bMACD\b"),
    "Bollinger": (r"Bollinger width", r"\bBollinger\b"),
    "volatility": (r"volatility", r"\b[Vv]olatility\b"),
    "BTC move": (r"BTC [+-]?\d", r"\bBTC is (?:up|down)\b"),
    "minutes left": (r"minutes left", r"minutes left"),
    "fair value": (r"fair value", r"fair value"),
    "support/resistance": (r"5-minute Up range", r"Support .*resistance"),
}


class ContractError(FileNotFoundError):
    """A file of notebook 05's contract is missing or malformed."""


# ------------------------------------------------------------------------------------------------
# Synthetic data in the contract's schema
# ------------------------------------------------------------------------------------------------
def synthetic_facts(n: int, seed: int = 0, start: str = "2026-01-05", step_minutes: float = 1.0) -> list[Facts]:
    """``n`` random but plausible :class:`Facts`, one per ``step_minutes`` from ``start`` (UTC).

    Up bid in 0.05..0.90 and ask = bid + 0.02; fair value = mid + N(0, 0.06); RSI ~ N(50, 15) in [3, 97];
    MACD histogram ~ N(0, 2) bp; Bollinger width lognormal around 0.40 %; one-minute volatility lognormal
    around 0.055 %; BTC move since the open ~ N(0, 0.15) %; support/resistance a few cents around the mid.
    The market is the 15-minute slot of each time (``btc-updown-15m-<start unix>``).
    """
    rng = np.random.default_rng(seed)
    t0 = int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
    out = []
    for i in range(n):
        t = t0 + int(i * step_minutes * 60_000) + 5_000
        slot = t - t % MARKET_MS
        bid = round(float(rng.uniform(0.05, 0.90)), 2)
        ask = round(bid + 0.02, 2)
        mid = (bid + ask) / 2
        fair = float(np.clip(mid + rng.normal(0, 0.06), 0.01, 0.99))
        lo = round(max(0.01, mid - float(rng.uniform(0.0, 0.08))), 2)
        hi = round(min(0.99, mid + float(rng.uniform(0.0, 0.08))), 2)
        lo, hi = min(lo, round(bid, 2)), max(hi, round(ask, 2))
        out.append(Facts(time=pd.Timestamp(t, unit="ms", tz="UTC").isoformat(), market=f"btc-updown-15m-{slot // 1000}",
                         minutes_left=round((slot + MARKET_MS - t) / 60_000, 2),
                         btc_move_pct=float(rng.normal(0, 0.15)), up_bid=bid, up_ask=ask, fair=fair,
                         rsi=float(np.clip(rng.normal(50, 15), 3, 97)), macd_bp=float(rng.normal(0, 2)),
                         bb_width_pct=float(np.exp(rng.normal(np.log(0.40), 0.35))),
                         vol_pct=float(np.exp(rng.normal(np.log(0.055), 0.35))), range_low=lo, range_high=hi))
    return out


def period_labels(n: int, fractions: tuple[float, float] = (0.6, 0.2)) -> np.ndarray:
    """Chronological ``train`` / ``val`` / ``test`` labels for ``n`` rows in time order (60/20/20 by default)."""
    a = int(round(fractions[0] * n))
    b = int(round((fractions[0] + fractions[1]) * n))
    lab = np.empty(n, dtype=object)
    lab[:a], lab[a:b], lab[b:] = "train", "val", "test"
    return lab


def decision_points_from_facts(facts: Sequence[Facts], analyst: Analyst | None = None,
                               outcome_ret: Sequence[float] | None = None,
                               periods: Sequence[str] | None = None) -> pd.DataFrame:
    """A decision-point table (the contract's schema) from facts in time order.

    Parameters
    ----------
    facts : facts at each decision point, chronological.
    analyst : writes the clean analysis (default ``Analyst(seed=0)``).
    outcome_ret : realised return per share of following each analysis (NaN when unknown).
    periods : ``train``/``val``/``test`` per row (default: 60/20/20 chronologically).
    """
    analyst = analyst or Analyst(seed=0)
    rows = []
    for f in facts:
        a = analyst.write(f)
        rows.append({"time": int(pd.Timestamp(f.time).value // 1_000_000), "market": f.market,
                     "facts": json.dumps(f.to_dict()), "prompt": prompt_from_facts(f), "completion": a.text,
                     "signal": a.params.signal, "confidence": float(a.params.confidence)})
    df = pd.DataFrame(rows, columns=list(DECISION_POINT_COLUMNS[:-2]))
    df["time"] = df["time"].astype("int64")
    df["outcome_ret"] = np.asarray(outcome_ret, float) if outcome_ret is not None else np.full(len(df), np.nan)
    df["period"] = list(periods) if periods is not None else period_labels(len(df))
    return df


def synthetic_decision_points(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """``n`` decision points in the contract's schema: random facts, ``Analyst(seed).write(facts)``, periods
    60/20/20 chronologically, ``outcome_ret`` NaN."""
    return decision_points_from_facts(synthetic_facts(n, seed), Analyst(seed=seed))


def synthetic_preference_pairs(points: pd.DataFrame, seed: int = 0, per_point: int = 1) -> pd.DataFrame:
    """Preference pairs in the contract's schema (``dpo_pairs.parquet`` columns): the clean analysis is
    *chosen*, an analysis of the same facts with one or two controlled mistakes (:data:`MISTAKES`) is
    *rejected*. A stand-in for notebook 05's outcome-based pairs in tests and development."""
    rng = np.random.default_rng(seed)
    analyst = Analyst(seed=seed)
    rows = []
    for r in points.itertuples():
        f = facts_of(r.facts)
        for _ in range(per_point):
            ms = list(rng.choice(MISTAKES, size=int(rng.integers(1, 3)), replace=False))
            bad = analyst.write(f, mistakes=ms)
            if bad.text == r.completion:
                continue
            rows.append({"prompt": r.prompt, "chosen": r.completion, "rejected": bad.text, "margin": 1.0, "weight": 1.0,
                         "time": int(r.time), "market": r.market, "period": r.period})
    return pd.DataFrame(rows, columns=[*PAIR_COLUMNS, "time", "market", "period"])


def facts_of(value: str | dict[str, Any] | Facts) -> Facts:
    """:class:`Facts` from the ``facts`` column (a JSON string), a dict, or facts."""
    if isinstance(value, Facts):
        return value
    d = json.loads(value) if isinstance(value, str) else dict(value)
    return Facts(**d)


# ------------------------------------------------------------------------------------------------
# Reading and writing the contract
# ------------------------------------------------------------------------------------------------
def validate_decision_points(df: pd.DataFrame, source: str = "decision points") -> pd.DataFrame:
    """Check the schema (columns, periods, time order); returns the table sorted by time."""
    missing = [c for c in DECISION_POINT_COLUMNS if c not in df.columns]
    if missing:
        raise ContractError(f"{source}: missing column(s) {missing}; the contract needs {list(DECISION_POINT_COLUMNS)}")
    bad = set(df["period"].unique()) - set(PERIODS)
    if bad:
        raise ContractError(f"{source}: unknown period(s) {sorted(bad)}; expected {PERIODS}")
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def read_decision_points(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """``<folder>/decision_points.parquet`` (notebook 05's), validated; a clear error names a missing file."""
    path = Path(folder) / DECISION_POINTS_FILE
    if not path.exists():
        raise ContractError(f"missing {path}: run notebook 05 (05_rlaif) first; it writes the decision points "
                            f"notebook 06 fine-tunes on")
    return validate_decision_points(pd.read_parquet(path), str(path))


def read_preference_pairs(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """Notebook 05's preference pairs: ``exports/dpo_pairs.parquet`` (with ``time``, ``market``, ``period``)
    when present, else ``exports/dpo_trl.jsonl`` (then without periods). A clear error names a missing file."""
    folder = Path(folder)
    pq, js = folder / DPO_PARQUET, folder / DPO_JSONL
    if pq.exists():
        df = pd.read_parquet(pq)
    elif js.exists():
        df = pd.DataFrame(read_jsonl(js))
    else:
        raise ContractError(f"missing {js} (and {pq}): run notebook 05 (05_rlaif) first; it exports the preference "
                            f"pairs DPO trains on")
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in df.columns]
    if missing:
        raise ContractError(f"preference pairs under {folder}: missing column(s) {missing}")
    for c, v in (("margin", 1.0), ("weight", 1.0)):
        if c not in df.columns:
            df[c] = v
    return df.reset_index(drop=True)


def write_contract(folder: str | os.PathLike[str], points: pd.DataFrame, pairs: pd.DataFrame | None = None) -> Path:
    """Write decision points (and pairs) in notebook 05's layout, atomically: used for development runs of
    notebook 06 against synthetic data."""
    folder = Path(folder)
    (folder / "exports").mkdir(parents=True, exist_ok=True)
    atomic.write_parquet(folder / DECISION_POINTS_FILE, validate_decision_points(points))
    sft = points[points["period"] != "test"][["prompt", "completion"]].to_dict("records")
    write_jsonl(sft, folder / SFT_JSONL)
    if pairs is not None:
        atomic.write_parquet(folder / DPO_PARQUET, pairs)
        write_jsonl(pairs[list(PAIR_COLUMNS)].to_dict("records"), folder / DPO_JSONL)
    return folder


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """One JSON object per line, written atomically."""
    return atomic.write_text(path, "".join(json.dumps(_plain(r), ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file (blank lines skipped)."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _plain(r: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in r.items():
        if isinstance(v, (np.floating,)):
            v = float(v)
        elif isinstance(v, (np.integer,)):
            v = int(v)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------------
# SFT dataset and quality checks
# ------------------------------------------------------------------------------------------------
@dataclass
class SFTData:
    """Prompt/completion examples: ``train`` and ``eval`` (90/10 chronologically within the ``train`` and
    ``val`` periods) and ``test`` (the test period, kept for the final evaluation). Each frame keeps the
    decision-point columns (``facts``, ``signal``, ``outcome_ret``...)."""

    train: pd.DataFrame
    eval: pd.DataFrame
    test: pd.DataFrame

    @property
    def cutoff_ms(self) -> int:
        """First time of the SFT eval split: nothing at or after it is used to build or pretrain the base."""
        if "time" not in self.train.columns:
            return -1
        return int(self.eval["time"].min()) if len(self.eval) else int(self.train["time"].max()) + 1

    def sizes(self) -> pd.Series:
        return pd.Series({k: len(getattr(self, k)) for k in ("train", "eval", "test")}, name="examples")


def build_sft_dataset(points: pd.DataFrame, split_ratio: float = 0.9) -> SFTData:
    """Split decision points for SFT: the ``train`` + ``val`` periods chronologically ``split_ratio`` /
    ``1 - split_ratio`` into train/eval; the ``test`` period apart. No test-period row enters train/eval.

    A prompt that occurs in an earlier part is dropped from the later part (no duplicated prompts across
    the split), so the eval loss is measured on prompts the model has not seen.
    """
    if not 0 < split_ratio < 1:
        raise ValueError(f"split_ratio must be in (0, 1), got {split_ratio}")
    pts = validate_decision_points(points)
    dev = pts[pts["period"] != "test"].reset_index(drop=True)
    test = pts[pts["period"] == "test"].reset_index(drop=True)
    k = int(round(split_ratio * len(dev)))
    train, ev = dev.iloc[:k].reset_index(drop=True), dev.iloc[k:].reset_index(drop=True)
    seen = set(train["prompt"])
    ev = ev[~ev["prompt"].isin(seen)].reset_index(drop=True)
    seen |= set(ev["prompt"])
    test = test[~test["prompt"].isin(seen)].reset_index(drop=True)
    return SFTData(train, ev, test)


def indicator_coverage(prompt: str, completion: str) -> dict[str, bool | None]:
    """For each indicator of :data:`INDICATORS`: None when the prompt does not carry it, else whether the
    completion mentions it."""
    out: dict[str, bool | None] = {}
    for name, (p_pat, c_pat) in INDICATORS.items():
        out[name] = bool(re.search(c_pat, completion)) if re.search(p_pat, prompt) else None
    return out


def action_balance(ds: SFTData) -> pd.DataFrame:
    """Share of BUY / SELL / HOLD per split (rows: split; columns: signals and the count)."""
    rows = {}
    for part in ("train", "eval", "test"):
        s = getattr(ds, part)["signal"]
        rows[part] = {**{sig: float((s == sig).mean()) if len(s) else np.nan for sig in SIGNALS}, "n": len(s)}
    return pd.DataFrame(rows).T


def quality_checks(ds: SFTData, max_class_share: float = 0.8, min_class_share: float = 0.02) -> pd.DataFrame:
    """Checks of the SFT dataset, one row each: ``check``, ``passed``, ``value``, ``detail``.

    * action balance: no signal above ``max_class_share`` or below ``min_class_share`` of the train split;
    * indicator coverage: every completion mentions each indicator its prompt carries (RSI, MACD,
      Bollinger, volatility, BTC move, minutes left, fair value, support/resistance);
    * no prompt duplicated across train / eval / test, and none within the train split;
    * chronology: train before eval before test (no look-ahead in the split);
    * well-formed completions: four ``Step k -`` headers each.
    """
    rows = []
    bal = action_balance(ds).loc["train", list(SIGNALS)]
    rows.append({"check": "action balance (train)", "passed": bool(bal.max() <= max_class_share and bal.min() >= min_class_share),
                 "value": float(bal.max()), "detail": ", ".join(f"{k} {v:.0%}" for k, v in bal.items())})
    missing: dict[str, int] = {}
    n_missing_rows, n_all = 0, 0
    for part in ("train", "eval", "test"):
        for p, c in zip(getattr(ds, part)["prompt"], getattr(ds, part)["completion"]):
            cov = indicator_coverage(p, c)
            n_all += 1
            bad = [k for k, v in cov.items() if v is False]
            n_missing_rows += bool(bad)
            for k in bad:
                missing[k] = missing.get(k, 0) + 1
    rows.append({"check": "completions mention their prompt's indicators", "passed": n_missing_rows == 0,
                 "value": float(1 - n_missing_rows / max(n_all, 1)),
                 "detail": "all covered" if not missing else "missing: " + ", ".join(f"{k} ({v})" for k, v in missing.items())})
    sets = {part: set(getattr(ds, part)["prompt"]) for part in ("train", "eval", "test")}
    cross = {f"{a}&{b}": len(sets[a] & sets[b]) for a, b in (("train", "eval"), ("train", "test"), ("eval", "test"))}
    rows.append({"check": "no prompt duplicated across the split", "passed": sum(cross.values()) == 0,
                 "value": float(sum(cross.values())), "detail": ", ".join(f"{k}: {v}" for k, v in cross.items())})
    dup_train = int(ds.train["prompt"].duplicated().sum())
    rows.append({"check": "no duplicated prompt within train", "passed": dup_train == 0, "value": float(dup_train),
                 "detail": f"{dup_train} repeated prompts"})
    order = [(getattr(ds, a)["time"].max(), getattr(ds, b)["time"].min()) for a, b in (("train", "eval"), ("eval", "test"))
             if len(getattr(ds, a)) and len(getattr(ds, b))]
    chrono = all(x < y for x, y in order)
    rows.append({"check": "chronological split (train < eval < test)", "passed": bool(chrono), "value": float(chrono),
                 "detail": f"train to {_iso(ds.train['time'].max())}, eval from {_iso(ds.eval['time'].min())}, "
                           f"test from {_iso(ds.test['time'].min())}"})
    all_c = pd.concat([ds.train["completion"], ds.eval["completion"], ds.test["completion"]])
    formed = all_c.map(lambda c: all(re.search(rf"Step {k} -", c) for k in range(1, 5))) if len(all_c) else pd.Series([], dtype=bool)
    rows.append({"check": "completions have the four steps", "passed": bool(formed.all()),
                 "value": float(formed.mean()) if len(formed) else np.nan, "detail": f"{int((~formed).sum())} malformed"})
    return pd.DataFrame(rows)


def _iso(ms: Any) -> str:
    return "-" if pd.isna(ms) else pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def pretraining_corpus(ds: SFTData, paired: bool = False, seed: int = 0) -> list[str]:
    """Documents for pretraining the tiny base: prompts and completions of the SFT *train* split only.

    ``paired=False`` (default): prompts and completions are separate, shuffled documents, so the base
    learns the domain's language (words, number formats, step templates) but not the task (which
    numbers of a prompt go where in its analysis); that is what SFT teaches, as for a general-purpose
    base such as Mistral-7B. ``paired=True``: each prompt followed by its analysis in one document, in the
    tiny chat template without a system message (the format SFT and generation use with ``system=None``):
    full fine-tuning of every weight on the task, the lever that teaches a small model to copy numbers.
    """
    tr = ds.train
    if paired:  # the tiny chat template without a system message (EOS is appended by the trainer)
        docs = [f"<|user|>{p}<|end|><|assistant|>{c}" for p, c in zip(tr["prompt"], tr["completion"])]
    else:
        docs = list(tr["prompt"]) + list(tr["completion"])
    order = np.random.default_rng(seed).permutation(len(docs))
    return [docs[i] for i in order]


def restyle(points: pd.DataFrame, pairs: pd.DataFrame | None = None,
            style: str = "full") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Decision points (and preference pairs) with prompts rendered in ``style``
    (:data:`workbench.analysis.analyst.PROMPT_STYLES`) from each point's facts.

    A pair's prompt is mapped to its decision point's facts through the point's original prompt; a pair whose
    prompt matches no decision point is dropped (``pairs.attrs["dropped_unknown_prompt"]`` counts them)."""
    if style == "full":
        return points, pairs
    new = [prompt_from_facts(facts_of(f), style) for f in points["facts"]]
    lookup = dict(zip(points["prompt"], new))
    out = points.assign(prompt=new)
    if pairs is None:
        return out, None
    mapped = pairs["prompt"].map(lookup)
    kept = pairs[mapped.notna()].assign(prompt=mapped[mapped.notna()]).reset_index(drop=True)
    kept.attrs["dropped_unknown_prompt"] = int(mapped.isna().sum())
    return out, kept


def pairs_for_period(pairs: pd.DataFrame, period: str | Sequence[str]) -> pd.DataFrame:
    """Pairs of the given period(s); all pairs when the table has no ``period`` column."""
    if "period" not in pairs.columns:
        return pairs.reset_index(drop=True)
    periods = [period] if isinstance(period, str) else list(period)
    return pairs[pairs["period"].isin(periods)].reset_index(drop=True)
