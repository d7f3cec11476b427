"""The guide's entry point: ``RLHFTradingTrainer(config_path)`` and ``generate_trading_analysis(market)``.

Quick start (as in the crypto-trading RLHF guide)::

    trainer = RLHFTradingTrainer("rlhf_config.yaml")
    market = {"symbol": "BTC", "close": 43250.0, "change_24h": 2.5, "rsi": 62.5, "macd": 0.15, "bb_position": 0.7}
    decision = trainer.generate_trading_analysis(market)
    print(decision["final_signal"], decision["confidence"]); print(decision["final_reasoning"])

The model: the policy notebook 07 trained (``models/rlhf/<scheme>/``, the ``combined`` scheme first), else
notebook 06's SFT model (``models/llm/``); without either, a :class:`workbench.rlhf.study.MissingInput`
says what to run first.

**From a generic market dict to the project's prompt** (:func:`facts_from_market`). The project's analyses
are about Polymarket "Bitcoin Up or Down" 15-minute markets; the prompt needs the facts of
:class:`workbench.analysis.Facts`. Any ``Facts`` field given in the dict is used as is. Otherwise:

* ``rsi`` -> ``rsi``; ``macd`` (MACD histogram in price units) -> ``macd_bp = 1e4 macd / close`` (basis points
  of the price; 0 without ``close``);
* ``change_24h`` is *not* the move since the 15-minute market opened: ``btc_move_pct`` is taken from
  ``change_since_open_pct`` when given, else assumed 0;
* ``bb_position`` (where the price sits in the bands) has no place in the prompt, which states the band
  *width*: ``bb_width_pct`` when given, else the typical 0.40 %;
* missing quotes: an at-the-money Up token (bid 0.49, ask 0.51), fair value 0.50 (``fair`` when given),
  five-minute range 0.46-0.54, 7.5 minutes left, flat position, the configuration's capital; one-minute
  volatility 0.055 % unless ``vol_pct`` is given.

Every assumption made is listed in the returned decision's ``assumptions``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import workbench  # noqa: F401
from workbench.analysis.analyst import prompt_from_facts
from workbench.analysis.facts import Facts
from workbench.analysis.rlconfig import DEFAULT_CONFIG, STEPS, RLConfig, load_config
from workbench.analysis.verifier import StepVerifier, split_steps
from workbench.rlhf.study import RLHF_FOLDER, MissingInput, find_sft

#: Order in which trained policies are looked for.
SCHEME_PREFERENCE = ("combined", "process-only", "outcome-only")
MARKET_DEFAULTS: dict[str, float] = {"minutes_left": 7.5, "btc_move_pct": 0.0, "up_bid": 0.49, "up_ask": 0.51,
                                     "fair": 0.50, "rsi": 50.0, "macd_bp": 0.0, "bb_width_pct": 0.40,
                                     "vol_pct": 0.055, "range_low": 0.46, "range_high": 0.54, "position": 0.0}


def resolve_config(path: str | os.PathLike[str] | None) -> Path:
    """A configuration path as given, else relative to the project root (``rlhf_config.yaml`` works from
    any directory)."""
    if path is None:
        return DEFAULT_CONFIG
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    alt = DEFAULT_CONFIG.parent / p
    return alt if alt.exists() else p


def facts_from_market(market: dict[str, Any], cfg: RLConfig | None = None) -> tuple[Facts, list[str]]:
    """:class:`Facts` for a generic market dict and the list of assumptions made (see the module's notes)."""
    cfg = cfg or load_config()
    m = dict(market)
    notes: list[str] = []
    fields = {f.name for f in dataclasses.fields(Facts)}
    vals: dict[str, Any] = {k: m[k] for k in fields if k in m}
    symbol = str(m.get("symbol", "BTC"))
    t = pd.Timestamp(m["time"]) if "time" in m else pd.Timestamp.now(tz="UTC").floor("s")
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    vals.setdefault("time", t.isoformat())
    if "market" not in vals:
        slot = int(t.value // 10**9) - int(t.value // 10**9) % 900
        vals["market"] = f"{symbol.lower()}-updown-15m-{slot}"
        notes.append(f"market: the 15-minute {symbol} Up/Down slot starting at "
                     f"{pd.Timestamp(slot, unit='s', tz='UTC'):%H:%M} UTC")
    if "macd_bp" not in vals and "macd" in m:
        close = m.get("close")
        if close:
            vals["macd_bp"] = 1e4 * float(m["macd"]) / float(close)
            notes.append(f"macd {m['macd']} read as the MACD histogram in price units: {vals['macd_bp']:+.3f} bp of "
                         f"close {close}")
        else:
            notes.append("macd given without close: cannot convert to basis points, MACD histogram assumed 0")
    if "btc_move_pct" not in vals:
        if "change_since_open_pct" in m:
            vals["btc_move_pct"] = float(m["change_since_open_pct"])
        elif "change_24h" in m:
            notes.append(f"change_24h {m['change_24h']}% is not the move since the 15-minute market opened: "
                         "BTC move since the open assumed 0")
    if "bb_position" in m and "bb_width_pct" not in vals:
        notes.append(f"bb_position {m['bb_position']} (position within the bands) is not part of the prompt, which "
                     "states the band width")
    explained = {"macd_bp"} if "macd" in m else set()
    explained |= {"btc_move_pct"} if "change_24h" in m else set()
    for k, v in MARKET_DEFAULTS.items():
        if k not in vals:
            vals[k] = v
            if k not in explained:
                notes.append(f"{k} not given: assumed {v}")
    vals.setdefault("capital", float(cfg.verifier.capital))
    for k in fields - {"time", "market"}:
        vals[k] = float(vals[k])
    if vals["up_ask"] < vals["up_bid"]:
        raise ValueError(f"up_ask {vals['up_ask']} below up_bid {vals['up_bid']}")
    return Facts(**{k: vals[k] for k in fields}), notes


@dataclasses.dataclass
class TradingAnalysis:
    """What :meth:`RLHFTradingTrainer.generate_trading_analysis` returns: the design's ``final_signal`` and
    ``final_reasoning`` attributes, every other field of the analysis, and dict access (``d["confidence"]``,
    ``d.keys()``) for code written against the dict of earlier versions."""

    symbol: str
    final_signal: str
    confidence: float
    final_reasoning: str
    technical_analysis: str
    risk_assessment: str
    market_context: str
    signal_generation: str
    steps: dict[str, str]
    position_size: Any
    stop_loss: Any
    take_profit: Any
    step_verification: dict[str, bool]
    true_step_share: float
    self_consistent: bool
    parsed: bool
    prompt: str
    model: str
    facts: dict[str, Any]
    assumptions: list[str]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Any:  # as a dict: the field names
        return iter(self.keys())

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.keys() else default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RLHFTradingTrainer:
    """Load the configuration and a policy; write, train and evaluate four-step trading analyses.

    Parameters
    ----------
    config_path : ``rlhf_config.yaml`` (relative paths are also looked up in the project root).
    model_path : a policy folder (``models/rlhf/<scheme>``) or a folder with notebook 06's ``sft_adapter``;
        default: the trained policy (``SCHEME_PREFERENCE`` order), else the SFT model.
    models_dir : the models folder of the work directory (default ``config.paths().models``).
    scheme : look only for this scheme's policy.
    profile : ``cpu`` / ``gpu`` override block of the configuration (default: by the device).
    max_new_tokens : longest analysis written (tokens); decoding is greedy (deterministic).
    """

    def __init__(self, config_path: str | os.PathLike[str] = "rlhf_config.yaml", model_path: str | os.PathLike[str] | None = None,
                 models_dir: str | os.PathLike[str] | None = None, scheme: str | None = None, profile: str | None = None,
                 max_new_tokens: int = 256) -> None:
        from workbench import config
        from workbench.rlhf.grpo import device_kind

        self.config_path = resolve_config(config_path)
        self.cfg = load_config(self.config_path, profile or device_kind())
        self.models_dir = Path(models_dir) if models_dir else config.paths().models
        self.model_path = Path(model_path) if model_path else None
        self.scheme = scheme
        self.max_new_tokens = max_new_tokens
        self._model: Any = None
        self._tok: Any = None
        self.model_name = ""
        self.data_path: Path | None = None  # decision points prepared by ``prepare`` (default: notebook 05's)

    # ---- models ------------------------------------------------------------------------------------------
    def locate_policy(self) -> tuple[str, str, list[str]]:
        """``(name, base, adapters)`` of the model :meth:`load` would use."""
        from workbench.rlhf.grpo import policy_chain

        if self.model_path is not None:
            if (self.model_path / "workbench.json").exists() and not (self.model_path / "sft_adapter").exists():
                base, adapters = policy_chain(self.model_path)
                return self.model_path.name, base, adapters
            base, adapters = find_sft(self.models_dir, self.model_path)
            return "SFT", base, adapters
        for s in ([self.scheme] if self.scheme else SCHEME_PREFERENCE):
            root = self.models_dir / RLHF_FOLDER
            for folder in [root / s, *sorted(root.glob(f"{s}-seed*"))]:  # one policy, or the first seed's
                if (folder / "workbench.json").exists():
                    base, adapters = policy_chain(folder)
                    return folder.name, base, adapters
        try:
            base, adapters = find_sft(self.models_dir)
        except MissingInput as exc:
            raise MissingInput(f"no trained policy under {self.models_dir / RLHF_FOLDER} and no SFT model under "
                               f"{self.models_dir / 'llm'}: run notebook 06 (06_llm_finetuning) for the SFT model, then "
                               f"notebook 07 (07_rlhf_process) or `python -m workbench.rlhf train` for the RL policy "
                               f"({exc})") from exc
        return "SFT", base, adapters

    def load(self) -> tuple[Any, Any]:
        """The policy and its tokenizer (loaded once)."""
        if self._model is None:
            from workbench.llm import load_policy

            self.model_name, base, adapters = self.locate_policy()
            self._model, self._tok = load_policy(base, adapters)
        return self._model, self._tok

    # ---- the guide's call ----------------------------------------------------------------------------------
    def generate_trading_analysis(self, market: dict[str, Any]) -> "TradingAnalysis":
        """The four-step analysis of ``market`` and the decision it ends with.

        Returns a :class:`TradingAnalysis` (the design reads ``decision.final_signal`` and
        ``decision.final_reasoning``; it also reads as the dict of earlier versions) with ``final_signal`` (BUY / SELL / HOLD; HOLD when the model wrote no parseable signal,
        with ``parsed = False``), ``confidence`` (0-1; 0.0 when unparseable), ``final_reasoning`` (the whole
        analysis), the four steps (``technical_analysis``, ``risk_assessment``, ``market_context``,
        ``signal_generation``; also under ``steps``), ``position_size``, ``stop_loss``, ``take_profit``, the
        verifier's verdict per step (``step_verification``), ``true_step_share``, ``self_consistent``,
        ``prompt``, ``model`` and ``assumptions``.
        """
        from workbench.llm import GenerationSettings, generate

        f, notes = facts_from_market(market, self.cfg)
        model, tok = self.load()
        from workbench.llm.model import task_of

        prompt = prompt_from_facts(f, task_of(model).prompt_style)
        text = generate(model, tok, [prompt], GenerationSettings(greedy=True, max_new_tokens=self.max_new_tokens,
                                                                 batch_size=1))[0]
        v = StepVerifier(self.cfg.verifier).verify(text, f)
        steps = split_steps(text)
        p = v.parsed
        sig = p.get("signal")
        conf = p.get("confidence")
        parsed = sig is not None
        if not parsed:
            notes.append("the model wrote no parseable signal: final_signal defaults to HOLD with confidence 0")
        out: dict[str, Any] = {
            "symbol": market.get("symbol", "BTC"), "final_signal": sig or "HOLD",
            "confidence": float(np.clip(conf, 0.0, 1.0)) if conf is not None and parsed else 0.0,
            "final_reasoning": text, **{s: steps.get(s, "") for s in STEPS}, "steps": {s: steps.get(s, "") for s in STEPS},
            "position_size": p.get("size"), "stop_loss": p.get("stop"), "take_profit": p.get("take_profit"),
            "step_verification": dict(v.step_ok), "true_step_share": v.true_step_share,
            "self_consistent": v.self_consistent, "parsed": parsed, "prompt": prompt, "model": self.model_name,
            "facts": f.to_dict(), "assumptions": notes}
        return TradingAnalysis(**out)

    # ---- training and evaluation (the CLI) --------------------------------------------------------------
    def train(self, samples: int | None = None, scheme: str = "combined", processed: str | os.PathLike[str] | None = None,
              output_dir: str | os.PathLike[str] | None = None, process: str = "verifier", hold_minutes: float = 10.0,
              seed: int = 0, synthetic: bool = False, sft_dir: str | os.PathLike[str] | None = None,
              **overrides: Any) -> Any:
        """GRPO of the SFT model with one scheme's reward on ``samples`` curriculum-ordered train/val prompts;
        saves to ``output_dir`` (default ``models/rlhf/<scheme>``). ``synthetic``: synthetic decision points
        when notebook 05's are absent. ``overrides``: :class:`workbench.rlhf.grpo.RLSettings` fields."""
        from workbench import config
        from workbench.rlhf.curriculum import curriculum
        from workbench.rlhf.grpo import rl_settings, train_grpo
        from workbench.rlhf.rewards import GRPOReward, ReplayOutcome
        from workbench.rlhf.study import MissingInput as Missing
        from workbench.rlhf.study import load_reward_models, price_source, rl_pool

        processed = Path(processed) if processed else config.paths().processed
        points = self._points(processed, synthetic)
        max_hold = int(hold_minutes * 60_000)
        pool = rl_pool(points, max_hold)
        prompts = curriculum(pool, self.cfg, n=samples, seed=seed)
        base, adapters = find_sft(self.models_dir, sft_dir)
        source, note = price_source(processed)
        prm = load_reward_models(self.models_dir).prm if process == "prm" else None
        if process == "prm" and prm is None:
            raise Missing("process='prm' needs notebook 05's process reward model (models/rlaif/process_rm.pt)")
        reward = GRPOReward(scheme, self.cfg, ReplayOutcome(source, self.cfg, max_hold), process, prm)
        settings = rl_settings(self.cfg, seed=seed, **overrides)
        out = Path(output_dir) if output_dir else self.models_dir / RLHF_FOLDER / scheme
        res = train_grpo(base, adapters, prompts, reward, settings, out, scheme=scheme)
        res.info["market_outcomes"] = note
        self._model = None  # the next generation loads the new policy
        return res

    def evaluate(self, model_path: str | os.PathLike[str] | None = None, samples: int = 64,
                 processed: str | os.PathLike[str] | None = None, hold_minutes: float = 10.0, n_boot: int = 1000,
                 synthetic: bool = False, include_sft: bool = True, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Score a policy (and the SFT model) on ``samples`` test-period prompts: ``(summary, scored)``."""
        from workbench import config
        from workbench.llm import GenerationSettings, load_policy
        from workbench.rlhf.evaluation import evaluate_policies, summary_table
        from workbench.rlhf.grpo import load_rl_policy
        from workbench.rlhf.study import price_source, test_examples

        processed = Path(processed) if processed else config.paths().processed
        examples = test_examples(self._points(processed, synthetic), samples)
        source, _ = price_source(processed)
        loaders: dict[str, Any] = {}
        if include_sft:
            try:
                base, adapters = find_sft(self.models_dir)
                loaders["SFT"] = lambda: load_policy(base, adapters)
            except MissingInput:
                pass
        if model_path is not None:
            mp = Path(model_path)
            loaders[mp.name] = (lambda: load_rl_policy(mp)) if not (mp / "sft_adapter").exists() else \
                (lambda: load_policy(*find_sft(self.models_dir, mp)))
        else:
            name, base, adapters = self.locate_policy()
            loaders.setdefault(name, lambda: load_policy(base, adapters))
        gen = GenerationSettings(max_new_tokens=self.max_new_tokens, seed=seed)
        scored = evaluate_policies(loaders, examples, gen, source, int(hold_minutes * 60_000), self.cfg)
        return summary_table(scored, n_boot, seed), scored

    def debug_rewards(self, model_path: str | os.PathLike[str] | None = None, samples: int = 32,
                      processed: str | os.PathLike[str] | None = None, hold_minutes: float = 10.0,
                      synthetic: bool = False, seed: int = 0) -> pd.DataFrame:
        """The guide's ``debug_rewards``: a policy's analyses of ``samples`` test-period prompts and every reward
        component of each (:func:`workbench.rlhf.diagnostics.debug_rewards`), the outcome replayed on the
        recorded quotes; the analysis text is the last column."""
        from workbench import config
        from workbench.llm import GenerationSettings, facts_of, generate
        from workbench.rlhf.diagnostics import debug_rewards
        from workbench.rlhf.rewards import ReplayOutcome
        from workbench.rlhf.study import price_source, test_examples

        if model_path is not None:
            self.model_path, self._model = Path(model_path), None
        processed = Path(processed) if processed else config.paths().processed
        examples = test_examples(self._points(processed, synthetic), samples)
        model, tok = self.load()
        from workbench.llm.data import restyle
        from workbench.llm.model import task_of

        examples, _ = restyle(examples, None, task_of(model).prompt_style)
        texts = generate(model, tok, list(examples["prompt"]), GenerationSettings(max_new_tokens=self.max_new_tokens,
                                                                                  seed=seed))
        source, _ = price_source(processed)
        outcome = ReplayOutcome(source, self.cfg, int(hold_minutes * 60_000))
        table = debug_rewards(texts, [facts_of(f) for f in examples["facts"]], self.cfg, outcome,
                              [{"time": int(t)} for t in examples["time"]])
        return table.assign(market=list(examples["market"]), text=texts)

    def _points(self, processed: Path, synthetic: bool) -> pd.DataFrame:
        from workbench.llm.data import ContractError, read_decision_points, synthetic_decision_points

        try:
            return read_decision_points(self.data_path if self.data_path is not None else processed / "05_rlaif")
        except ContractError:
            if synthetic:
                return synthetic_decision_points(400, seed=0)
            raise
