"""Guided inference and exports for fine-tuning: rerank candidates by a reward model; write preference
pairs and supervised examples as JSONL in the forms trl reads, and as chat messages for hosted APIs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench import atomic
from workbench.rlaif.reward import RewardModelTrainer
from workbench.rlaif.store import PreferencePair, TradingDecision

SYSTEM_PROMPT = ("You are a careful trading analyst for Polymarket 'Bitcoin Up or Down' 15-minute markets. "
                 "Write the four-step analysis (technical analysis, risk assessment, market context, trading signal) "
                 "using only the numbers given.")


def _prompt(d: TradingDecision) -> str:
    p = d.metadata.get("prompt")
    if not p:
        raise ValueError(f"decision {d.id} has no metadata['prompt'] to export")
    return str(p)


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    return atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class RLAIFFineTuner:
    """The design's fine-tuning helper around a trained reward model.

    Parameters
    ----------
    reward_model : a :class:`RewardModelTrainer` (model + text encoder) used to score decisions.
    text_encoder : kept for the design's signature (the trainer carries its own encoder).
    output_dir : where the JSONL exports go.
    """

    def __init__(self, reward_model: RewardModelTrainer | None, text_encoder: Any = None,
                 output_dir: str | Path = "data/processed/05_rlaif/exports") -> None:
        self.rm = reward_model
        self.output_dir = Path(output_dir)
        self.stats: dict[str, Any] = {}

    # ---- exports -------------------------------------------------------------------------------------
    def prepare_dpo_training_data(self, preferences: Sequence[PreferencePair], format: str = "trl",
                                  filename: str | None = None) -> Path:
        """Preference pairs as JSONL.

        ``format="trl"``: ``{"prompt", "chosen", "rejected"}`` (trl's DPOTrainer, standard text format);
        ``"chat"``: the same with conversational messages (``[{"role", "content"}]`` lists);
        ``"openai"``: OpenAI preference fine-tuning rows (``input.messages``, ``preferred_output``,
        ``non_preferred_output``). Rows also carry ``margin`` and ``weight``.
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
            else:
                raise ValueError(f"format must be trl, chat or openai, got {format!r}")
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

    def get_training_stats(self) -> dict[str, Any]:
        hist = self.rm.history if self.rm is not None else []
        return {"exports": dict(self.stats), "reward_model_epochs": len(hist),
                "best_val_acc": max((h.get("val_acc", float("nan")) for h in hist), default=float("nan"))}
