"""Command line: ``python -m workbench run | simulate | ingest | fetch | pipeline | twin | llm | rlhf`` (see
``python -m workbench --help``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from workbench import config


def _cmd_run(args: argparse.Namespace) -> int:
    from workbench.chain import ChainError, parse_cli_value, run_chain

    only = [o for part in (args.only or []) for o in part.split(",") if o]
    overrides = {k: parse_cli_value(v) for k, v in (args.param or [])}
    try:
        res = run_chain(args.profile, only=only or None, overrides=overrides,
                        run_dir=Path(args.run_dir) if args.run_dir else None,
                        workdir=Path(args.workdir) if args.workdir else None)
    except ChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if res.ok else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from workbench.chain import Profile
    from workbench.data.simulate import ensure_simulation, simulate

    base = Profile.load(args.profile).simulate if args.profile else {}
    settings = {**base, **({"days": args.days} if args.days is not None else {}),
                **({"seed": args.seed} if args.seed is not None else {})}
    from workbench.data.simulate import config_with

    cfg = config_with(**settings)
    out = Path(args.out) if args.out else config.paths().raw
    res = ensure_simulation(cfg, out, progress=not args.quiet) if args.if_absent else simulate(
        cfg, out, progress=not args.quiet)
    if res is None:
        print(f"simulated data with this configuration already present under {out} (wallet {cfg.wallet})")
        return 0
    print(f"simulated {res.n_files} markets, {res.n_events:,} events in {res.seconds:.1f}s\n"
          f"  wallet files: {res.wallet_dir}\n  hidden truth (evaluation only): {res.truth_dir}")
    return 0


def _ingest_arguments(args: argparse.Namespace) -> str | None:
    """The first bad ``ingest`` argument as an error line, checked before any file is parsed; None when fine."""
    import os

    import pandas as pd

    from workbench.data.walk import display_path

    for src in args.src:
        if not os.path.lexists(src):
            return f"SRC {display_path(src)!r}: no such file or folder"
    try:
        ok = pd.Timedelta(args.bar_interval) > pd.Timedelta(0)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        return f"--bar-interval {args.bar_interval!r}: expected a positive duration such as 1min, 5min or 15min"
    if args.workers is not None and args.workers < 1:
        return f"--workers {args.workers}: expected at least 1"
    if args.scheduler is not None and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        return f"--scheduler {args.scheduler!r}: expected a Dask scheduler address such as tcp://host:8786"
    out = Path(args.out)
    if os.path.lexists(out) and not out.is_dir():
        return f"--out {display_path(out)!r} exists and is not a folder"
    resolved = out.resolve()
    for src in args.src:
        root = Path(src).resolve()
        if root.is_dir() and (resolved == root or resolved.is_relative_to(root)):
            return f"--out {display_path(out)!r} lies inside the source folder {display_path(src)!r}: its tables would be read as input next time"
        if resolved.is_dir() and root.is_relative_to(resolved):
            return f"--out {display_path(out)!r} holds the source {display_path(src)!r}: replacing it would delete the input"
    return None


def _cmd_ingest(args: argparse.Namespace) -> int:
    from workbench.data.ingest import load_wallet
    from workbench.data.schema import IngestError

    problem = _ingest_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        data = load_wallet(args.src, bar_interval=args.bar_interval, progress=not args.quiet, workers=args.workers,
                           scheduler=args.scheduler)
        rec = data.check()  # before anything is written: an unbalanced ingest writes nothing
        written = data.write(args.out)
    except IngestError as exc:  # ReconciliationError included
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {exc.filename or args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(json.dumps(rec, indent=2))
    if len(data.quarantine):
        print(f"quarantined or not read: {len(data.quarantine)} (see {written['quarantine']})")
        print(data.quarantine.groupby(["level", "reason"]).size().sort_values(ascending=False).head(10).to_string())
    print(f"tables: {', '.join(f'{k}={len(getattr(data, k))}' for k in data.TABLES)} -> {args.out}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from workbench.data.fetch import (FetchError, FetchUsageError, S3Settings, fetch_wallet, validate_out_dir,
                                      validate_wallet)

    out = Path(args.out) if args.out else None
    try:
        # bad arguments first, before settings or the network: one line and exit 2, like argparse
        validate_wallet(args.wallet)
        validate_out_dir(out or config.paths().merged_trades, args.wallet)
        settings = S3Settings.from_env(Path(args.env_file) if args.env_file else None,
                                       bucket=args.bucket, endpoint_url=args.endpoint_url)
        rep = fetch_wallet(args.wallet, settings, prefix=args.prefix, out_dir=out, progress=not args.quiet)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, FetchUsageError) else 1
    print(rep)
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from workbench.data.ingest import IngestError
    from workbench.pipeline import build_trader_data, write_trader_data

    src = Path(args.data_dir) if args.data_dir else config.paths().merged_trades
    try:
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such folder (run `python -m workbench simulate` or `fetch` first, or "
                                    "pass --data_dir)")
        result = build_trader_data(src, wallet=args.wallet, notional=args.notional, progress=not args.quiet)
        out = write_trader_data(result, args.output)
    except (FileNotFoundError, IngestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = result.manifest
    print(f"{m['steps']:,} steps ({m['first_step']} to {m['last_step']}) from {m['events']:,} events "
          f"({m['quarantined']:,} quarantined) -> {out}")
    print(f"d* = {m['d_star']} (training share up to {m['train_end']}); exit levels: take profit "
          f"+{m['exit_levels']['take_profit']:.2f}, stop loss -{m['exit_levels']['stop_loss']:.2f} "
          f"({m['exit_levels']['how']})")
    return 0


_DESCRIPTION = """The trading-research workbench: simulate or fetch wallet files, ingest them, build the step table, run
the notebook chain; the trader twin, the trading LLM and RLHF have command lines of their own (below)."""
_EPILOG = """examples:
  python -m workbench run                                  the whole chain on the default data (30 simulated days)
  python -m workbench run --profile smoke                  2 days and tiny models, in minutes; writes under runs/
  python -m workbench run --only 01,02 -p BAR_INTERVAL 5min
  python -m workbench simulate --days 30 --seed 7
  python -m workbench ingest data/raw/merged_trades/0xabc... --out data/processed/my_wallet
  python -m workbench fetch --wallet 0xabc... --bucket my-bucket --endpoint-url https://<account>.r2.cloudflarestorage.com
  python -m workbench pipeline --data_dir data/raw/merged_trades

stage command lines (python -m workbench twin|agent|llm|rlhf ... is the same as python -m workbench.twin ... etc.):
  python -m workbench.twin  train | infer
  python -m workbench.agent train | evaluate
  python -m workbench.llm   generate | train | infer | commentary | chat
  python -m workbench.rlhf  prepare | sft | train | evaluate | generate | debug-rewards | analyze-steps

the design documents' commands (../shared/seeds) and theirs here:
  003 python download_bucket.py                   python -m workbench fetch --wallet ADDRESS --bucket B --endpoint-url URL
  003 python pipeline.py                          python -m workbench pipeline
  003 python train_model.py --data_dir D --output_dir models --epochs 50 --batch_size 32 --device cpu
                                                  python -m workbench.twin train  (the same flags)
  004 python -m trading_llm.train_llm CMD ...     python -m workbench.llm CMD ...  (generate, train, infer, commentary,
                                                  chat with the document's flags)
  000 python scripts/prepare_training_data.py --symbols BTC-USD    python -m workbench.rlhf prepare --symbols BTC-USD
  000 python scripts/train_crypto_model.py --config training_config.yaml
                                                  python -m workbench.rlhf sft --config training_config.yaml
  000 python scripts/run_rlhf_training.py --config rlhf_config.yaml --samples 5000
                                                  python -m workbench.rlhf train --config rlhf_config.yaml --samples 5000
  000 python scripts/evaluate_rlhf_model.py --model_path P         python -m workbench.rlhf evaluate --model_path P
  000 python scripts/debug_rewards.py --model_path P               python -m workbench.rlhf debug-rewards --model_path P
  000 python scripts/analyze_steps.py --data_path D                python -m workbench.rlhf analyze-steps --data_path D
  001 python scripts/example_rlaif_training.py    python -m workbench run --only 05  (the RLAIF loop, notebook 05)

Run "python -m workbench COMMAND --help" for a command's options."""


def _sub(sub: Any, name: str, help: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, epilog=epilog or None,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = _sub(sub, "run", "run the numbered notebook chain with papermill",
             "Execute notebooks/NN_*.ipynb in numeric order with papermill, stopping at the first failure. Each run\n"
             "writes its executed notebooks and a manifest (parameters, versions, input and output hashes) under\n"
             "runs/<timestamp>-<profile>/.",
             "examples:\n  python -m workbench run --profile smoke\n  python -m workbench run --only 04 -p EPOCHS 5")
    r.add_argument("--profile", default="default", help="profile name (default, smoke) or a YAML file (default: default)")
    r.add_argument("--only", action="append", help="notebook numbers to run, e.g. --only 01,02 (default: all)")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a notebook parameter; VALUE is read as YAML (3, true, 15min, [1, 2])")
    r.add_argument("--run-dir", help="folder for the executed notebooks and the manifest (default: runs/<id>)")
    r.add_argument("--workdir", help="folder for generated data, figures and models (default: the profile's)")
    r.set_defaults(func=_cmd_run)

    s = _sub(sub, "simulate", "write simulated wallet files (the seed's JSON format)",
             "Simulate BTC Up/Down 15-minute markets and a trader with a hidden policy, written in exactly the input\n"
             "format of real per-wallet files; the hidden truth goes to simulator_truth/ (for evaluation only).",
             "example:\n  python -m workbench simulate --days 30 --seed 7")
    s.add_argument("--days", type=float, help="simulated days (default 30, or the profile's)")
    s.add_argument("--seed", type=int, help="random seed (default 7, or the profile's)")
    s.add_argument("--profile", help="take days and seed from a chain profile (default, smoke)")
    s.add_argument("--if-absent", action="store_true", help="keep an existing simulation with the same settings")
    s.add_argument("--out", help="the data/raw folder (files go to OUT/merged_trades/<wallet>/; default data/raw)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_simulate)

    i = _sub(sub, "ingest", "ingest wallet files into Parquet tables",
             "Read seed-format JSON and Polymarket Data-API CSV files (folders are walked; links are followed only\n"
             "inside them), validate every record, quarantine what cannot be used, and write events, trades,\n"
             "positions, bars, quarantine, files and resolutions as Parquet into OUT, all or nothing. Prints the\n"
             "reconciliation: records read = kept + quarantined.",
             "example:\n  python -m workbench ingest data/raw/merged_trades/0xabc... --out /tmp/tables --bar-interval 5min")
    i.add_argument("src", nargs="+", help="folders or files (seed-format JSON or Data-API CSV)")
    i.add_argument("--out", required=True, help="output folder for the Parquet tables (replaced as a whole)")
    i.add_argument("--bar-interval", default="15min",
                   help="length of a bar, a pandas duration such as 1min, 5min or 1h (default 15min)")
    i.add_argument("--workers", type=int, help="processes reading the files (default: one per core for large "
                   "folders; 1 = this process)")
    i.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786) whose workers read the files "
                   "(they must see the same paths)")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_ingest)

    f = _sub(sub, "fetch", "download a wallet's files from an S3-compatible bucket (e.g. Cloudflare R2)",
             "Copy s3://BUCKET/PREFIX<wallet>/* to OUT/<wallet>/, resumably and idempotently. Works with AWS S3 and\n"
             "with any S3-compatible store, such as Cloudflare R2, where the original data lived. Credentials come\n"
             "from the environment or a .env file: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or R2_ACCESS_KEY_ID /\n"
             "R2_SECRET_ACCESS_KEY); bucket and endpoint from the options or WORKBENCH_S3_BUCKET /\n"
             "WORKBENCH_S3_ENDPOINT_URL.",
             "example:\n  python -m workbench fetch --wallet 0xabc... --bucket my-bucket \\\n"
             "      --endpoint-url https://<account>.r2.cloudflarestorage.com")
    f.add_argument("--wallet", required=True, help="wallet address: the folder name in the bucket")
    f.add_argument("--bucket", help="bucket name (default $WORKBENCH_S3_BUCKET, $S3_BUCKET or $R2_BUCKET)")
    f.add_argument("--endpoint-url", help="S3 endpoint, e.g. https://<account>.r2.cloudflarestorage.com for R2 "
                                          "(default: $WORKBENCH_S3_ENDPOINT_URL, else AWS S3)")
    f.add_argument("--prefix", default="merged_trades/", help="key prefix in front of the wallet folder "
                                                              "(default merged_trades/)")
    f.add_argument("--out", help="local merged_trades folder (default data/raw/merged_trades)")
    f.add_argument("--env-file", help="dotenv file with credentials (default <project>/.env)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_cmd_fetch)

    pl = _sub(sub, "pipeline", "raw wallet files to the training-ready step table (design 003's pipeline.py)",
              "Ingest one wallet's files, compute the one-minute features (d* chosen on the training share), fit the\n"
              "trader's exit levels on the training share's round trips, and write the per-step table of states,\n"
              "actions and rewards (atomically) with a manifest beside it.",
              "example:\n  python -m workbench pipeline --data_dir data/raw/merged_trades")
    pl.add_argument("--data_dir", "--data-dir", dest="data_dir",
                    help="a merged_trades folder (one folder per wallet), a wallet folder or a file "
                         "(default data/raw/merged_trades)")
    pl.add_argument("--wallet", default="", help="wallet folder under a merged_trades folder (default: the only one)")
    pl.add_argument("--output", default=str(Path("data") / "processed_trader_data.parquet"),
                    help="the step table (default data/processed_trader_data.parquet)")
    pl.add_argument("--notional", type=float, default=5000.0, help="USDC committed: rewards are fractions of it")
    pl.add_argument("--quiet", action="store_true", help="no progress bar")
    pl.set_defaults(func=_cmd_pipeline)

    for name, what in (("twin", "the trader twin: train | infer (design 003's train_model.py and inference)"),
                       ("agent", "the PPO agent in the market environment: train | evaluate (design 004's rl_model.zip)"),
                       ("llm", "the trading LLM: generate | train | infer | commentary | chat (design 004)"),
                       ("rlhf", "RLHF with process supervision: prepare | sft | train | evaluate | generate | "
                                "debug-rewards | analyze-steps (design 000)")):
        sub.add_parser(name, help=what, add_help=False,  # listed here; main() hands the arguments to its own parser
                       description=f"Same as python -m workbench.{name}: {what}.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("twin", "agent", "llm", "rlhf"):  # the stage command lines, all their arguments as given
        import importlib

        return int(importlib.import_module(f"workbench.{argv[0]}.cli").main(argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
