"""Command line: ``python -m workbench.llm generate | train | infer | commentary | chat``.

Examples (offline; the default base model is the project's ``workbench-tiny``)::

    python -m workbench.llm generate --num-samples 400 --output-file data/processed/06_llm/sft.jsonl
    python -m workbench.llm generate --train-data data/processed/05_rlaif --output-file sft.jsonl
    python -m workbench.llm train --train-data sft.jsonl --eval-data sft.eval.jsonl --dpo-data dpo_trl.jsonl \\
        --output-dir models/llm --num-epochs 1 --batch-size 8 --learning-rate 1e-3 --lora-r 16 --max-steps 200
    python -m workbench.llm infer --output-dir models/llm --eval-data sft.test.jsonl --num-samples 20 \\
        --output-file analyses.jsonl --greedy
    python -m workbench.llm commentary --features data/processed/02_features/features.parquet --window-minutes 60
    python -m workbench.llm chat --eval-data sft.test.jsonl --index 0 --question "Why this signal?"

``generate`` writes three JSONL files: ``--output-file`` (SFT train split), ``<stem>.eval.jsonl`` and
``<stem>.test.jsonl`` (rows keep ``time``, ``market``, ``facts`` and ``signal`` so analyses can be verified).
``train`` runs SFT with LoRA, then DPO when ``--dpo-data`` is given; ``infer`` writes analyses and their
verification; ``commentary`` and ``chat`` print their results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

import workbench  # noqa: F401
from workbench import config


def _rows(path: str | Path) -> pd.DataFrame:
    """Examples from a JSONL file, a decision-points parquet, or a contract folder (``05_rlaif``)."""
    import json

    from workbench.llm.data import read_decision_points, read_jsonl, validate_decision_points

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        return read_decision_points(p)
    if p.suffix == ".json":  # generate --output-dir's train_data.json / eval_data.json: one JSON array
        rows = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"{p}: expected a JSON array of examples")
        return pd.DataFrame(rows)
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
        return validate_decision_points(df, str(p)) if "period" in df.columns else df
    return pd.DataFrame(read_jsonl(p))


def _rl_points(a: argparse.Namespace, parts: tuple[str, ...] = ("train", "val", "test")) -> pd.DataFrame:
    """The RL model's decision points on ``--market-data`` (design 004's ``--rl-model``)."""
    from workbench.llm.rlsource import load_market_data, load_rl_model, rl_decision_points

    policy = load_rl_model(a.rl_model)
    steps, book = load_market_data(a.market_data, a.quotes)
    pts = rl_decision_points(policy, steps, book, a.num_samples, seed=a.seed, parts=parts)
    print(f"{len(pts):,} decision points of the RL model ({policy.kind}: {policy.path}); RL signals "
          f"{pts['rl_signal'].value_counts().to_dict()}", file=sys.stderr)
    return pts


def _cmd_generate(a: argparse.Namespace) -> int:
    import json

    from workbench import atomic
    from workbench.llm.data import build_sft_dataset, quality_checks, synthetic_decision_points, write_jsonl

    if a.rl_model:
        points = _rl_points(a)
    elif a.market_data:
        raise ValueError("--market-data needs --rl-model (whose decisions the analyses explain); without one, "
                         "--train-data takes notebook 05's decision points")
    else:
        points = _rows(a.train_data) if a.train_data else synthetic_decision_points(a.num_samples or 400, a.seed)
        if a.train_data and a.num_samples:
            points = points.iloc[: a.num_samples]
    ds = build_sft_dataset(points, a.split_ratio)
    cols = [c for c in ("prompt", "completion", "time", "market", "facts", "signal", "confidence", "rl_signal",
                        "outcome_ret", "period") if c in ds.train.columns]
    if a.output_dir:  # the design's layout: <output-dir>/train_data.json and eval_data.json (+ test_data.json)
        out_dir = Path(a.output_dir)
        for part in ("train", "eval", "test"):
            path = out_dir / f"{part}_data.json"
            rows = getattr(ds, part)[cols].to_dict("records")
            atomic.write_text(path, json.dumps(rows, indent=1, ensure_ascii=False, default=str) + "\n")
            print(f"{part}: {len(rows)} examples -> {path}")
    else:
        out = Path(a.output_file or config.paths().processed / "06_llm" / "sft.jsonl")
        stem = out.with_suffix("")
        for part, path in (("train", out), ("eval", Path(f"{stem}.eval.jsonl")), ("test", Path(f"{stem}.test.jsonl"))):
            write_jsonl(getattr(ds, part)[cols].to_dict("records"), path)
            print(f"{part}: {len(getattr(ds, part))} examples -> {path}")
    print(quality_checks(ds).to_string(index=False))
    return 0


def _settings(a: argparse.Namespace, stage: str) -> Any:
    from workbench.llm.train import settings_for

    return settings_for(stage, learning_rate=a.learning_rate, epochs=a.num_epochs, batch_size=a.batch_size,
                        grad_accum=a.gradient_accumulation_steps, max_steps=a.max_steps, seed=a.seed)


def _cmd_train(a: argparse.Namespace) -> int:
    from workbench.llm.data import SFTData
    from workbench.llm.model import TINY
    from workbench.llm.train import LoRASettings, get_base, settings_for, train_dpo, train_sft

    train = _rows(a.train_data)
    if "period" in train.columns and "completion" in train.columns and a.eval_data is None:
        from workbench.llm.data import build_sft_dataset

        ds = build_sft_dataset(train, a.split_ratio)
    else:
        ev = _rows(a.eval_data) if a.eval_data else train.iloc[0:0]
        ds = SFTData(train.reset_index(drop=True), ev.reset_index(drop=True), train.iloc[0:0])
    out = Path(a.output_dir or config.paths().models / "llm")
    lora = LoRASettings(r=a.lora_r, alpha=a.lora_alpha, dropout=a.lora_dropout)
    base = get_base(a.base_model, ds, out, settings=settings_for("pretrain", epochs=a.pretrain_epochs), seed=a.seed)
    print(base.describe().to_string())
    sft = train_sft(base, ds.train, ds.eval if len(ds.eval) else None, out / "sft_adapter", lora, _settings(a, "sft"))
    print(pd.Series(sft.summary()).to_string())
    if a.dpo_data:
        pairs = _rows(a.dpo_data)
        if "period" in pairs.columns:
            tr, ev = pairs[pairs["period"] == "train"], pairs[pairs["period"] == "val"]
        else:
            k = int(round(a.split_ratio * len(pairs)))
            tr, ev = pairs.iloc[:k], pairs.iloc[k:]
        dpo = train_dpo(base.path, out / "sft_adapter", tr.reset_index(drop=True), ev.reset_index(drop=True) if len(ev) else None,
                        out / "dpo_adapter", lora, _settings(a, "dpo"))
        print(pd.Series(dpo.summary()).to_string())
    print(f"saved under {out}" + (f" (base: {TINY})" if a.base_model == TINY else ""))
    return 0


def _policy(a: argparse.Namespace) -> tuple[Any, Any]:
    from workbench.llm.model import TINY
    from workbench.llm.pipeline import dpo_adapter_chain
    from workbench.llm.train import load_policy

    out = Path(a.llm_model or a.output_dir or config.paths().models / "llm")
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no model folder (train one: python -m workbench.llm train --output-dir {out})")
    base = out / TINY if a.base_model == TINY else Path(a.base_model)
    if a.adapter:
        chain = list(a.adapter)
    elif (out / "dpo_adapter" / "workbench.json").exists():
        chain = dpo_adapter_chain(out / "dpo_adapter")
    elif (out / "sft_adapter").exists():
        chain = [str(out / "sft_adapter")]
    else:
        chain = []
    print(f"model: {base} + adapters {chain}", file=sys.stderr)
    return load_policy(base, chain)


def _generation(a: argparse.Namespace) -> Any:
    from workbench.llm.evaluate import GenerationSettings

    return GenerationSettings(temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, greedy=a.greedy,
                              seed=a.seed)


def _cmd_infer(a: argparse.Namespace) -> int:
    from workbench.analysis.verifier import StepVerifier
    from workbench.llm.data import facts_of, write_jsonl
    from workbench.llm.evaluate import generate
    from workbench.llm.rlsource import with_decision

    if a.rl_model:  # the design's infer: the RL model's decisions on held-out market data, explained
        a.num_samples = a.num_samples or 20  # the design scores a sample of 10-20 explanations
        rows = _rl_points(a, parts=("test",))
    elif a.eval_data:
        rows = _rows(a.eval_data)
    else:
        raise ValueError("infer needs --rl-model with --market-data (the design's call), or --eval-data")
    if a.num_samples:
        rows = rows.iloc[: a.num_samples]
    model, tok = _policy(a)
    from workbench.analysis.analyst import prompt_from_facts
    from workbench.llm.model import task_of

    style = task_of(model).prompt_style
    if "facts" in rows.columns and style != "full":  # ask the model the way it was trained
        rl = rows["rl_signal"] if "rl_signal" in rows.columns else [None] * len(rows)
        rows = rows.assign(prompt=[with_decision(prompt_from_facts(facts_of(f), style), s) if f else p
                                   for f, p, s in zip(rows["facts"], rows["prompt"], rl)])
    texts = generate(model, tok, list(rows["prompt"]), _generation(a),
                     grounding=[facts_of(f) for f in rows["facts"]] if a.grounded and "facts" in rows.columns else None)
    ver = StepVerifier()
    out = []
    for text, r in zip(texts, rows.to_dict("records")):
        rec: dict[str, Any] = {"prompt": r["prompt"], "analysis": text}
        if r.get("facts"):
            v = ver.verify(text, facts_of(r["facts"]))
            rec.update(step_ok=v.step_ok, true_step_share=v.true_step_share, self_consistent=v.self_consistent,
                       well_formed=v.well_formed, signal=v.parsed.get("signal"), confidence=v.parsed.get("confidence"))
        if r.get("rl_signal"):
            rec.update(time=r.get("time"), market=r.get("market"), rl_signal=r["rl_signal"],
                       matches_rl=rec.get("signal") == r["rl_signal"])
        out.append(rec)
    path = Path(a.output_file or config.paths().processed / "06_llm" / "analyses.jsonl")
    if path.suffix == ".txt":
        from workbench import atomic

        atomic.write_text(path, _report(out))
    else:
        write_jsonl(out, path)
    shares = [r["true_step_share"] for r in out if "true_step_share" in r]
    print(f"{len(out)} analyses -> {path}" + (f"; mean share of true steps {sum(shares) / len(shares):.1%}" if shares else ""))
    if any("matches_rl" in r for r in out):
        print(f"the analysis ends with the RL model's signal in {np.mean([r['matches_rl'] for r in out]):.1%} of them")
    return 0


def _report(records: list[dict[str, Any]]) -> str:
    """A readable evaluation file: each analysis with its verification, then the summary."""
    lines = []
    for k, r in enumerate(records, 1):
        head = f"=== {k}" + (f" | {r['market']} | RL model: {r['rl_signal']}" if r.get("rl_signal") else "")
        lines += [head, f"prompt: {r['prompt']}", "", r["analysis"], ""]
        if "true_step_share" in r:
            ok = " ".join(f"{s}={'ok' if v else 'WRONG'}" for s, v in r["step_ok"].items())
            lines.append(f"verification: {ok}; true steps {r['true_step_share']:.0%}; self-consistent "
                         f"{r['self_consistent']}; signal {r.get('signal')}"
                         + (f" (RL model {r['rl_signal']}: {'matches' if r['matches_rl'] else 'differs'})"
                            if r.get("rl_signal") else ""))
        lines.append("")
    shares = [r["true_step_share"] for r in records if "true_step_share" in r]
    lines.append(f"summary: {len(records)} analyses; mean share of true steps "
                 + (f"{np.mean(shares):.1%}" if shares else "n/a")
                 + (f"; signal matches the RL model in {np.mean([r['matches_rl'] for r in records]):.1%}"
                    if any("matches_rl" in r for r in records) else ""))
    return "\n".join(lines) + "\n"


def _cmd_commentary(a: argparse.Namespace) -> int:
    from workbench.llm.commentary import write_commentary

    src = a.market_data or a.features or config.paths().processed / "02_features" / "features.parquet"
    if not Path(src).is_file():
        raise FileNotFoundError(f"{src}: no market data (a features, OHLCV or step table .parquet)")
    feats = pd.read_parquet(src)
    with_model = a.with_model or bool(a.llm_model)
    decision = ""
    if a.rl_model:  # the RL model's latest held-out decision, and the commentary of the minutes before it
        a.num_samples = a.num_samples or 5
        last = _rl_points(a, parts=("test",)).iloc[-1]
        t = pd.Timestamp(int(last["time"]), unit="ms", tz="UTC")
        a.at = a.at or t.isoformat()
        decision = f" The RL model's decision at {t:%H:%M} UTC on {last['market']}: {last['rl_signal']}."
    model = tok = None
    if with_model:
        model, tok = _policy(a)
    c = write_commentary(feats, a.at, a.window_minutes, model, tok, _generation(a) if with_model else None)
    if decision:
        c.text = c.text.rstrip() + decision
    if a.output_file:
        from workbench import atomic

        atomic.write_text(a.output_file, c.text + "\n")
        print(f"commentary -> {a.output_file}")
    print(c.text)
    print(f"(source: {c.source}; {sum(x.ok for x in c.verification.claims)}/{len(c.verification.claims)} claims true)")
    print(c.verification.table().to_string(index=False))
    return 0


def _cmd_chat(a: argparse.Namespace) -> int:
    from workbench.llm.chat import ChatSession
    from workbench.llm.data import facts_of

    if a.rl_model:  # the design's chat: the latest decision of the RL model on the recent market data
        a.num_samples = a.num_samples or 50
        rows = _rl_points(a, parts=("test",))
        a.index = a.index if a.index != 0 else len(rows) - 1
    elif a.market_data:
        raise ValueError("chat --market-data needs --rl-model (the decision to discuss), or pass --eval-data")
    else:
        rows = _rows(a.eval_data) if a.eval_data else None
    if rows is None:
        from workbench.llm.data import synthetic_decision_points

        rows = synthetic_decision_points(5, a.seed)
    r = rows.iloc[a.index]
    responder = "model" if a.llm_model and a.responder_given is None else (a.responder_given or "facts")
    a.responder = responder
    model = tok = None
    if a.responder == "model":
        model, tok = _policy(a)
    session = ChatSession(facts_of(r["facts"]), decision=r.get("completion"), model=model, tokenizer=tok,
                          responder=a.responder, generation=_generation(a) if a.responder == "model" else None)
    questions = a.question or []
    interactive = not questions
    while True:
        if interactive:
            try:
                q = input("you> ")
            except EOFError:
                break
            if q.strip() in ("", "exit", "quit"):
                break
        else:
            if not questions:
                break
            q = questions.pop(0)
            print(f"you> {q}")
        rep = session.ask(q)
        print(f"assistant> {rep.text}" + (f"\n  [{'; '.join(rep.flags)}]" if rep.flags else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from workbench.llm.model import TINY

    p = argparse.ArgumentParser(prog="python -m workbench.llm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--base-model", default=TINY, help=f"'{TINY}' (built here) or a local model directory")
        sp.add_argument("--train-data", help="decision_points.parquet, the 05_rlaif folder, or a JSONL of examples")
        sp.add_argument("--eval-data", help="JSONL / parquet of evaluation (or prompt) rows")
        sp.add_argument("--output-dir", help="generate: the dataset folder (train_data.json, eval_data.json, "
                                             "test_data.json); train: models and adapters (default: <workdir>/models/llm)")
        sp.add_argument("--rl-model", help="the RL model whose decisions are explained: the twin's best_model.pt (with "
                                           "twin.json beside it) or a folder holding both")
        sp.add_argument("--market-data", help="a step table .parquet (notebook 04's steps.parquet, the pipeline's "
                                              "processed_trader_data.parquet) or a wallet folder; commentary: also a "
                                              "features or OHLCV table")
        sp.add_argument("--quotes", help="the Up quotes of --market-data: notebook 01's tables or the wallet's files "
                                         "(default: the pipeline's manifest, else data/processed/01_ingestion)")
        sp.add_argument("--llm-model", help="the fine-tuned model folder (train's --output-dir; default models/llm)")
        sp.add_argument("--output-file", help="file written by the command")
        sp.add_argument("--num-samples", type=int, default=None, help="synthetic examples to generate / rows to use")
        sp.add_argument("--split-ratio", type=float, default=0.9, help="train share of the chronological split")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--adapter", action="append", help="adapter folder(s) to apply in order (infer/chat)")
        sp.add_argument("--temperature", type=float, default=0.7)
        sp.add_argument("--top-p", type=float, default=0.95)
        sp.add_argument("--max-new-tokens", type=int, default=256)
        sp.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")

    g = sub.add_parser("generate", help="write a JSONL prompt/completion dataset (decision points or synthetic)")
    common(g)
    t = sub.add_parser("train", help="SFT with LoRA (+ DPO with --dpo-data)")
    common(t)
    t.add_argument("--dpo-data", help="preference pairs (dpo_trl.jsonl or dpo_pairs.parquet)")
    t.add_argument("--num-epochs", type=float, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--learning-rate", type=float, default=None)
    t.add_argument("--gradient-accumulation-steps", type=int, default=None)
    t.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (-1: none)")
    t.add_argument("--lora-r", type=int, default=16)
    t.add_argument("--lora-alpha", type=int, default=32)
    t.add_argument("--lora-dropout", type=float, default=0.05)
    t.add_argument("--pretrain-epochs", type=float, default=None, help="epochs of the tiny base's pretraining")
    i = sub.add_parser("infer", help="write analyses (and their verification) for prompts")
    common(i)
    i.add_argument("--grounded", action="store_true",
                   help="force the numbers that restate a fact from the rows' facts (labels and signal stay the model's)")
    c = sub.add_parser("commentary", help="market commentary of the last minutes, verified claim by claim")
    common(c)
    c.add_argument("--features", help="notebook 02's features.parquet (log_close) or a table with close")
    c.add_argument("--at", default=None, help="UTC time of the commentary (default: the last bar)")
    c.add_argument("--window-minutes", type=int, default=60)
    c.add_argument("--with-model", action="store_true", help="ask the fine-tuned model first (template fallback)")
    h = sub.add_parser("chat", help="questions about the market and a decision (interactive without --question)")
    common(h)
    h.add_argument("--index", type=int, default=0, help="row of --eval-data to discuss")
    h.add_argument("--question", action="append", help="question(s) to ask (else read from stdin)")
    h.add_argument("--responder", dest="responder_given", choices=("facts", "model"), default=None,
                   help="facts (template answers) or model (default: model with --llm-model, else facts)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmds = {"generate": _cmd_generate, "train": _cmd_train, "infer": _cmd_infer, "commentary": _cmd_commentary,
            "chat": _cmd_chat}
    try:
        return cmds[args.cmd](args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
