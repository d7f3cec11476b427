"""Command line: ``python -m workbench run | simulate | ingest | fetch``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

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
        data = load_wallet(args.src, bar_interval=args.bar_interval, progress=not args.quiet)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the numbered notebook chain with papermill")
    r.add_argument("--profile", default="default", help="profile name (default, smoke) or YAML path")
    r.add_argument("--only", action="append", help="notebook numbers, e.g. --only 01,02")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a notebook parameter (value parsed as YAML)")
    r.add_argument("--run-dir", help="folder for executed notebooks and the manifest")
    r.add_argument("--workdir", help="folder for generated data/figures/models (overrides the profile)")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("simulate", help="write simulated wallet files (seed format)")
    s.add_argument("--days", type=float, help="simulated days (default 30, or the profile's)")
    s.add_argument("--seed", type=int, help="seed (default 7, or the profile's)")
    s.add_argument("--profile", help="take days and seed from a chain profile (default, smoke)")
    s.add_argument("--if-absent", action="store_true", help="keep an existing simulation with the same settings")
    s.add_argument("--out", help="the data/raw folder (files go to OUT/merged_trades/<wallet>/)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_simulate)

    i = sub.add_parser("ingest", help="ingest wallet files into Parquet tables")
    i.add_argument("src", nargs="+", help="folders or files (seed-format JSON or Data-API CSV)")
    i.add_argument("--out", required=True, help="output folder for the Parquet tables")
    i.add_argument("--bar-interval", default="15min")
    i.add_argument("--quiet", action="store_true")
    i.set_defaults(func=_cmd_ingest)

    f = sub.add_parser("fetch", help="download a wallet's files from an S3-compatible bucket (R2)")
    f.add_argument("--wallet", required=True)
    f.add_argument("--bucket")
    f.add_argument("--endpoint-url")
    f.add_argument("--prefix", default="merged_trades/")
    f.add_argument("--out", help="local merged_trades folder (default data/raw/merged_trades)")
    f.add_argument("--env-file", help="dotenv file with credentials (default <project>/.env)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=_cmd_fetch)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
