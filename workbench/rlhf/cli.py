"""Command line: ``python -m workbench.rlhf train | evaluate | generate``.

Examples (offline; the models and data of the work directory, ``$WORKBENCH_WORKDIR`` or the project)::

    python -m workbench.rlhf train --config rlhf_config.yaml --samples 96 --scheme combined
    python -m workbench.rlhf evaluate --model-path models/rlhf/combined --samples 64
    python -m workbench.rlhf generate --market '{"symbol": "BTC", "close": 43250.0, "rsi": 62.5, "macd": 0.15}'

``train`` runs GRPO (trl) from notebook 06's SFT model on ``--samples`` train/val decision points of notebook
05, ordered by the curriculum, with one reward scheme, and saves the LoRA adapter under
``models/rlhf/<scheme>`` (or ``--output-dir``). ``evaluate`` scores a policy and the SFT model on test-period
prompts (true steps, self-consistency, calibration, market result, with bootstrap intervals). ``generate``
writes one analysis for a market given as JSON (the guide's ``generate_trading_analysis``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import workbench  # noqa: F401


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="rlhf_config.yaml", help="rlhf_config.yaml (default: the project's)")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override block (default: by device)")
    p.add_argument("--models-dir", default=None, help="models folder (default: the work directory's models/)")
    p.add_argument("--processed-dir", default=None, help="processed data folder (default: data/processed)")
    p.add_argument("--hold-minutes", type=float, default=10.0, help="longest hold when replaying a signal")
    p.add_argument("--synthetic", action="store_true", help="synthetic decision points when notebook 05's are absent")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workbench.rlhf", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="GRPO of the SFT model with one reward scheme")
    _common(t)
    t.add_argument("--samples", type=int, default=None, help="RL prompts (curriculum-drawn; default: the whole pool)")
    t.add_argument("--scheme", default="combined", choices=["outcome-only", "process-only", "combined"])
    t.add_argument("--process", default="verifier", choices=["verifier", "prm"], help="source of the process reward")
    t.add_argument("--steps", type=int, default=None, help="cap on RL steps (default: rl_epochs passes)")
    t.add_argument("--learning-rate", type=float, default=None, help="default: rlhf.learning_rate")
    t.add_argument("--num-generations", type=int, default=None, help="completions per prompt (GRPO group)")
    t.add_argument("--max-completion-length", type=int, default=None, help="tokens")
    t.add_argument("--batch-size", type=int, default=None, help="prompts per RL step (default: rlhf.batch_size)")
    t.add_argument("--sft-dir", default=None, help="folder with notebook 06's sft_adapter (default: models/llm)")
    t.add_argument("--output-dir", default=None, help="default: models/rlhf/<scheme>")
    e = sub.add_parser("evaluate", help="score a policy (and the SFT model) on test-period prompts")
    _common(e)
    e.add_argument("--model-path", "--model_path", dest="model_path", required=True,
                   help="a policy folder (models/rlhf/<scheme>) or an SFT folder")
    e.add_argument("--samples", type=int, default=64, help="test-period prompts")
    e.add_argument("--n-boot", type=int, default=1000)
    e.add_argument("--no-sft", action="store_true", help="do not evaluate the SFT model alongside")
    e.add_argument("--output-file", default=None, help="write the scored analyses here (.parquet or .csv)")
    g = sub.add_parser("generate", help="one analysis for a market given as JSON")
    _common(g)
    g.add_argument("--market", required=True, help='JSON, e.g. \'{"symbol": "BTC", "close": 43250, "rsi": 62.5}\'')
    g.add_argument("--model-path", "--model_path", dest="model_path", default=None)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from workbench.rlhf.study import MissingInput
    from workbench.rlhf.trainer import RLHFTradingTrainer

    a = build_parser().parse_args(argv)
    pd.set_option("display.width", 200, "display.max_columns", 30)
    try:
        trainer = RLHFTradingTrainer(a.config, model_path=getattr(a, "model_path", None), models_dir=a.models_dir,
                                     profile=a.profile)
        if a.cmd == "train":
            res = trainer.train(samples=a.samples, scheme=a.scheme, processed=a.processed_dir, output_dir=a.output_dir,
                                process=a.process, hold_minutes=a.hold_minutes, seed=a.seed, synthetic=a.synthetic,
                                sft_dir=a.sft_dir, max_steps=a.steps, learning_rate=a.learning_rate,
                                num_generations=a.num_generations, max_completion_length=a.max_completion_length,
                                prompts_per_step=a.batch_size)
            print(pd.Series(res.summary()).to_string())
            print(f"saved under {res.output_dir}")
        elif a.cmd == "evaluate":
            from workbench.rlhf.evaluation import display_table

            summary, scored = trainer.evaluate(a.model_path, a.samples, a.processed_dir, a.hold_minutes, a.n_boot,
                                               a.synthetic, include_sft=not a.no_sft, seed=a.seed)
            print(display_table(summary).to_string())
            if a.output_file:
                out = Path(a.output_file)
                out.parent.mkdir(parents=True, exist_ok=True)
                scored.to_parquet(out) if out.suffix == ".parquet" else scored.to_csv(out, index=False)
                print(f"scored analyses -> {out}")
        else:
            d = trainer.generate_trading_analysis(json.loads(a.market))
            print(json.dumps({k: d[k] for k in ("model", "final_signal", "confidence", "position_size", "stop_loss",
                                                "take_profit", "true_step_share", "assumptions")}, indent=2, default=str))
            print(d["final_reasoning"])
    except (MissingInput, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
