"""Guided inference and exports for fine-tuning: rerank candidates by a reward model; write preference
pairs and supervised examples as JSONL in the forms trl reads, and as chat messages for hosted APIs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench import atomic
from workbench.rlaif.reward import RewardModel, RewardModelTrainer
from workbench.rlaif.store import PreferencePair, TradingDecision

SYSTEM_PROMPT = ("You are a careful trading analyst for Polymarket 'Bitcoin Up or Down' 15-minute markets. "
                 "Write the four-step analysis (technical analysis, risk assessment, market context, trading signal) "
                 "using only the numbers given.")


def _prompt(d: TradingDecision) -> str:
    """The question a decision answered: its recorded prompt, else (a decision recorded the design's way, with
    ``market_data`` and ``features``) the market data and features it was made from."""
    p = d.metadata.get("prompt")
    if p:
        return str(p)
    md = d.metadata.get("market_data")
    if md is None and not d.features:
        raise ValueError(f"decision {d.id} has neither metadata['prompt'] nor market data / features to export")
    facts = json.dumps({"market_data": md or {}, "features": d.features}, sort_keys=True, default=str)
    return f"Analyze {d.symbol} at {d.time} (UTC ms) from this market data and these features: {facts}"


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    return atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class RLAIFFineTuner:
    """The design's fine-tuning helper around a trained reward model.

    Parameters
    ----------
    reward_model : a :class:`RewardModelTrainer` (model + text encoder), or a bare :class:`RewardModel` with
        its ``text_encoder`` (the design's call), used to score decisions.
    text_encoder : the encoder of a bare reward model (a trainer carries its own).
    claude_client : the design's hosted-LLM client. Nothing here calls a hosted API: the exports are files
        (``format="anthropic"`` writes Anthropic's messages layout, to upload yourself) and reranking uses the
        reward model, so the client is only kept (``self.claude_client``).
    output_dir : where the JSONL exports go (the design's default ``./data/rlaif/finetuning``).
    """

    def __init__(self, reward_model: RewardModelTrainer | RewardModel | None, text_encoder: Any = None,
                 claude_client: Any = None, output_dir: str | Path = "data/rlaif/finetuning") -> None:
        if isinstance(reward_model, RewardModel):
            if text_encoder is None:
                raise ValueError("a bare RewardModel needs its text_encoder: RLAIFFineTuner(reward_model, text_encoder)")
            reward_model = RewardModelTrainer(reward_model, text_encoder)
        self.rm = reward_model
        self.claude_client = claude_client
        self.output_dir = Path(output_dir)
        self.stats: dict[str, Any] = {}

    # ---- exports -------------------------------------------------------------------------------------
    def prepare_dpo_training_data(self, preferences: Sequence[PreferencePair], format: str = "trl",
                                  filename: str | None = None) -> Path:
        """Preference pairs as JSONL.

        ``format="trl"``: ``{"prompt", "chosen", "rejected"}`` (trl's DPOTrainer, standard text format);
        ``"chat"``: the same with conversational messages (``[{"role", "content"}]`` lists);
        ``"openai"``: OpenAI preference fine-tuning rows (``input.messages``, ``preferred_output``,
        ``non_preferred_output``); ``"anthropic"``: Anthropic's messages layout (``system`` apart from
        ``messages``, then ``chosen`` and ``rejected`` assistant turns), the design's Claude format. Rows of
        ``trl``, ``chat`` and ``anthropic`` also carry ``margin`` and ``weight``. Nothing is uploaded.
        """
        rows = []
        for p in preferences:
            prompt = _prompt(p.chosen)
            if _prompt(p.rejected) != prompt:
                raise ValueError(f"pair {p.id}: chosen and rejected answer different prompts")
            if format == "trl":
                rows.append({"prompt": prompt, "chosen": p.chosen.analysis, "rejected": p.rejected.analysis,
                             "margin": p.margin, "weight": p.weight})
            elif format == "chat":
                rows.append({"prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
                             "chosen": [{"role": "assistant", "content": p.chosen.analysis}],
                             "rejected": [{"role": "assistant", "content": p.rejected.analysis}],
                             "margin": p.margin, "weight": p.weight})
            elif format == "openai":
                rows.append({"input": {"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                                    {"role": "user", "content": prompt}]},
                             "preferred_output": [{"role": "assistant", "content": p.chosen.analysis}],
                             "non_preferred_output": [{"role": "assistant", "content": p.rejected.analysis}]})
            elif format == "anthropic":
                rows.append({"system": SYSTEM_PROMPT, "messages": [{"role": "user", "content": prompt}],
                             "chosen": [{"role": "assistant", "content": p.chosen.analysis}],
                             "rejected": [{"role": "assistant", "content": p.rejected.analysis}],
                             "margin": p.margin, "weight": p.weight})
            else:
                raise ValueError(f"format must be trl, chat, openai or anthropic, got {format!r}")
        self.stats[f"dpo_{format}"] = len(rows)
        return _write_jsonl(rows, self.output_dir / (filename or f"dpo_{format}.jsonl"))

    def prepare_supervised_training_data(self, preferences: Sequence[PreferencePair] | None = None,
                                         decisions: Sequence[TradingDecision] | None = None, format: str = "trl",
                                         filename: str | None = None) -> Path:
        """Supervised examples (the chosen side of each pair, or given decisions), deduplicated by prompt.

        ``format="trl"``: ``{"prompt", "completion"}``; ``"chat"``: ``{"messages": [system, user, assistant]}``
        (trl's conversational format and hosted fine-tuning APIs).
        """
        src = list(decisions or []) + [p.chosen for p in (preferences or [])]
        seen, rows = set(), []
        for d in src:
            prompt = _prompt(d)
            if prompt in seen:
                continue
            seen.add(prompt)
            if format == "trl":
                rows.append({"prompt": prompt, "completion": d.analysis})
            elif format == "chat":
                rows.append({"messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt},
                                          {"role": "assistant", "content": d.analysis}]})
            else:
                raise ValueError(f"format must be trl or chat, got {format!r}")
        self.stats[f"sft_{format}"] = len(rows)
        return _write_jsonl(rows, self.output_dir / (filename or f"sft_{format}.jsonl"))

    # ---- guided inference ----------------------------------------------------------------------------
    def score_decision(self, decision: TradingDecision) -> float:
        if self.rm is None:
            raise ValueError("no reward model")
        return float(self.rm.score([decision])[0])

    def rerank_decisions(self, decisions: Sequence[TradingDecision]) -> list[tuple[TradingDecision, float]]:
        """Candidates sorted by reward-model score, best first."""
        if self.rm is None:
            raise ValueError("no reward model")
        scores = self.rm.score(list(decisions))
        order = np.argsort(-scores, kind="stable")
        return [(decisions[i], float(scores[i])) for i in order]

    def get_training_stats(self, preferences: Sequence[PreferencePair] | None = None) -> dict[str, Any]:
        """Exports written so far and the reward model's training; with ``preferences`` (the design's call) also
        what those pairs hold: count, mean margin, the metrics they were made by, distinct decisions and
        prompts, and how often the reward model ranks the chosen side first."""
        hist = list(self.rm.history) if self.rm is not None else []
        out: dict[str, Any] = {"exports": dict(self.stats), "reward_model_epochs": len(hist),
                               "best_val_acc": max((h.get("val_acc", float("nan")) for h in hist), default=float("nan"))}
        if preferences is not None:
            prefs = list(preferences)
            out["preferences"] = len(prefs)
            out["mean_margin"] = float(np.mean([p.margin for p in prefs])) if prefs else float("nan")
            out["metrics"] = sorted({p.metric for p in prefs})
            out["decisions"] = len({d.id for p in prefs for d in (p.chosen, p.rejected)})
            out["prompts"] = len({p.chosen.metadata.get("prompt") or p.chosen.id for p in prefs})
            out["actions_chosen"] = {a: sum(p.chosen.action == a for p in prefs) for a in ("BUY", "SELL", "HOLD")}
            if self.rm is not None and prefs:
                sc = self.rm.score([p.chosen for p in prefs])
                sr = self.rm.score([p.rejected for p in prefs])
                out["reward_model_pair_accuracy"] = float(np.mean(sc > sr))
        return out
