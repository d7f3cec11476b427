"""Training: pretrain the tiny base, supervised fine-tuning with LoRA, DPO against the SFT model.

* :func:`build_tiny_base`: tokenizer + tiny Llama trained as a causal LM on the SFT train split only
  (no look-ahead), saved with ``save_pretrained`` and reloaded to check identical logits.
* :func:`train_sft`: trl's ``SFTTrainer`` on prompt/completion examples, loss on the completion only, with
  a peft LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"):
  ``W x + (alpha / r) B A x`` with ``A (r, d_in)``, ``B (d_out, r)``, ``B = 0`` at the start.
* :func:`train_dpo`: trl's ``DPOTrainer`` on preference pairs (Rafailov et al. 2023, "Direct Preference
  Optimization"): ``-log sigmoid(beta [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))])``.
  The reference is the SFT model: the SFT adapter is merged into the base weights and a *new* LoRA adapter
  is trained on top, so ``ref_model=None`` makes trl compute the reference with the adapter disabled --
  the same weights, no second copy of the model in memory. (A 4-bit base cannot be merged exactly: there
  the SFT adapter itself keeps training and trl keeps a frozen copy of the adapter only as reference.)

Every run logs, through :class:`MetricsCallback`: training and validation loss, perplexity, learning rate,
tokens per second and peak memory (process RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU), plus
DPO's rewards, margins and accuracies. trl on CPU needs ``bf16=False``, ``use_cpu=True``,
``gradient_checkpointing=False`` and ``report_to="none"``; :func:`trainer_kwargs` sets them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import resource
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

import workbench  # noqa: F401
from workbench import atomic, config
from workbench.llm.data import SFTData, pretraining_corpus
from workbench.llm.model import (TINY, TaskFormat, TinyConfig, build_tiny_model, device_report, load_base, n_parameters,
                                 reload_check, save_pretrained, train_tokenizer, trl_answer, trl_prompt)
from workbench.rlaif.finetune import SYSTEM_PROMPT

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoRASettings:
    """LoRA adapter (Hu et al. 2021). ``alpha / r`` scales the update; dropout on the adapter's input."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = LORA_TARGETS

    def peft_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none", task_type="CAUSAL_LM")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one trainer run (AdamW, linear warm-up then cosine decay).

    ``max_steps > 0`` caps the optimiser steps (it overrides ``epochs``: a fixed time budget on CPU).
    Effective batch = ``batch_size x grad_accum`` sequences (pairs for DPO).
    """

    learning_rate: float = 2e-4
    epochs: float = 3.0
    batch_size: int = 4
    grad_accum: int = 4
    max_steps: int = -1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 512
    logging_steps: int = 10
    eval_steps: int = 50
    max_eval_examples: int = 64
    beta: float = 0.1  # DPO only
    seed: int = 0


#: The design's values (GPU) and smaller/faster CPU values, per stage.
PRESETS: dict[str, dict[str, TrainSettings]] = {
    "pretrain": {"gpu": TrainSettings(learning_rate=1e-3, epochs=3, batch_size=32, grad_accum=1, warmup_ratio=0.05),
                 "cpu": TrainSettings(learning_rate=2e-3, epochs=1, batch_size=16, grad_accum=1, warmup_ratio=0.05,
                                      logging_steps=10, eval_steps=60)},
    "sft": {"gpu": TrainSettings(learning_rate=2e-4, epochs=3, batch_size=4, grad_accum=4),
            "cpu": TrainSettings(learning_rate=2e-3, epochs=1, batch_size=8, grad_accum=1, max_steps=250,
                                 logging_steps=10, eval_steps=50)},
    "dpo": {"gpu": TrainSettings(learning_rate=5e-5, epochs=1, batch_size=4, grad_accum=4, beta=0.1),
            "cpu": TrainSettings(learning_rate=5e-4, epochs=1, batch_size=8, grad_accum=1, max_steps=50, beta=0.1,
                                 logging_steps=5, eval_steps=25, max_eval_examples=32)},
}


def settings_for(stage: str, device: str | None = None, **overrides: Any) -> TrainSettings:
    """The preset of ``stage`` (``pretrain``, ``sft``, ``dpo``) for ``device`` (``cpu``/``gpu``; default: CUDA
    present or not), with ``overrides`` applied -- ``None`` values keep the preset (notebook parameters
    set to None mean "the device's default")."""
    device = device or ("gpu" if torch.cuda.is_available() else "cpu")
    base = PRESETS[stage]["gpu" if device in ("gpu", "cuda") else "cpu"]
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def peak_memory_mb() -> tuple[float, str]:
    """``(MB, what)``: ``torch.cuda.max_memory_allocated`` on GPU, else the process's peak resident set size."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS"


def _transformers_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class MetricsCallback(_transformers_callback_base()):  # type: ignore[misc]
    """Collects every log of a ``transformers`` / trl trainer into rows of a table.

    Adds, per log: ``time_s`` since training began, ``perplexity = exp(loss)`` (SFT/pretraining: the loss
    is the mean token NLL), ``eval_perplexity``, ``tokens_per_s`` (from trl's cumulative ``num_tokens``
    between two logs) and ``peak_memory_mb``. For DPO, ``chosen_perplexity`` is
    ``exp(-logps/chosen / mean chosen length)`` (approximate: mean length of the training set's chosen
    completions, set in :attr:`chosen_tokens`). Tokens/s counts real tokens (trl's ``num_tokens``, the sum of
    the attention masks: padding excluded) and excludes evaluation time.
    """

    def __init__(self, stage: str = "", chosen_tokens: float | None = None) -> None:
        self.stage = stage
        self.rows: list[dict[str, Any]] = []
        self.chosen_tokens = chosen_tokens
        self._t0 = time.perf_counter()
        self._last: tuple[float, float] | None = None
        self._eval_s = 0.0  # evaluation time since the last training log (excluded from tokens/s)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t0 = time.perf_counter()
        self._last = (self._t0, 0.0)
        self._eval_s = 0.0

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
        logs = dict(logs or {})
        now = time.perf_counter()
        row: dict[str, Any] = {"stage": self.stage, "step": int(state.global_step), "epoch": float(state.epoch or 0.0),
                               "time_s": now - self._t0}
        row.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
        if "loss" in logs and self.stage != "dpo":
            row["perplexity"] = _exp(logs["loss"])
        if "eval_loss" in logs and self.stage != "dpo":
            row["eval_perplexity"] = _exp(logs["eval_loss"])
        for prefix in ("", "eval_"):
            lp = logs.get(f"{prefix}logps/chosen")
            if lp is not None and self.chosen_tokens:
                row[f"{prefix}chosen_perplexity"] = _exp(-float(lp) / self.chosen_tokens)
        if "eval_runtime" in logs:
            self._eval_s += float(logs["eval_runtime"])
        elif "num_tokens" in logs and self._last is not None:
            t_prev, n_prev = self._last
            busy = now - t_prev - self._eval_s
            if busy > 0 and logs["num_tokens"] > n_prev:
                row["tokens_per_s"] = (float(logs["num_tokens"]) - n_prev) / busy
            self._last, self._eval_s = (now, float(logs["num_tokens"])), 0.0
        row["peak_memory_mb"], _ = peak_memory_mb()
        self.rows.append(row)

    def history(self) -> pd.DataFrame:
        """One row per log; training rows have ``loss``, evaluation rows ``eval_loss``."""
        return pd.DataFrame(self.rows)


def _exp(x: float) -> float:
    return float(math.exp(min(float(x), 50.0)))


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers/trl info logs and deprecation warnings inside the block (and datasets' progress
    bars when ``WORKBENCH_PROGRESS=0``)."""
    import datasets
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if not config.progress_enabled():
        datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(checkpointing|deprecated).*")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()


def trainer_kwargs(s: TrainSettings, output_dir: str | os.PathLike[str], has_eval: bool) -> dict[str, Any]:
    """Arguments shared by the trl configs; CPU-safe (``bf16=False``, ``use_cpu`` without CUDA, no
    gradient checkpointing, ``report_to="none"``), no checkpoints written (the final model is saved by us)."""
    cuda = torch.cuda.is_available()
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir), learning_rate=s.learning_rate, num_train_epochs=float(s.epochs),
        max_steps=int(s.max_steps), per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum, warmup_steps=float(s.warmup_ratio),  # < 1: a ratio of the steps
        lr_scheduler_type="cosine", weight_decay=s.weight_decay, logging_steps=s.logging_steps, logging_first_step=True,
        save_strategy="no", report_to="none", bf16=bool(cuda and torch.cuda.is_bf16_supported()), fp16=False,
        use_cpu=not cuda, gradient_checkpointing=False, activation_checkpointing=False, seed=s.seed, data_seed=s.seed,
        disable_tqdm=not config.progress_enabled(), dataloader_num_workers=0, max_length=s.max_length,
    )
    if has_eval:
        kw.update(eval_strategy="steps", eval_steps=s.eval_steps)
    return kw


@dataclass
class TrainResult:
    """Output of a training stage."""

    stage: str
    history: pd.DataFrame
    output_dir: Path
    seconds: float
    steps: int
    trainable_parameters: int
    total_parameters: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        h = self.history
        tr = h[h["loss"].notna()] if "loss" in h else h.iloc[0:0]
        ev = h[h["eval_loss"].notna()] if "eval_loss" in h else h.iloc[0:0]
        out = {"stage": self.stage, "steps": self.steps, "seconds": round(self.seconds, 1),
               "trainable_parameters": self.trainable_parameters, "total_parameters": self.total_parameters,
               "first_loss": float(tr["loss"].iloc[0]) if len(tr) else np.nan,
               "last_loss": float(tr["loss"].iloc[-1]) if len(tr) else np.nan,
               "last_eval_loss": float(ev["eval_loss"].iloc[-1]) if len(ev) else np.nan,
               "tokens_per_s": float(h["tokens_per_s"].median()) if "tokens_per_s" in h else np.nan,
               "peak_memory_mb": float(h["peak_memory_mb"].max()) if "peak_memory_mb" in h else np.nan}
        for k in ("eval_rewards/accuracies", "eval_rewards/margins"):
            if k in h and h[k].notna().any():
                out[k] = float(h[k].dropna().iloc[-1])
        return {**out, **self.info}


def _no_printer(trainer: Any) -> None:
    """Drop the callback that prints every log dict (the history table has them)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def train_timed(trainer: Any) -> tuple[Any, float, Any]:
    """``trainer.train()`` without the console printer: ``(train output, seconds, trained model in eval mode)``."""
    _no_printer(trainer)
    t0 = time.perf_counter()
    out = trainer.train()
    secs = time.perf_counter() - t0
    trainer.model.eval()
    return out, secs, trainer.model


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows)


def sft_rows(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
             system: str | None | Sequence[str | None] = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """trl prompt/completion rows: conversational with a chat template, plain text otherwise. ``system``: one
    system message for all rows, or one per row (a multi-task mix: each task is asked with its own)."""
    systems = [system] * len(prompts) if system is None or isinstance(system, str) else list(system)
    return [{"prompt": trl_prompt(tokenizer, p, sy), "completion": trl_answer(tokenizer, c)}
            for p, c, sy in zip(prompts, completions, systems)]


def dpo_rows(tokenizer: Any, pairs: pd.DataFrame, system: str | None = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """trl preference rows ``{prompt, chosen, rejected}`` in the tokenizer's format."""
    return [{"prompt": trl_prompt(tokenizer, p, system), "chosen": trl_answer(tokenizer, c),
             "rejected": trl_answer(tokenizer, r)} for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])]


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Pretraining the tiny base
# ------------------------------------------------------------------------------------------------
def pretrain(model: Any, tokenizer: Any, documents: Sequence[str] | Sequence[dict[str, Any]], settings: TrainSettings,
             eval_documents: Sequence[str] | Sequence[dict[str, Any]] = (), work_dir: str | os.PathLike[str] | None = None,
             callbacks: Sequence[Any] = ()) -> TrainResult:
    """Training of every parameter (trl ``SFTTrainer``, no adapter).

    ``documents`` as texts: causal-LM pretraining, the loss on all tokens, EOS appended to each document.
    As prompt/completion rows (:func:`sft_rows`): full fine-tuning on the task, the loss on the completion only."""
    from trl import SFTConfig, SFTTrainer

    s = settings
    cb = MetricsCallback("pretrain")
    rows = bool(documents) and isinstance(documents[0], dict)

    def ds(docs: Sequence[Any]) -> Any:
        return _dataset(list(docs) if rows else [{"text": d} for d in docs])

    with quiet(), _workdir(work_dir) as wd:
        extra = dict(completion_only_loss=True) if rows else dict(dataset_text_field="text")
        args = SFTConfig(**trainer_kwargs(s, wd, bool(eval_documents)), **extra)
        ev = ds(eval_documents[: s.max_eval_examples]) if eval_documents else None
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds(documents), eval_dataset=ev,
                             processing_class=tokenizer, callbacks=[cb, *callbacks])
        _no_printer(trainer)
        t0 = time.perf_counter()
        out = trainer.train()
        secs = time.perf_counter() - t0
    return TrainResult("pretrain", cb.history(), Path(wd), secs, int(out.global_step), n_parameters(model, True),
                       n_parameters(model))


@dataclass
class BaseModel:
    """A loaded base model: ``model``, ``tokenizer``, its folder and how it was obtained."""

    model: Any
    tokenizer: Any
    path: Path
    report: Any
    pretraining: TrainResult | None = None
    reload_max_abs_diff: float | None = None
    reused: bool = False
    probe: pd.DataFrame | None = None  # the learning curve of the task during pretraining (paired), if probed
    parameters: int | None = None  # counted before any adapter wraps the model (describe() stays the base's)

    def __post_init__(self) -> None:
        if self.parameters is None:
            self.parameters = n_parameters(self.model)

    @property
    def task(self) -> TaskFormat:
        return TaskFormat.of(self.path)

    def describe(self) -> pd.Series:
        info = {"path": str(self.path), "parameters": self.parameters, "vocabulary": len(self.tokenizer),
                "context": getattr(self.model.config, "max_position_embeddings", None),
                "chat template": bool(getattr(self.tokenizer, "chat_template", None)),
                "device": self.report.device, "precision": self.report.dtype, "note": self.report.note,
                "reused from disk": self.reused}
        if self.reload_max_abs_diff is not None:
            info["reload: max |logit diff|"] = self.reload_max_abs_diff
        if self.pretraining is not None:
            info.update({f"pretrain {k}": v for k, v in self.pretraining.summary().items()
                         if k in ("steps", "seconds", "first_loss", "last_loss", "last_eval_loss", "tokens_per_s")})
        return pd.Series(info, name="base model")


def build_tiny_base(ds: SFTData, folder: str | os.PathLike[str], tiny: TinyConfig | None = None,
                    settings: TrainSettings | None = None, paired: bool = False, seed: int = 0,
                    reuse: bool = True, task: TaskFormat | None = None, probe_every: int = 0) -> BaseModel:
    """Train the tokenizer and pretrain the tiny Llama on the SFT *train* split; save to ``folder``.

    The corpus is :func:`workbench.llm.data.pretraining_corpus` (prompts and completions of the train
    split only: no eval or test-period text, no look-ahead). With ``reuse``, a folder built from the same
    corpus and settings is loaded instead of retrained. After saving, the model is reloaded and its logits
    compared with the trained one's (:attr:`BaseModel.reload_max_abs_diff`, 0.0 when identical).
    ``task`` (recorded in ``workbench.json``) says how the prompts were rendered and whether a system message is
    used; with ``paired`` the documents are in that format. ``probe_every > 0`` records the learning curve of
    the task on the SFT-eval split every that many steps (:class:`workbench.llm.probe.TaskProbe`:
    teacher-forced digit-copy accuracy, model-only and grounded true steps) in :attr:`BaseModel.probe`.
    """
    task = task or TaskFormat()
    tiny = tiny or TinyConfig()
    settings = settings or settings_for("pretrain")
    settings = dataclasses.replace(settings, seed=seed, max_length=min(settings.max_length, tiny.context))
    folder = Path(folder)
    docs = pretraining_corpus(ds, paired=paired, seed=seed)
    fp = _fingerprint(docs, tiny.to_dict(), dataclasses.asdict(settings), paired, seed, task.to_dict(), probe_every)
    meta_path = folder / "workbench.json"
    if reuse and meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fp:
        model, tok, rep = load_base(folder, load_in_4bit=False)
        meta = json.loads(meta_path.read_text())
        hist = pd.DataFrame(meta.get("history", []))
        pre = TrainResult("pretrain", hist, folder, float(meta.get("seconds", 0.0)), int(meta.get("steps", 0)),
                          n_parameters(model), n_parameters(model))
        return BaseModel(model, tok, folder, rep, pre, meta.get("reload_max_abs_diff"), reused=True,
                         probe=pd.DataFrame(meta.get("probe", [])))
    tok = train_tokenizer(docs, vocab_size=tiny.vocab_size)
    model = build_tiny_model(tok, tiny, seed=seed)
    if paired:  # full fine-tuning on the task: prompt/completion rows in the task format, loss on the analysis
        order = np.random.default_rng(seed).permutation(len(ds.train))
        tr = ds.train.iloc[order]
        train_docs: Any = sft_rows(tok, tr["prompt"], tr["completion"], task.system)
        ev_docs: Any = sft_rows(tok, ds.eval["prompt"], ds.eval["completion"], task.system)
    else:
        train_docs, ev_docs = docs, list(ds.eval["prompt"]) + list(ds.eval["completion"])
    callbacks = []
    if probe_every > 0 and len(ds.eval):
        from workbench.llm.probe import TaskProbe

        callbacks.append(TaskProbe(tok, ds.eval, every=probe_every, system=task.system))
    res = pretrain(model, tok, train_docs, settings, eval_documents=ev_docs, callbacks=callbacks)
    model.eval()
    meta = {"fingerprint": fp, "tiny": tiny.to_dict(), "settings": dataclasses.asdict(settings), "paired": paired,
            "task": task.to_dict(), "probe": [r for cb in callbacks for r in getattr(cb, "rows", [])],
            "documents": len(docs), "cutoff_ms": ds.cutoff_ms, "seconds": res.seconds, "steps": res.steps,
            "history": res.history.to_dict("records")}
    save_pretrained(model, tok, folder, meta)
    sample = list(ds.train["prompt"].iloc[:2]) + list(ds.train["completion"].iloc[:2])
    diff = reload_check(model, tok, folder, sample)
    meta["reload_max_abs_diff"] = diff
    (folder / "workbench.json").write_text(json.dumps(meta, indent=2, default=str))
    return BaseModel(model, tok, folder, device_report(False), res, diff, probe=pd.DataFrame(meta["probe"]))


def get_base(base_model: str, ds: SFTData, models_dir: str | os.PathLike[str], tiny: TinyConfig | None = None,
             settings: TrainSettings | None = None, paired: bool = False, seed: int = 0, load_in_4bit: bool = True,
             reuse: bool = True, task: TaskFormat | None = None, probe_every: int = 0) -> BaseModel:
    """``"workbench-tiny"``: :func:`build_tiny_base` under ``models_dir/workbench-tiny``; any other value: a
    local model directory loaded with :func:`workbench.llm.model.load_base`."""
    if base_model == TINY:
        return build_tiny_base(ds, Path(models_dir) / TINY, tiny, settings, paired, seed, reuse, task, probe_every)
    model, tok, rep = load_base(base_model, load_in_4bit=load_in_4bit)
    return BaseModel(model, tok, Path(base_model), rep)


# ------------------------------------------------------------------------------------------------
# SFT with LoRA
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _workdir(path: str | os.PathLike[str] | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    d = Path(tempfile.mkdtemp(prefix="wb-llm-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _systems(df: pd.DataFrame, default: str | None) -> str | None | list[str | None]:
    """The rows' own system messages (a ``system`` column: multi-task data; missing values take ``default``)."""
    if "system" not in df:
        return default
    return [default if x is None or (isinstance(x, float) and x != x) else str(x) for x in df["system"]]


def train_sft(base: BaseModel, train: pd.DataFrame, eval: pd.DataFrame | None, output_dir: str | os.PathLike[str],
              lora: LoRASettings | None = None, settings: TrainSettings | None = None,
              task: TaskFormat | None = None) -> TrainResult:
    """Supervised fine-tuning with a LoRA adapter (trl ``SFTTrainer``, prompt/completion, loss on the
    completion only). Saves the adapter (and tokenizer) to ``output_dir``; ``base.model`` is wrapped in
    place (reload the base from its folder for a clean copy). ``task``: the base's recorded format by
    default; the prompts in ``train`` must already be rendered in its style. A ``system`` column gives rows
    their own system message (multi-task data, :mod:`workbench.llm.multitask`)."""
    from trl import SFTConfig, SFTTrainer

    lora = lora or LoRASettings()
    s = settings or settings_for("sft")
    tok = base.tokenizer
    task = task or base.task
    cb = MetricsCallback("sft")
    ev = eval.iloc[: s.max_eval_examples] if eval is not None and len(eval) else None
    with quiet(), _workdir(None) as wd:
        args = SFTConfig(**trainer_kwargs(s, wd, ev is not None), completion_only_loss=True)
        trainer = SFTTrainer(model=base.model, args=args,
                             train_dataset=_dataset(sft_rows(tok, train["prompt"], train["completion"],
                                                             _systems(train, task.system))),
                             eval_dataset=_dataset(sft_rows(tok, ev["prompt"], ev["completion"], _systems(ev, task.system)))
                             if ev is not None else None,
                             processing_class=tok, peft_config=lora.peft_config(), callbacks=[cb])
        out, secs, model = train_timed(trainer)
        meta = {"stage": "sft", "base": str(base.path), "task": task.to_dict(), "lora": dataclasses.asdict(lora),
                "settings": dataclasses.asdict(s), "examples": len(train), "seconds": secs}
        save_pretrained(model, tok, output_dir, meta)
    hist = cb.history()
    atomic.write_file(Path(output_dir) / "history.csv", lambda p: hist.to_csv(p, index=False))
    return TrainResult("sft", hist, Path(output_dir), secs, int(out.global_step), n_parameters(model, True),
                       n_parameters(model), {"lora_r": lora.r, "lora_alpha": lora.alpha})


# ------------------------------------------------------------------------------------------------
# Loading policies
# ------------------------------------------------------------------------------------------------
def load_policy(base_path: str | os.PathLike[str], adapters: Sequence[str | os.PathLike[str]] = (), merge: bool = True,
                load_in_4bit: bool = False) -> tuple[Any, Any]:
    """The base model with ``adapters`` applied in order: each adapter but the last is merged into the
    weights (the next was trained on top of the merged model); the last is merged too when ``merge``
    (faster generation), else left as a trainable-free :class:`peft.PeftModel`. Returns ``(model, tokenizer)``."""
    from peft import PeftModel

    model, tok, rep = load_base(base_path, load_in_4bit=load_in_4bit)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(checkpointing|deprecated).*")
        for i, a in enumerate(adapters):
            model = PeftModel.from_pretrained(model, str(a), is_trainable=False)
            if i < len(adapters) - 1 or (merge and not rep.quantized_4bit):
                model = model.merge_and_unload()
    model.eval()
    # how this policy is asked (the last folder that recorded it): generate(system="auto") reads it
    model.workbench_task = TaskFormat.of(*[str(a) for a in adapters][::-1], base_path)
    return model, tok


# ------------------------------------------------------------------------------------------------
# DPO
# ------------------------------------------------------------------------------------------------
def train_dpo(base_path: str | os.PathLike[str], sft_adapter: str | os.PathLike[str], train_pairs: pd.DataFrame,
              eval_pairs: pd.DataFrame | None, output_dir: str | os.PathLike[str], lora: LoRASettings | None = None,
              settings: TrainSettings | None = None, load_in_4bit: bool = True,
              task: TaskFormat | None = None) -> TrainResult:
    """DPO (Rafailov et al. 2023) of the SFT model on preference pairs; the reference is the SFT model.

    Full-precision base: the SFT adapter is merged into the base weights and a new LoRA adapter is
    trained; trl is given the :class:`peft.PeftModel` and ``ref_model=None``, so the reference log-probs
    are the same weights with the adapter disabled (no second model in memory). 4-bit base: the SFT
    adapter keeps training and trl copies the adapter (only) as a frozen ``ref`` adapter.
    Saves the DPO adapter to ``output_dir``; load with ``load_policy(base, [sft_adapter, output_dir])``
    (or ``[output_dir]`` alone in the 4-bit case, see ``workbench.json``).
    """
    from peft import PeftModel, get_peft_model
    from trl import DPOConfig, DPOTrainer

    lora = lora or LoRASettings()
    s = settings or settings_for("dpo")
    task = task or TaskFormat.of(sft_adapter, base_path)
    model, tok, rep = load_base(base_path, load_in_4bit=load_in_4bit)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(checkpointing|deprecated).*")
        if rep.quantized_4bit:
            model = PeftModel.from_pretrained(model, str(sft_adapter), is_trainable=True)
            reference = "frozen copy of the SFT adapter on the 4-bit base (trl 'ref' adapter)"
            adapters = [str(output_dir)]
        else:
            model = PeftModel.from_pretrained(model, str(sft_adapter)).merge_and_unload()
            torch.manual_seed(s.seed)
            model = get_peft_model(model, lora.peft_config())
            reference = "SFT weights with the DPO adapter disabled (same model, no copy)"
            adapters = [str(sft_adapter), str(output_dir)]
    tok.padding_side = "left"
    ev = eval_pairs.iloc[: s.max_eval_examples] if eval_pairs is not None and len(eval_pairs) else None
    train_ds = _dataset(dpo_rows(tok, train_pairs, task.system))
    cb = MetricsCallback("dpo")
    with quiet(), _workdir(None) as wd:
        args = DPOConfig(**trainer_kwargs(s, wd, ev is not None), beta=s.beta)
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train_ds,
                             eval_dataset=_dataset(dpo_rows(tok, ev, task.system)) if ev is not None else None,
                             processing_class=tok, callbacks=[cb])
        lens = [len(x) for x in trainer.train_dataset["chosen_ids"]]
        cb.chosen_tokens = float(np.mean(lens)) if lens else None
        no_copy = trainer.ref_model is None
        out, secs, model = train_timed(trainer)
        if "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")
        meta = {"stage": "dpo", "base": str(base_path), "task": task.to_dict(), "sft_adapter": str(sft_adapter),
                "adapters": adapters,
                "reference": reference, "lora": dataclasses.asdict(lora), "settings": dataclasses.asdict(s),
                "pairs": len(train_pairs), "seconds": secs}
        save_pretrained(model, tok, output_dir, meta)
    hist = cb.history()
    atomic.write_file(Path(output_dir) / "history.csv", lambda p: hist.to_csv(p, index=False))
    return TrainResult("dpo", hist, Path(output_dir), secs, int(out.global_step), n_parameters(model, True),
                       n_parameters(model), {"reference": reference, "reference_model_in_memory": not no_copy,
                                             "beta": s.beta})
