"""Command line: ``python -m workbench.rlhf prepare | sft | train | evaluate | generate | debug-rewards |
analyze-steps`` (design document 000's scripts).

Examples (offline; the models and data of the work directory, ``$WORKBENCH_WORKDIR`` or the project)::

    python -m workbench.rlhf prepare --symbols BTC-USD --output-dir training_data     # prepare_training_data.py
    python -m workbench.rlhf sft --config training_config.yaml                        # train_crypto_model.py
    python -m workbench.rlhf train --config rlhf_config.yaml --samples 96 --scheme combined   # run_rlhf_training.py
    python -m workbench.rlhf evaluate --model_path models/rlhf/combined --samples 64  # evaluate_rlhf_model.py
    python -m workbench.rlhf debug-rewards --model_path models/rlhf/combined          # debug_rewards.py
    python -m workbench.rlhf analyze-steps --data_path training_data                  # analyze_steps.py
    python -m workbench.rlhf generate --market '{"symbol": "BTC", "close": 43250.0, "rsi": 62.5, "macd": 0.15}'

``prepare`` writes the decision points of the chosen symbols (notebook 05's, or ``--synthetic`` ones) to
``--output-dir/decision_points.parquet``; ``--data-path`` of the other commands reads them instead of notebook
05's. ``sft`` fine-tunes the base model with LoRA on them (the settings of ``training_config.yaml``) into
``models/llm``, where ``train`` finds its starting point. ``debug-rewards`` writes a policy's analyses of
test-period prompts and every reward component of each, with the distribution per scheme; ``analyze-steps``
verifies the analyses of a file or folder step by step (presence, accuracy, reward, the claims that fail).

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
from typing import Any, Sequence

import numpy as np

import workbench  # noqa: F401


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="rlhf_config.yaml", help="rlhf_config.yaml (default: the project's)")
    p.add_argument("--profile", choices=["cpu", "gpu"], default=None, help="override block (default: by device)")
    p.add_argument("--models-dir", default=None, help="models folder (default: the work directory's models/)")
    p.add_argument("--processed-dir", default=None, help="processed data folder (default: data/processed)")
    p.add_argument("--hold-minutes", type=float, default=10.0, help="longest hold when replaying a signal")
    p.add_argument("--synthetic", action="store_true", help="synthetic decision points when notebook 05's are absent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-path", "--data_path", dest="data_path", default=None,
                   help="decision points written by `prepare` (default: notebook 05's)")


def _scoring(p: argparse.ArgumentParser, *, required: bool, samples: int, model_help: str, output_help: str) -> None:
    """The arguments of the commands that write and score a policy's analyses (evaluate, debug-rewards)."""
    p.add_argument("--model-path", "--model_path", dest="model_path", required=required, default=None, help=model_help)
    p.add_argument("--samples", type=int, default=samples, help="test-period prompts")
    p.add_argument("--output-file", default=None, help=output_help)


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
    _scoring(e, required=True, samples=64, model_help="a policy folder (models/rlhf/<scheme>) or an SFT folder",
             output_help="write the scored analyses here (.parquet or .csv)")
    e.add_argument("--n-boot", type=int, default=1000)
    e.add_argument("--no-sft", action="store_true", help="do not evaluate the SFT model alongside")
    g = sub.add_parser("generate", help="one analysis for a market given as JSON")
    _common(g)
    g.add_argument("--market", required=True, help='JSON, e.g. \'{"symbol": "BTC", "close": 43250, "rsi": 62.5}\'')
    g.add_argument("--model-path", "--model_path", dest="model_path", default=None)
    pr = sub.add_parser("prepare", help="decision points of the chosen symbols (design 000's prepare_training_data)")
    _common(pr)
    pr.add_argument("--symbols", nargs="+", default=["BTC-USD"], help="e.g. BTC-USD (the markets' underlying)")
    pr.add_argument("--output-dir", default="training_data", help="folder for decision_points.parquet (default training_data)")
    pr.add_argument("--num-samples", type=int, default=None, help="keep at most this many, evenly over time")
    sf = sub.add_parser("sft", help="LoRA fine-tuning before RL (design 000's train_crypto_model)")
    _common(sf)
    sf.add_argument("--training-config", dest="training_config", default=None,
                    help="alias of --config for this command (default training_config.yaml)")
    sf.add_argument("--output-dir", default=None, help="default: models/llm (where `train` looks)")
    d = sub.add_parser("debug-rewards", help="every reward component of a policy's analyses (design 000's debug_rewards)")
    _common(d)
    _scoring(d, required=False, samples=32, model_help="a policy folder (default: the trained policy, else the SFT model)",
             output_help="write the per-analysis table here (.csv or .parquet)")
    s2 = sub.add_parser("analyze-steps", help="step-by-step verification of analyses (design 000's analyze_steps)")
    _common(s2)
    s2.add_argument("--worst", type=int, default=5, help="lowest-scored steps to list")
    return ap


def _symbol(market: str) -> str:
    """``btc-updown-15m-1767574800`` -> ``BTC-USD`` (the underlying of a market, as design 000 names it)."""
    return market.split("-", 1)[0].upper() + "-USD"


def _processed(a: argparse.Namespace) -> Path:
    from workbench import config

    return Path(a.processed_dir) if a.processed_dir else config.paths().processed


def _cmd_prepare(a: argparse.Namespace, trainer: Any) -> int:
    from workbench import atomic
    from workbench.llm.data import validate_decision_points

    points = trainer._points(_processed(a), a.synthetic)
    sym = points["market"].map(_symbol)
    available = sorted(set(sym))
    wanted = [w.upper() if "-" in w else f"{w.upper()}-USD" for w in a.symbols]
    missing = [w for w in wanted if w not in available]
    if missing:
        raise ValueError(f"no decision points for {' '.join(missing)}: the data holds {' '.join(available)} "
                         f"Up/Down markets only; pass --symbols {' '.join(available)}")
    sel = points[sym.isin(wanted).to_numpy()].reset_index(drop=True)
    if a.num_samples and len(sel) > a.num_samples:
        sel = sel.iloc[np.linspace(0, len(sel) - 1, a.num_samples).round().astype(int)].reset_index(drop=True)
    sel = validate_decision_points(sel)
    out = Path(a.output_dir)
    atomic.write_file(out / "decision_points.parquet", lambda p: sel.to_parquet(p))
    manifest = {"symbols": wanted, "rows": len(sel), "periods": sel["period"].value_counts().to_dict(),
                "source": "synthetic" if a.synthetic and trainer.data_path is None and
                not (_processed(a) / "05_rlaif" / "decision_points.parquet").exists() else "notebook 05"}
    atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    print(f"{len(sel):,} decision points ({', '.join(wanted)}; {manifest['periods']}) -> {out / 'decision_points.parquet'}")
    return 0


def _cmd_sft(a: argparse.Namespace) -> int:
    """LoRA SFT with ``training_config.yaml``'s settings, through ``python -m workbench.llm train``."""
    import yaml

    from workbench.analysis.rlconfig import PROJ_ROOT, yaml_number
    from workbench.llm.cli import main as llm_main

    path = Path(a.training_config or (a.config if a.config != "rlhf_config.yaml" else "training_config.yaml"))
    if not path.is_file() and (PROJ_ROOT / path).is_file():
        path = PROJ_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training configuration (the project's training_config.yaml is the "
                                "template)")
    raw = yaml.safe_load(path.read_text()) or {}
    cfg = raw.get("sft", raw) if isinstance(raw, dict) else None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping (an 'sft' block)")
    flags = {"base_model": "--base-model", "num_epochs": "--num-epochs", "batch_size": "--batch-size",
             "learning_rate": "--learning-rate", "gradient_accumulation_steps": "--gradient-accumulation-steps",
             "max_steps": "--max-steps", "lora_r": "--lora-r", "lora_alpha": "--lora-alpha",
             "lora_dropout": "--lora-dropout", "split_ratio": "--split-ratio", "pretrain_epochs": "--pretrain-epochs",
             "seed": "--seed"}
    unknown = sorted(set(cfg) - set(flags) - {"train_data", "output_dir"})
    if unknown:
        raise ValueError(f"{path}: unknown sft setting(s) {unknown}; known: {sorted(flags)} + train_data, output_dir")
    data = a.data_path or cfg.get("train_data") or str(_processed(a) / "05_rlaif")
    argv = ["train", "--train-data", str(data), "--output-dir", str(a.output_dir or cfg.get("output_dir") or
                                                                    Path(a.models_dir or "models") / "llm")]
    for k, flag in flags.items():
        if cfg.get(k) is not None:
            argv += [flag, str(yaml_number(cfg[k]))]
    print("python -m workbench.llm " + " ".join(argv), file=sys.stderr)
    return int(llm_main(argv))


def _cmd_debug(a: argparse.Namespace, trainer: Any) -> int:
    table = trainer.debug_rewards(a.model_path, a.samples, _processed(a), a.hold_minutes, a.synthetic, a.seed)
    totals = [c for c in table.columns if c.startswith("total")]
    print(f"{len(table)} analyses of test-period prompts by {trainer.model_name or a.model_path}")
    print(table[["true_step_share", "process", "outcome", "calibration", "mentions (guarded)", "mentions (naive)",
                 *totals]].describe().T[["mean", "std", "min", "50%", "max"]].round(3).to_string())
    if a.output_file:
        out = Path(a.output_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out) if out.suffix == ".parquet" else table.to_csv(out)
        print(f"per-analysis rewards -> {out}")
    return 0


def _cmd_analyze(a: argparse.Namespace, trainer: Any) -> int:
    from workbench.llm.data import facts_of
    from workbench.rlhf.diagnostics import analyze_steps, step_table, worst_steps

    if trainer.data_path is None:
        raise ValueError("analyze-steps needs --data_path: a folder with decision_points.parquet (prepare's), or a "
                         ".parquet / .csv / .jsonl / .json of analyses with their facts (evaluate --output-file)")
    rows = _analyses(trainer.data_path)
    text_col = next((c for c in ("text", "analysis", "completion") if c in rows.columns), None)
    if text_col is None or "facts" not in rows.columns:
        raise ValueError(f"{trainer.data_path}: needs an analysis column (text, analysis or completion) and facts")
    rows = rows[rows["facts"].notna()].reset_index(drop=True)
    facts = [facts_of(f) if not isinstance(f, dict) else facts_of(json.dumps(f)) for f in rows["facts"]]
    table = step_table(list(rows[text_col].astype(str)), facts, trainer.cfg,
                       model=list(rows["model"].astype(str)) if "model" in rows.columns else "")
    by = ("model", "step") if "model" in rows.columns else ("step",)
    print(f"{len(rows):,} analyses from {trainer.data_path}")
    print(analyze_steps(table, by).drop(columns=["prm_prob_true", "prm_prob_false", "prm_auc"]).round(3).to_string())
    worst = worst_steps(table, a.worst)
    if len(worst):
        print(f"\nlowest-scored steps ({a.worst}):")
        print(worst.to_string(index=False, max_colwidth=80))
    return 0


def _analyses(path: Path) -> Any:
    import pandas as pd

    from workbench.llm.data import read_decision_points, read_jsonl

    if path.is_dir():
        return read_decision_points(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text()))
    return pd.DataFrame(read_jsonl(path))


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from workbench.rlhf.study import MissingInput
    from workbench.rlhf.trainer import RLHFTradingTrainer

    a = build_parser().parse_args(argv)
    pd.set_option("display.width", 200, "display.max_columns", 30)
    try:
        if a.cmd == "sft":
            return _cmd_sft(a)
        trainer = RLHFTradingTrainer(a.config, model_path=getattr(a, "model_path", None), models_dir=a.models_dir,
                                     profile=a.profile)
        if a.data_path:
            trainer.data_path = Path(a.data_path)
        if a.cmd == "prepare":
            return _cmd_prepare(a, trainer)
        if a.cmd == "debug-rewards":
            return _cmd_debug(a, trainer)
        if a.cmd == "analyze-steps":
            return _cmd_analyze(a, trainer)
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
            d = trainer.generate_trading_analysis(json.loads(a.market)).to_dict()
            print(json.dumps({k: d[k] for k in ("model", "final_signal", "confidence", "position_size", "stop_loss",
                                                "take_profit", "true_step_share", "assumptions")}, indent=2, default=str))
            print(d["final_reasoning"])
    except (MissingInput, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
