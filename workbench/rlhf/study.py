"""Notebook 07's glue: where the inputs are, the RL prompt pool and the test prompts, training each scheme,
the policies to evaluate, best-of-n, saving. Cells of the notebook are short calls into these.

Inputs (from earlier notebooks, under the work directory):

* ``processed/05_rlaif/decision_points.parquet``: decision points (``facts``, ``prompt``, ``period``...);
* ``models/rlaif/outcome_rm.pt`` and ``process_rm.pt``: notebook 05's reward models (optional: without them
  best-of-n uses the verifier only and ``process="prm"`` is unavailable);
* ``models/llm/``: notebook 06's base (``workbench-tiny/`` or the folder recorded in the adapter's
  ``workbench.json``) and its SFT adapter (``sft_adapter/``);
* ``processed/01_ingestion``: the recorded quotes, for the market outcome of a signal.

Outputs: policies under ``models/rlhf/<scheme>/``, tables under ``processed/07_rlhf/``.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from workbench.analysis.rlconfig import RLConfig

SFT_FOLDER = "llm"
SFT_ADAPTER = "sft_adapter"
TINY_BASE = "workbench-tiny"
RLHF_FOLDER = "rlhf"
OUT_FOLDER = "07_rlhf"


class MissingInput(FileNotFoundError):
    """An input of notebook 07 is missing; the message says which notebook makes it."""


# ------------------------------------------------------------------------------------------------
# Locating the inputs
# ------------------------------------------------------------------------------------------------
def find_sft(models_dir: str | os.PathLike[str], sft_dir: str | os.PathLike[str] | None = None) -> tuple[str, list[str]]:
    """``(base folder, [SFT adapter])`` of notebook 06 under ``sft_dir`` (default ``models_dir/llm``).

    The base is the folder recorded in the adapter's ``workbench.json`` when it exists, else
    ``<folder>/workbench-tiny``. A clear :class:`MissingInput` says to run notebook 06 otherwise.
    """
    folder = Path(sft_dir) if sft_dir else Path(models_dir) / SFT_FOLDER
    adapter = folder / SFT_ADAPTER
    if not (adapter / "adapter_config.json").exists():
        raise MissingInput(f"no SFT model at {adapter}: run notebook 06 (06_llm_finetuning) first; it saves its base "
                           f"under models/{SFT_FOLDER}/{TINY_BASE} and the SFT adapter under models/{SFT_FOLDER}/"
                           f"{SFT_ADAPTER} (or set SFT_DIR to a folder holding both)")
    meta_path = adapter / "workbench.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    base = meta.get("base")
    if not base or not (Path(base) / "config.json").exists():
        base = str(folder / TINY_BASE)
    if not (Path(base) / "config.json").exists():
        raise MissingInput(f"the SFT adapter {adapter} has no base model ({base} missing): run notebook 06 again")
    return str(base), [str(adapter)]


@dataclass
class RewardModels:
    """Notebook 05's reward models and their text encoder (None when absent)."""

    orm: Any
    prm: Any
    encoder: Any
    note: str


def load_reward_models(models_dir: str | os.PathLike[str]) -> RewardModels:
    """``models/rlaif/outcome_rm.pt`` and ``process_rm.pt`` (notebook 05), sharing one MiniLM encoder."""
    folder = Path(models_dir) / "rlaif"
    o, p = folder / "outcome_rm.pt", folder / "process_rm.pt"
    if not o.exists() and not p.exists():
        return RewardModels(None, None, None, f"no reward models under {folder}: run notebook 05 (05_rlaif) for them")
    from workbench.rlaif import ProcessRewardTrainer, RewardModelTrainer, TextEncoder

    enc = TextEncoder()
    orm = RewardModelTrainer.load(o, enc) if o.exists() else None
    prm = ProcessRewardTrainer.load(p, enc) if p.exists() else None
    return RewardModels(orm, prm, enc, f"reward models of {folder}: " + ", ".join(
        n for n, m in (("outcome", orm), ("process", prm)) if m is not None))


def price_source(processed: str | os.PathLike[str]) -> tuple[Any, str]:
    """The replay price source over notebook 01's quotes, or ``(None, why)``."""
    from workbench.llm import price_source as _ps

    return _ps(processed)


@dataclass
class Inputs:
    """Everything notebook 07 reads."""

    points: pd.DataFrame
    cfg: RLConfig
    source: Any
    source_note: str
    base: str
    adapters: list[str]
    reward_models: RewardModels
    task: Any = None  # the SFT model's TaskFormat (prompts in ``points`` are rendered in its style)

    def describe(self) -> pd.Series:
        per = self.points["period"].value_counts().reindex(["train", "val", "test"]).fillna(0).astype(int)
        return pd.Series({"decision points (train/val/test)": "/".join(str(v) for v in per),
                          "signals (train)": ", ".join(f"{k} {v:.0%}" for k, v in self.points[self.points["period"] ==
                                                       "train"]["signal"].value_counts(normalize=True).items()),
                          "SFT base": self.base, "SFT adapter": ", ".join(self.adapters),
                          "reward models": self.reward_models.note, "market outcomes": self.source_note,
                          "configuration": self.cfg.source}, name="inputs")


def load_inputs(processed: str | os.PathLike[str], models: str | os.PathLike[str], cfg: RLConfig,
                sft_dir: str | os.PathLike[str] | None = None) -> Inputs:
    """Read notebook 05's decision points and reward models, notebook 06's SFT model location and notebook
    01's quotes; a :class:`MissingInput` names the notebook to run when a required input is absent."""
    from workbench.llm.data import ContractError, read_decision_points

    try:
        points = read_decision_points(Path(processed) / "05_rlaif")
    except ContractError as exc:
        raise MissingInput(str(exc).replace("notebook 06 fine-tunes on", "notebook 07 trains on")) from exc
    base, adapters = find_sft(models, sft_dir)
    from workbench.llm.data import restyle
    from workbench.llm.model import TaskFormat

    task = TaskFormat.of(*adapters[::-1], base)
    points, _ = restyle(points, None, task.prompt_style)  # ask the SFT model the way it was trained
    source, note = price_source(processed)
    return Inputs(points, cfg, source, note, base, adapters, load_reward_models(models), task)


# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------
def rl_pool(points: pd.DataFrame, max_hold_ms: int) -> pd.DataFrame:
    """Decision points RL may train on: the ``train`` and ``val`` periods, minus those whose outcome window
    (``time + max_hold_ms``) reaches the first test-period decision (no look-ahead into the test period)."""
    test_start = points.loc[points["period"] == "test", "time"].min()
    dev = points[points["period"] != "test"]
    if pd.notna(test_start):
        dev = dev[dev["time"] + max_hold_ms < test_start]
    return dev.reset_index(drop=True)


def test_examples(points: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """``n`` test-period decision points spread evenly over the period (all when None), in time order."""
    test = points[points["period"] == "test"].sort_values("time").reset_index(drop=True)
    if n is None or n >= len(test):
        return test
    idx = np.unique(np.linspace(0, len(test) - 1, n).round().astype(int))
    return test.iloc[idx].reset_index(drop=True)


def crafted_analyses(f: Any, cfg: RLConfig, seed: int = 0) -> dict[str, str]:
    """Analyses of one decision point that differ in one way each (for the reward functions' demonstration):
    the clean analysis, one with a false RSI claim, a terse one (MACD, Bollinger and support/resistance left
    out: false under the verifier's required claims), the terse one with a false RSI claim padded with the
    keywords the naive rewards pay for, a signal against its own steps, and a position above the risk limit."""
    import re

    from workbench.analysis.analyst import Analyst

    a = Analyst(cfg.verifier, seed=seed)
    clean = a.write(f).text
    wrong_rsi = "RSI(14) is 88.0, overbought"
    false_rsi = re.sub(r"RSI\(14\) is [0-9.]+, \w+", wrong_rsi, clean)
    terse = re.sub(r" MACD histogram is [^.]*\.[^.]*\.", "", clean)
    terse = re.sub(r" Bollinger width is [0-9.]+%, \w+ bands\.", "", terse)
    terse = re.sub(r" Support [0-9.]+, resistance [0-9.]+\.", "", terse)
    stuffed = re.sub(r"RSI\(14\) is [0-9.]+, \w+\.", wrong_rsi + ". MACD and Bollinger bands confirm it.", terse)
    stuffed = stuffed.replace("\nStep 4 -", " Support and resistance hold.\nStep 4 -")
    return {"clean (analyst)": clean, "false RSI claim": false_rsi, "terse (required claims left out)": terse,
            "terse, false RSI claim + keywords": stuffed,
            "signal against its own steps": a.write(f, mistakes=["inconsistent_signal"]).text,
            "above the risk limit": a.write(f, mistakes=["risk_violation"]).text}


# ------------------------------------------------------------------------------------------------
# Training and loading policies
# ------------------------------------------------------------------------------------------------
def train_schemes(inputs: Inputs, prompts: pd.DataFrame, rewards: dict[str, Any], settings: Any,
                  out_dir: str | os.PathLike[str], log: Callable[[str], None] = print,
                  seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """GRPO from the same SFT start, same prompts (same order) and number of steps, one policy per reward scheme
    and seed; saved under ``out_dir/<scheme>`` (one seed: the settings' own) or ``out_dir/<scheme>-seed<k>``.
    Returns ``name -> RLResult`` (``name`` = the scheme, or ``"<scheme> (seed k)"``; ``info`` has ``seed``)."""
    import dataclasses

    from workbench.rlhf.grpo import train_grpo

    out = {}
    many = seeds is not None and len(seeds) > 1
    for seed in (list(seeds) if seeds else [settings.seed]):
        s_seed = dataclasses.replace(settings, seed=int(seed))
        for name, fn in rewards.items():
            key = f"{name} (seed {seed})" if many else name
            folder = Path(out_dir) / (f"{name}-seed{seed}" if many else name)
            res = train_grpo(inputs.base, inputs.adapters, prompts, fn, s_seed, folder, scheme=name)
            res.info.update(seed=int(seed))
            s = res.summary()
            log(f"{key}: {s['steps']} RL steps in {s['seconds']:.0f} s; reward {s['first_quarter_reward']:+.3f} (first "
                f"quarter) -> {s['last_quarter_reward']:+.3f} (last quarter)")
            out[key] = res
    return out


def training_summary(results: dict[str, Any]) -> pd.DataFrame:
    """One row per trained policy: steps, seconds, reward at the start and the end of training."""
    return pd.DataFrame([{"policy": k, **r.summary()} for k, r in results.items()]).set_index("policy")


def policy_loaders(inputs: Inputs, results: dict[str, Any] | None = None,
                   folders: dict[str, str | os.PathLike[str]] | None = None) -> dict[str, Callable[[], tuple[Any, Any]]]:
    """``name -> loader`` for the SFT model and each trained policy (from ``results`` or saved ``folders``)."""
    from workbench.llm import load_policy
    from workbench.rlhf.grpo import load_rl_policy

    loaders: dict[str, Callable[[], tuple[Any, Any]]] = {"SFT": functools.partial(load_policy, inputs.base,
                                                                                   tuple(inputs.adapters))}
    for name, r in (results or {}).items():
        loaders[name] = functools.partial(load_rl_policy, r.output_dir)
    for name, f in (folders or {}).items():
        loaders[name] = functools.partial(load_rl_policy, f)
    return loaders


def best_of_n_study(inputs: Inputs, examples: pd.DataFrame, n: int, generation: Any, max_hold_ms: int,
                    prm_how: str = "product") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best-of-``n`` from the SFT model reranked by the outcome reward model, the process reward model and
    the verifier (oracle), plus the single sample. Returns ``(scored picks, candidates with their scores)``."""
    from workbench.llm import load_policy
    from workbench.rlhf.evaluation import (best_of_n, orm_scorer, prm_scorer, sample_candidates, score_picks,
                                           verifier_scorer)

    model, tok = load_policy(inputs.base, inputs.adapters)
    cands = sample_candidates(model, tok, examples, n, generation)
    del model
    rm = inputs.reward_models
    scorers = {}
    if rm.orm is not None:
        scorers["outcome reward model"] = orm_scorer(rm.orm)
    if rm.prm is not None:
        scorers["process reward model"] = prm_scorer(rm.prm, prm_how)
    scorers["step verifier (oracle)"] = verifier_scorer(inputs.cfg)
    picks, scored_cands = best_of_n(cands, examples, scorers)
    return score_picks(picks, examples, inputs.source, max_hold_ms, inputs.cfg), scored_cands


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------
def save_outputs(folder: str | os.PathLike[str], meta: dict[str, Any] | None = None, **tables: pd.DataFrame) -> list[Path]:
    """Each table to ``<folder>/<name>.parquet`` and ``meta`` to ``run.json``, each written atomically."""
    from workbench import atomic

    folder = Path(folder)
    out = []
    for name, df in tables.items():
        out.append(atomic.write_parquet(folder / f"{name}.parquet", _parquet_safe(df)))
    if meta is not None:
        out.append(atomic.write_json(folder / "run.json", meta))
    return out


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that pyarrow cannot store as they are (dicts, lists, mixed types) as JSON / text."""
    import pyarrow as pa

    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    for c in df.columns:
        if df[c].dtype != object:
            continue
        try:
            pa.array(df[c].tolist())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            df[c] = [None if v is None else json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)
                     for v in df[c]]
    return df


def combine_scored(*frames: pd.DataFrame) -> pd.DataFrame:
    """Stack scored analyses of several studies (the SFT row appears once)."""
    parts = [f for f in frames if f is not None and len(f)]
    return pd.concat(parts, ignore_index=True).drop_duplicates(["model", "prompt_id"], keep="first")


def scored_facts(scored: pd.DataFrame, examples: pd.DataFrame) -> list[Any]:
    """The facts of each scored row (by ``prompt_id``)."""
    from workbench.llm import facts_of

    ex = examples.reset_index(drop=True)
    return [facts_of(ex["facts"].iloc[int(i)]) for i in scored["prompt_id"]]

