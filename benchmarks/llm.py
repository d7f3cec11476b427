"""Notebook 06's model on this CPU: SFT and DPO steps per second, generation tokens per second, and the share of
a training step spent collating the batch.

Usage: python benchmarks/llm.py [--steps 12] [--batch 8] [--threads N]

The default tiny model (``workbench.llm.TinyConfig()``: hidden 256, 4 layers, 4 heads, MLP 768, context 512;
~3.5 M parameters) with its BPE tokenizer trained on synthetic decision points; weights are random (speed does
not depend on them). SFT = trl ``SFTTrainer`` with a LoRA adapter (r 16, all linear layers), DPO = trl
``DPOTrainer`` with the reference computed by disabling the adapter, both as notebook 06 runs them.

* steps/s: optimizer steps per second inside ``trainer.train()`` (first logged step excluded: warm-up);
* generation: new tokens per second of ``workbench.llm.generate`` (sampling, 128 new tokens), batch 1, 16 and
  64, for transformers' ``generate`` (the reference: the path before issue 17) and the fast decoder (float32,
  float32 grounded, bfloat16 linears) and int8 dynamic quantisation; ``ratio`` is against the reference in the
  same run (best of 2 runs);
* collation: the trainer's own data collator timed alone on a batch of already-tokenized examples, against the
  full step on that batch (collate + forward + backward + AdamW step), median of repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_PROGRESS", "0")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from timing import best_of  # noqa: E402

import workbench  # noqa: E402,F401  (offline flags before transformers)
from workbench.llm import data as D  # noqa: E402
from workbench.llm import evaluate as E  # noqa: E402
from workbench.llm import fastgen as FG  # noqa: E402
from workbench.llm import model as M  # noqa: E402
from workbench.llm import train as T  # noqa: E402


def steps_per_second(history: pd.DataFrame) -> float:
    """Optimizer steps per second between the first and the last training log (warm-up step excluded)."""
    h = history[history["loss"].notna()] if "loss" in history else history
    if len(h) < 2:
        return float("nan")
    return float((h["step"].iloc[-1] - h["step"].iloc[0]) / (h["time_s"].iloc[-1] - h["time_s"].iloc[0]))


def collation_share(trainer, batch_size: int, repeats: int = 5) -> tuple[float, float]:
    """``(collate seconds, full step seconds)``, medians over ``repeats``, on the trainer's first examples."""
    examples = [trainer.train_dataset[i] for i in range(batch_size)]
    cols = set(trainer._signature_columns or []) | {"input_ids", "labels", "completion_mask", "prompt_ids",
                                                    "chosen_ids", "rejected_ids", "attention_mask"}
    examples = [{k: v for k, v in ex.items() if k in cols} for ex in examples]
    model = trainer.model
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    t_col, t_step = [], []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        batch = trainer.data_collator(examples)
        t1 = time.perf_counter()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        t_col.append(t1 - t0)
        t_step.append(t2 - t0)
    return statistics.median(t_col[1:]), statistics.median(t_step[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=128)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    points = D.synthetic_decision_points(400, seed=0)
    ds = D.build_sft_dataset(points)
    pairs = D.synthetic_preference_pairs(points, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tok = M.train_tokenizer(D.pretraining_corpus(ds))
        model = M.build_tiny_model(tok, M.TinyConfig(), seed=0)
        M.save_pretrained(model, tok, tmp / "base")
        base = T.BaseModel(model, tok, tmp / "base", M.device_report(False))
        lora = T.LoRASettings()
        s = T.settings_for("sft", "cpu", max_steps=a.steps, batch_size=a.batch, logging_steps=1)
        sft = T.train_sft(base, ds.train, None, tmp / "sft", lora, s)
        rows.append({"what": f"SFT step (LoRA r16, batch {a.batch})", "value": steps_per_second(sft.history), "unit": "steps/s",
                     "tokens/s": float(sft.history["tokens_per_s"].median())})
        d = T.settings_for("dpo", "cpu", max_steps=a.steps, batch_size=a.batch, logging_steps=1)
        dpo = T.train_dpo(base.path, tmp / "sft", D.pairs_for_period(pairs, "train"), None, tmp / "dpo", lora, d,
                          load_in_4bit=False)
        rows.append({"what": f"DPO step (LoRA r16, batch {a.batch} pairs)", "value": steps_per_second(dpo.history),
                     "unit": "steps/s", "tokens/s": float(dpo.history["tokens_per_s"].median())})
        policy, ptok = T.load_policy(base.path, [str(tmp / "sft")])
        prompts = list(ds.test["prompt"].iloc[:64])
        facts = list(ds.test["facts"].iloc[:64])
        dec, dec16 = FG.FastDecoder(policy), FG.FastDecoder(policy, torch.bfloat16)
        int8 = E.quantize_int8(policy)
        for bs in (1, 16, 64):
            n = max(bs, 4)
            g = E.GenerationSettings(max_new_tokens=a.new_tokens, batch_size=bs, seed=0)
            E.generate(policy, ptok, prompts[:2], E.GenerationSettings(max_new_tokens=8))  # warm-up
            variants = [("transformers generate (reference: today's path)", policy, None, None),
                        ("fast decoder, float32", policy, dec, None),
                        ("fast decoder, float32, grounded", policy, dec, facts[:n]),
                        ("fast decoder, bfloat16 linears", policy, dec16, None),
                        ("int8 dynamic quantisation, transformers generate", int8, None, None)]
            ref = None
            for name, m, dv, grounding in variants:

                def run() -> list[str]:
                    return E.generate(m, ptok, prompts[:n], g, grounding=grounding, decoder=dv, fast=dv is not None)

                secs, texts = best_of(run, repeat=2 if bs < 64 else 1)
                tps = sum(len(ptok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts) / secs
                ref = ref or tps
                rows.append({"what": f"generation batch {bs}: {name}", "value": tps, "unit": "tokens/s",
                             "ratio": tps / ref})
        # collation vs full step, with the trainers' own collators
        from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

        with T.quiet():
            b2 = T.BaseModel(*M.load_base(base.path, load_in_4bit=False)[:2], base.path, base.report)
            st = SFTTrainer(model=b2.model, args=SFTConfig(**T.trainer_kwargs(s, tmp / "x", False), completion_only_loss=True),
                            train_dataset=T._dataset(T.sft_rows(tok, ds.train["prompt"], ds.train["completion"])),
                            processing_class=b2.tokenizer, peft_config=lora.peft_config())
            c, f = collation_share(st, a.batch)
            rows.append({"what": f"SFT collator (batch {a.batch})", "value": 100 * c / f, "unit": "% of the step",
                         "collate ms": 1e3 * c, "step ms": 1e3 * f})
            m3, t3, _ = M.load_base(base.path, load_in_4bit=False)
            from peft import get_peft_model

            m3 = get_peft_model(m3, lora.peft_config())
            dt = DPOTrainer(model=m3, ref_model=None, args=DPOConfig(**T.trainer_kwargs(d, tmp / "y", False)),
                            train_dataset=T._dataset(T.dpo_rows(t3, D.pairs_for_period(pairs, "train"))), processing_class=t3)
            c, f = collation_share(dt, a.batch)
            rows.append({"what": f"DPO collator (batch {a.batch} pairs)", "value": 100 * c / f, "unit": "% of the step",
                         "collate ms": 1e3 * c, "step ms": 1e3 * f})
    table = pd.DataFrame(rows).set_index("what")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tiny model "
          f"{M.n_parameters(model) / 1e6:.2f} M parameters, vocabulary {len(tok)}")
    with pd.option_context("display.float_format", "{:,.3f}".format, "display.width", 160):
        print(table.fillna("").to_string())


if __name__ == "__main__":
    main()
