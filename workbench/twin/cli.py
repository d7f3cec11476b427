"""Command line: ``python -m workbench.twin train | infer`` (design document 003's ``train_model.py`` and its
inference example).

Examples (offline)::

    python -m workbench pipeline --data_dir data/raw/merged_trades            # -> data/processed_trader_data.parquet
    python -m workbench.twin train --data_dir data/raw/merged_trades --output_dir models --epochs 50 \\
        --batch_size 32 --device cpu
    python -m workbench.twin infer --model models/best_model.pt --target-rtg 0.02 --output-file predictions.csv

``train`` builds the step table (``--data_dir``: a ``merged_trades`` or wallet folder, or the pipeline's
parquet), splits it in time (train / validation / test with gaps), trains the Decision Transformer with early
stopping on the validation action cross-entropy and writes ``<output_dir>/best_model.pt`` (the document's
checkpoint: ``torch.load`` it and ``load_state_dict`` into ``TraderDecisionTransformer(state_dim=17,
action_dim=5)`` with the default architecture) and ``<output_dir>/twin.json`` (the split and scales ``infer``
needs). ``infer`` acts step by step over the test period (causal sliding context) at a target return and writes
the predicted actions and probabilities; it prints their agreement with the trader's recorded actions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

import workbench  # noqa: F401
from workbench import atomic, config

DEFAULT_DATA = Path("data") / "processed_trader_data.parquet"


def _steps(data_dir: str | None, wallet: str) -> pd.DataFrame:
    """The step table: the pipeline's parquet as is, else built from raw files (default: the project's data)."""
    from workbench.pipeline import build_trader_data

    if data_dir and Path(data_dir).suffix == ".parquet":
        return pd.read_parquet(data_dir)
    if not data_dir and DEFAULT_DATA.is_file():
        print(f"steps: {DEFAULT_DATA}", file=sys.stderr)
        return pd.read_parquet(DEFAULT_DATA)
    src = Path(data_dir) if data_dir else config.paths().merged_trades
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such folder (run `python -m workbench simulate` or `fetch`, or pass "
                                "--data_dir)")
    print(f"steps: built from {src}", file=sys.stderr)
    return build_trader_data(src, wallet=wallet).steps


def _cmd_train(a: argparse.Namespace) -> int:
    import torch

    from workbench.twin import study

    torch.manual_seed(a.seed)
    steps = _steps(a.data_dir, a.wallet)
    split = dict(train=a.train_fraction, val=a.val_fraction, gap=a.gap, window=a.window, train_stride=a.train_stride,
                 rtg_scale=a.rtg_scale, features=a.features)
    data = study.prepare(steps, **split)
    out = Path(a.output_dir)
    if a.device and str(a.device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {a.device} but this machine has no CUDA GPU: pass --device cpu")
    trainer, history = study.train_twin(data, out, d_model=a.d_model, n_layers=a.n_layers, n_heads=a.n_heads,
                                        dropout=a.dropout, rtg_dropout=a.rtg_dropout, epochs=a.epochs,
                                        patience=a.patience, batch_size=a.batch_size, learning_rate=a.learning_rate,
                                        warmup_steps=a.warmup_steps, seed=a.seed, device=a.device)
    _, val_loader = study.loaders(data, a.batch_size, a.seed)
    val = trainer.validate(val_loader)
    meta = {"train_fraction": a.train_fraction, "val_fraction": a.val_fraction, "gap": a.gap, "window": a.window,
            "train_stride": a.train_stride, "rtg_scale": data.rtg_scale, "rtg_mode": data.rtg_mode,
            "features": list(data.features), "levels": None, "default_target": study.median_target(data),
            "checkpoint": str(out / "best_model.pt"), "best_epoch": trainer.best_epoch, "seed": a.seed,
            "validation": {k: float(v) for k, v in val.items() if np.isscalar(v)}}
    atomic.write_text(out / "twin.json", json.dumps(meta, indent=2, default=float))
    history.to_csv(out / "history.csv", index=False)
    print(history.tail(5).round(4).to_string(index=False))
    print(f"Validation Accuracy: {val['accuracy']:.2%}")
    print(f"Validation Loss: {val['loss']:.4f}")
    print(f"saved {out / 'best_model.pt'} (best epoch {trainer.best_epoch}) and {out / 'twin.json'}")
    return 0


def _cmd_infer(a: argparse.Namespace) -> int:
    from workbench.data.simulate import ACTIONS
    from workbench.twin import TraderInference, study

    model_path = Path(a.model)
    meta_path = Path(a.meta) if a.meta else model_path.with_name("twin.json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: the split and scales of the model (written by `python -m "
                                "workbench.twin train`); pass --meta")
    meta = json.loads(meta_path.read_text())
    inference = TraderInference.from_checkpoint(model_path, device=a.device)
    steps = _steps(a.data_dir, a.wallet)
    data = study.from_meta(steps, meta)
    rows = data.rows(a.part)
    # twin.json keeps the default target in the model's RTG units (as notebook 04 does); --target-rtg is a return
    target = (float(meta.get("default_target", 0.0)) / inference.rtg_scale if a.target_rtg is None
              else float(a.target_rtg))
    roll = inference.rollout(data.states[rows], target * inference.rtg_scale)
    probs = roll["action_probs"]
    table = pd.DataFrame({"predicted": [ACTIONS[i] for i in roll["actions"]],
                          "trader": [ACTIONS[i] for i in data.actions[rows]],
                          **{f"p_{name}": probs[:, k] for k, name in enumerate(ACTIONS)}},
                         index=data.steps.index[rows])
    out = Path(a.output_file)
    atomic.write_file(out, lambda p: table.to_parquet(p) if out.suffix == ".parquet" else table.to_csv(p))
    agree = float((roll["actions"] == data.actions[rows]).mean())
    print(f"{len(table):,} {a.part} steps at target return {target:+.4f} -> {out}")
    print("predicted actions:", table["predicted"].value_counts(normalize=True).round(3).to_dict())
    hold = float((data.actions[rows] == ACTIONS.index("HOLD")).mean())
    print(f"agreement with the trader's recorded actions: {agree:.1%} (always HOLD: {hold:.1%})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.twin", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the Decision Transformer (design 003's train_model.py)")
    t.add_argument("--data_dir", "--data-dir", dest="data_dir", default=None,
                   help=f"merged_trades / wallet folder, or the pipeline's parquet (default: {DEFAULT_DATA} if "
                        "present, else the project's raw data)")
    t.add_argument("--wallet", default="", help="wallet folder under a merged_trades folder (default: the only one)")
    t.add_argument("--output_dir", "--output-dir", dest="output_dir", default="models",
                   help="where best_model.pt and twin.json go (default: models)")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=32)
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--features", default="seed", choices=["seed", "trader"],
                   help="state features: the design's 17 (seed) or what the trader acts on (trader)")
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--n-layers", type=int, default=6)
    t.add_argument("--n-heads", type=int, default=8)
    t.add_argument("--dropout", type=float, default=0.1)
    t.add_argument("--rtg-dropout", type=float, default=0.0,
                   help="share of training windows without a target (0: the design's architecture)")
    t.add_argument("--window", type=int, default=128, help="steps per sequence (the design's 128)")
    t.add_argument("--train-stride", type=int, default=16)
    t.add_argument("--train-fraction", type=float, default=0.6)
    t.add_argument("--val-fraction", type=float, default=0.2)
    t.add_argument("--gap", type=int, default=128, help="steps dropped between the parts")
    t.add_argument("--rtg-scale", type=float, default=100.0, help="RTG units per unit of return (the design's x100)")
    t.add_argument("--learning-rate", type=float, default=1e-4)
    t.add_argument("--warmup-steps", type=int, default=50)
    t.add_argument("--patience", type=int, default=6)
    t.add_argument("--seed", type=int, default=7)
    i = sub.add_parser("infer", help="act over the test period at a target return")
    i.add_argument("--model", default=str(Path("models") / "best_model.pt"), help="checkpoint (default models/best_model.pt)")
    i.add_argument("--meta", default=None, help="twin.json of the model (default: beside the checkpoint)")
    i.add_argument("--data_dir", "--data-dir", dest="data_dir", default=None, help="as for train")
    i.add_argument("--wallet", default="")
    i.add_argument("--target-rtg", "--target_rtg", dest="target_rtg", type=float, default=None,
                   help="target return, e.g. 0.02 for 2%% (default: the training median)")
    i.add_argument("--part", default="test", choices=["train", "val", "test"])
    i.add_argument("--device", default=None)
    i.add_argument("--output-file", "--output_file", dest="output_file", default="twin_predictions.csv",
                   help=".csv or .parquet")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from workbench.data.ingest import IngestError

    a = build_parser().parse_args(argv)
    try:
        return _cmd_train(a) if a.cmd == "train" else _cmd_infer(a)
    except (FileNotFoundError, ValueError, KeyError, IngestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
