"""Design document 004's inputs: an RL model's decisions on market data, explained step by step.

``--rl-model`` is the policy whose decisions the language model learns to explain: today the trader twin of
notebook 04 (``best_model.pt`` with its ``twin.json``; a folder holding both; or notebook 04's ``twin.json``);
or the PPO agent of ``python -m workbench.agent train`` (``ppo_agent.zip``
with its ``ppo_agent.json``, the design's stable-baselines3 file). ``--market-data`` is a step table (notebook 04's ``steps.parquet`` or the
pipeline's ``processed_trader_data.parquet``) or a folder of raw wallet files; the Up quotes the prompts state
come from the wallet's events (the pipeline's manifest names their folder, else ``--quotes`` or notebook 01's
tables).

Each decision point's analysis is the analyst's, written for the RL model's signal (the twin's class folded
to BUY / HOLD / SELL), and the prompt ends with the decision to explain, so the model learns to explain a
given decision with the true numbers, as the design asks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import config

DECISION_LINE = " Decision to explain: {signal}."


def with_decision(prompt: str, signal: str | None) -> str:
    """The prompt with the decision to explain appended (unchanged without one)."""
    return prompt + DECISION_LINE.format(signal=signal) if signal else prompt


@dataclass
class RLPolicy:
    """A loaded RL model: ``act(data, times_ms)`` gives its BUY / HOLD / SELL at step times."""

    kind: str  # "twin"
    path: Path
    inference: Any
    meta: dict[str, Any]

    def data(self, steps: pd.DataFrame) -> Any:
        from workbench.twin import study

        return study.from_meta(steps, self.meta)

    def act(self, data: Any, times_ms: np.ndarray, book: Any = None) -> np.ndarray:
        """Signals ``(n,)`` (BUY / HOLD / SELL) at step starts ``times_ms``: the twin at its default target, in the
        causal mode; the PPO agent acting on its own position market by market (needs the quotes ``book``);
        steps between the split's parts get HOLD."""
        from workbench.rlaif.candidates import TWIN_TO_SIGNAL
        from workbench.twin import study

        if self.kind == "ppo":
            from workbench.agent.ppo import classes_at

            cls = classes_at(self.inference, data.steps, book, times_ms)
            return np.array([TWIN_TO_SIGNAL[int(c)] for c in cls], dtype=object)

        rule = (self.meta["decision_rule"]["prior"], self.meta["decision_rule"]["exponent"]) \
            if "decision_rule" in self.meta else None
        target = float(self.meta.get("default_target", study.median_target(data)))
        cls = study.actions_at(self.inference, data, np.asarray(times_ms), {"rl": target}, rule=rule)["rl"]
        return np.array([TWIN_TO_SIGNAL[int(c)] for c in cls], dtype=object)


def load_rl_model(path: str | os.PathLike[str], device: str | None = None) -> RLPolicy:
    """The RL model at ``path`` (see the module's notes); one clear ``ValueError`` for what cannot be used."""
    from workbench.twin import TraderInference

    p = Path(path)
    if p.suffix == ".zip" or (p / "ppo_agent.zip").is_file():
        from workbench.agent.ppo import load_agent

        agent = load_agent(p, device=device or "cpu")
        return RLPolicy("ppo", agent.path, agent, agent.meta)
    if p.is_dir():
        p = p / "best_model.pt"
    if p.name == "twin.json":
        meta = json.loads(p.read_text())
        p = Path(meta["checkpoint"])
    else:
        meta_path = p.with_name("twin.json")
        nb04 = config.paths().processed / "04_twin" / "twin.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
        elif nb04.is_file() and Path(json.loads(nb04.read_text())["checkpoint"]).resolve() == p.resolve():
            meta = json.loads(nb04.read_text())
        else:
            raise ValueError(f"{p}: no twin.json beside the checkpoint (the split and scales it was trained with); "
                             "train with `python -m workbench.twin train` or pass notebook 04's twin.json")
    if not p.is_file():
        raise ValueError(f"{p}: no such checkpoint")
    return RLPolicy("twin", p, TraderInference.from_checkpoint(p, device=device), meta)


def load_market_data(path: str | os.PathLike[str] | None, quotes: str | os.PathLike[str] | None = None
                     ) -> tuple[pd.DataFrame, Any]:
    """The step table and the :class:`~workbench.twin.backtest.QuoteBook` of ``path`` (see the module's notes);
    default: notebook 04's step table and notebook 01's events."""
    from workbench.data import ingest
    from workbench.twin.backtest import QuoteBook

    P = config.paths()
    src = Path(path) if path else P.processed / "04_twin" / "steps.parquet"
    if not src.exists():
        raise ValueError(f"{src}: no such market data (a step table .parquet or a folder of wallet files)")
    if src.is_dir():
        from workbench.pipeline import build_trader_data

        data = ingest.load_wallet(src if any(f.is_file() for f in src.iterdir()) else ingest.find_wallet_dir(src))
        steps = build_trader_data(src).steps
        return steps, QuoteBook(data.events)
    steps = pd.read_parquet(src)
    if "slug" not in steps.columns or "time_to_expiry" not in steps.columns:
        raise ValueError(f"{src}: not a step table (needs slug, time_to_expiry and the state features; build one with "
                         "`python -m workbench pipeline`)")
    manifest = src.with_name(src.stem + ".manifest.json")
    if quotes is not None:
        qsrc = Path(quotes)
    elif manifest.is_file():
        qsrc = Path(json.loads(manifest.read_text())["source"])
    else:
        qsrc = P.processed / "01_ingestion"
    if not qsrc.exists():
        raise ValueError(f"{qsrc}: no quotes for the prompts (pass --quotes: notebook 01's tables or the wallet's files)")
    return steps, QuoteBook(ingest.read_or_load_events(qsrc))


def rl_decision_points(policy: RLPolicy, steps: pd.DataFrame, book: Any, num_samples: int | None = None,
                       seed: int = 0, capital: float = 500.0, parts: tuple[str, ...] = ("train", "val", "test"),
                       hold_minutes: float = 10.0) -> pd.DataFrame:
    """Decision points of the RL model on the step table, with prompts and the analyst's explanation of the RL
    model's signal, in time order.

    About ``num_samples`` points, evenly spaced over the train, validation and test parts of the model's split
    (steps whose indicators are still warming up are skipped); ``parts`` restricts them (``("test",)``: the
    held-out period only). Columns: ``time, market, facts, prompt,
    completion, signal, confidence, period, rl_signal, outcome_ret`` (``signal == rl_signal``: the completion
    explains the RL model's decision; ``outcome_ret``: the result per share of that decision on the recorded
    quotes, held at most ``hold_minutes``; NaN while open).
    """
    from workbench.analysis.analyst import Analyst, prompt_from_facts
    from workbench.rlaif import study as rlaif_study
    from workbench.rlaif.candidates import make_decision
    from workbench.rlaif.tracker import ReplayPriceSource, evaluate
    from workbench.twin import study

    data = policy.data(steps)
    periods = study.periods(data)
    periods = periods.where(periods.isin(parts), "gap")
    n_in = int((periods != "gap").sum())
    every = max(1, n_in // max(int(num_samples or n_in), 1))
    analyst = Analyst(seed=seed)
    points, facts = rlaif_study.decision_points(steps, periods, every, book, analyst, capital=capital)
    if num_samples:
        points, facts = points.iloc[: int(num_samples)], facts[: int(num_samples)]
    signals = policy.act(data, points["time"].to_numpy(), book)
    source = ReplayPriceSource(book)
    rows = []
    for (_, r), f, sig in zip(points.iterrows(), facts, signals):
        d = make_decision(f, int(r["time"]), "rl", analyst, signal=str(sig))
        o, _ = evaluate(d, source, int(hold_minutes * 60_000))
        rows.append({**r.to_dict(), "prompt": with_decision(prompt_from_facts(f), str(sig)), "completion": d.analysis,
                     "signal": d.action, "confidence": d.confidence, "rl_signal": str(sig),
                     "outcome_ret": o.ret if o is not None else np.nan})
    out = pd.DataFrame(rows)
    out.attrs["incomplete"] = points.attrs.get("incomplete", 0)
    return out
