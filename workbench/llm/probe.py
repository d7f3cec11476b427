"""The learning curve of the task: digit-copy accuracy and true steps per checkpoint.

The audit of issue 17 found that the model "never learned to copy numbers from the prompt". Two measures
say, checkpoint by checkpoint, whether it is learning to:

* **teacher-forced copy-digit accuracy**: on held-out (SFT-eval) examples, the share of the digits of the
  reference analysis that restate a fact of the prompt (RSI, MACD, Bollinger width, volatility, entry, BTC
  move, minutes, Up price, fair value, support, resistance) which the model predicts exactly (argmax) given
  the reference text before them. A model that cannot copy sits at the digit frequencies (~10-20 %).
* **true-step rate** of greedy analyses (:class:`workbench.analysis.StepVerifier`), model-only and grounded
  (:class:`workbench.llm.fastgen.Grounder`), on a fixed subset of the same examples.

:class:`TaskProbe` is a ``transformers`` callback that records both every ``every`` optimiser steps.
"""

from __future__ import annotations

import re
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.analysis.verifier import StepVerifier
from workbench.llm.data import facts_of
from workbench.llm.model import format_prompt

#: Regexes (group 1: the number) of the analysis' numbers that restate a fact of the prompt.
COPIED = (r"RSI\(14\) is ([\d.]+)", r"histogram is ([+-][\d.]+)", r"width is ([\d.]+)", r"Volatility is ([\d.]+)",
          r"of Up at ([\d.]+)", r"BTC is (?:up|down) ([\d.]+)", r"opened, ([\d.]+)", r"trades at ([\d.]+)",
          r"value of ([\d.]+)", r"Support ([\d.]+)", r"resistance ([\d.]+)")


def _examples(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
              system: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids ``(N, T)``, attention mask ``(N, T)`` and the copied-digit target mask ``(N, T)``."""
    rows, marks = [], []
    eos = tokenizer.eos_token or ""
    for p, c in zip(prompts, completions):
        head = format_prompt(tokenizer, p, system)
        enc = tokenizer(head + c + eos, add_special_tokens=False, return_offsets_mapping=True)
        spans = [(len(head) + m.start(1), len(head) + m.end(1)) for pat in COPIED for m in re.finditer(pat, c)]
        toks = tokenizer.convert_ids_to_tokens(enc["input_ids"])
        mark = [any(a <= o[0] < b for a, b in spans) and t.isdigit() for t, o in zip(toks, enc["offset_mapping"])]
        rows.append(enc["input_ids"])
        marks.append(mark)
    T = max(map(len, rows))
    pad = tokenizer.pad_token_id or 0
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    cm = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, marks)):
        ids[i, : len(r)], att[i, : len(r)], cm[i, : len(r)] = torch.tensor(r), 1, torch.tensor(m)
    return ids, att, cm


@torch.no_grad()
def copy_digit_accuracy(model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
                        system: str | None = None, batch_size: int = 32) -> float:
    """Teacher-forced accuracy on the digits of ``completions`` that restate a prompt fact (see :data:`COPIED`)."""
    ids, att, cm = _examples(tokenizer, prompts, completions, system)
    hit = tot = 0
    was = model.training
    model.eval()
    for b in range(0, len(ids), batch_size):
        x, m, c = ids[b: b + batch_size], att[b: b + batch_size], cm[b: b + batch_size]
        pred = model(input_ids=x.to(model.device), attention_mask=m.to(model.device)).logits[:, :-1].argmax(-1).cpu()
        tgt, cc = x[:, 1:], c[:, 1:]
        hit += int(((pred == tgt) & cc).sum())
        tot += int(cc.sum())
    model.train(was)
    return hit / max(tot, 1)


def true_step_rates(model: Any, tokenizer: Any, examples: pd.DataFrame, system: str | None = None,
                    max_new_tokens: int = 256) -> dict[str, float]:
    """Greedy true-step share on ``examples`` (``prompt``, ``facts``), model-only and grounded."""
    from workbench.llm.evaluate import GenerationSettings, generate

    was = model.training
    g = GenerationSettings(greedy=True, max_new_tokens=max_new_tokens, batch_size=max(len(examples), 1))
    facts = [facts_of(f) for f in examples["facts"]]
    ver = StepVerifier()
    out = {}
    for mode, grounding in (("model_only", None), ("grounded", facts)):
        texts = generate(model, tokenizer, list(examples["prompt"]), g, system=system, grounding=grounding)
        out[mode] = float(np.mean([ver.verify(t, f).true_step_share for t, f in zip(texts, facts)]))
    model.train(was)
    return out


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class TaskProbe(_callback_base()):  # type: ignore[misc]
    """Records :func:`copy_digit_accuracy` and :func:`true_step_rates` every ``every`` steps and at the end.

    Parameters
    ----------
    tokenizer : the model's tokenizer.
    examples : held-out examples (``prompt``, ``completion``, ``facts``); the first ``n_copy`` give the copy
        accuracy, the first ``n_generate`` the true-step rates.
    every : optimiser steps between probes.
    system : system message of the task format.
    """

    def __init__(self, tokenizer: Any, examples: pd.DataFrame, every: int = 100, system: str | None = None,
                 n_copy: int = 128, n_generate: int = 32, max_new_tokens: int = 256) -> None:
        self.tok, self.every, self.system = tokenizer, max(int(every), 1), system
        self.copy_ex = examples.iloc[:n_copy]
        self.gen_ex = examples.iloc[:n_generate]
        self.max_new_tokens = max_new_tokens
        self.rows: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        self._probe_s = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t0, self._probe_s = time.perf_counter(), 0.0

    def probe(self, model: Any, step: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        row: dict[str, Any] = {"step": int(step), "train_seconds": t0 - self._t0 - self._probe_s,
                               "copy_digit_accuracy": copy_digit_accuracy(model, self.tok, list(self.copy_ex["prompt"]),
                                                                          list(self.copy_ex["completion"]), self.system)}
        rates = true_step_rates(model, self.tok, self.gen_ex, self.system, self.max_new_tokens)
        row.update({f"true_steps_{k}": v for k, v in rates.items()})
        self._probe_s += time.perf_counter() - t0
        row["probe_seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        return row

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if model is not None and state.global_step % self.every == 0:
            self.probe(model, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        if model is not None and (not self.rows or self.rows[-1]["step"] != state.global_step):
            self.probe(model, state.global_step)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)
