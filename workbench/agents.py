"""Design document 001's agents (``src.agents`` there): ``ManagerAgent(client).analyze(symbol, data, context)``.

The document's client is a hosted Claude model and its data client a broker (Alpaca); neither can be reached
from this workbench (no network, no keys), so :class:`ClaudeClient` and :class:`AlpacaDataClient` accept the
document's call and refuse it at once with what to pass instead. :class:`LocalClient` is what runs here: the
rule-based analyst of the four-step contract (default) or a fine-tuned local model folder (notebook 06's
``models/llm``). ``ManagerAgent(LocalClient()).analyze(...)`` returns an :class:`AgentDecision` with the
``confidence`` and ``reasoning`` that ``PreferenceGenerator.record_decision(agent_response=...)`` reads.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path
from typing import Any


class ServiceUnavailable(RuntimeError):
    """A hosted service (LLM API, broker) the design names but this workbench cannot reach."""


class ClaudeClient:
    """The document's hosted Claude client: refused at construction (no hosted API is reachable here)."""

    def __init__(self, *args: Any, model: str | None = None, **kwargs: Any) -> None:
        raise ServiceUnavailable(
            f"ClaudeClient({model or ''}): the hosted Claude API cannot be reached from this workbench (no network, no "
            "keys). Pass ManagerAgent(LocalClient()) for the rule-based analyst, or "
            "ManagerAgent(LocalClient('models/llm')) for the fine-tuned local model; fine-tuning exports "
            "(RLAIFFineTuner.prepare_dpo_training_data(format='anthropic')) are files to upload yourself")


class AlpacaDataClient:
    """The document's broker data client: refused at construction (no broker is reachable here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ServiceUnavailable(
            "AlpacaDataClient: no broker can be reached from this workbench. For outcomes on recorded quotes pass "
            "OutcomeTracker(pref_gen, data_client=ReplayPriceSource(QuoteBook(events))) (workbench.rlaif, "
            "workbench.twin.backtest); any object with quotes(), expiry() and now() works")


@dataclasses.dataclass
class AgentDecision:
    """One decision of the manager: the signal, its confidence and the four-step reasoning behind it."""

    symbol: str
    signal: str  # BUY / SELL / HOLD
    confidence: float
    reasoning: str
    position_size: float
    stop_loss: float | None
    take_profit: float | None
    entry_price: float
    facts: dict[str, Any]
    assumptions: list[str]
    source: str
    temperature: float

    @property
    def action(self) -> str:
        """The signal in the document's lowercase form (``"buy"``)."""
        return self.signal.lower()

    @property
    def analysis(self) -> str:
        return self.reasoning


class LocalClient:
    """What decides here: ``model_path=None`` the rule-based analyst (deterministic at temperature 0; a positive
    temperature draws the trade's stop, take profit and size, seeded by the temperature, so candidates differ),
    else a fine-tuned model folder (notebook 06's ``models/llm``, sampled at the temperature)."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, seed: int = 0) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        if self.model_path is not None and not self.model_path.is_dir():
            raise FileNotFoundError(f"{self.model_path}: no model folder (train one with notebook 06 or "
                                    "`python -m workbench.llm train`)")
        self.seed = seed
        self._policy: Any = None

    def write(self, facts: Any, temperature: float) -> tuple[str, str]:
        """``(analysis text, source name)`` for the facts."""
        from workbench.analysis.analyst import Analyst, prompt_from_facts

        if self.model_path is None:
            import numpy as np

            from workbench.rlaif.candidates import draw_style

            analyst = Analyst(seed=self.seed)
            style: dict[str, Any] = {}
            if temperature > 0:
                style = draw_style(np.random.default_rng([self.seed, zlib.crc32(f"{temperature:.6f}".encode())]))
                style.pop("hold_ms", None)
            return analyst.write(facts, **style).text, "analyst"
        from workbench.llm import GenerationSettings, generate
        from workbench.llm.model import TINY, task_of
        from workbench.llm.pipeline import dpo_adapter_chain
        from workbench.llm.train import load_policy

        if self._policy is None:
            out = self.model_path
            chain = (dpo_adapter_chain(out / "dpo_adapter") if (out / "dpo_adapter" / "workbench.json").exists()
                     else [str(out / "sft_adapter")] if (out / "sft_adapter").exists() else [])
            self._policy = load_policy(out / TINY if (out / TINY).exists() else out, chain)
        model, tok = self._policy
        prompt = prompt_from_facts(facts, task_of(model).prompt_style)
        g = GenerationSettings(temperature=max(float(temperature), 1e-3), greedy=temperature <= 0, seed=self.seed,
                               batch_size=1)
        return generate(model, tok, [prompt], g)[0], str(self.model_path)


class ManagerAgent:
    """The document's multi-agent manager over a :class:`LocalClient`."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            client = LocalClient()
        if not isinstance(client, LocalClient):
            raise TypeError(f"ManagerAgent needs a LocalClient here (got {type(client).__name__}): the document's "
                            "ClaudeClient cannot be reached; pass LocalClient() or LocalClient('models/llm')")
        self.client = client

    def analyze(self, symbol: str, data: dict[str, Any], context: Any = None, temperature: float = 0.0) -> AgentDecision:
        """The four-step analysis of ``data`` (a market dict, as ``RLHFTradingTrainer.generate_trading_analysis``
        takes: close, rsi, macd, ... with the assumptions it makes listed) and the decision it ends with.
        ``context`` (the document's retrieval context) is kept in the assumptions; nothing reads it."""
        from workbench.analysis.verifier import StepVerifier
        from workbench.rlhf.trainer import facts_from_market

        f, notes = facts_from_market({"symbol": symbol, **dict(data or {})})
        if context is not None:
            notes.append("context given: not used by the local analyst")
        text, source = self.client.write(f, float(temperature))
        p = StepVerifier().verify(text, f).parsed
        signal = str(p.get("signal") or "HOLD")
        entry = f.up_ask if signal == "BUY" else f.up_bid if signal == "SELL" else f.up_mid
        return AgentDecision(symbol=symbol, signal=signal, confidence=float(p.get("confidence") or 0.0), reasoning=text,
                             position_size=float(p.get("size") or 0.0), stop_loss=p.get("stop"),
                             take_profit=p.get("take_profit"), entry_price=float(entry), facts=f.to_dict(),
                             assumptions=notes, source=source, temperature=float(temperature))
