"""Evaluation of base / SFT / DPO models on held-out (test-period) prompts.

For each model and prompt the model writes an analysis (seeded sampling, or greedy decoding), and we
measure:

* **perplexity** of the reference completions (the analyst's clean analyses) given their prompts:
  ``exp(sum NLL / number of completion tokens)`` over the whole set;
* the **step verifier** (:class:`workbench.analysis.StepVerifier`, step-level labels as in Lightman et al.
  2023, "Let's Verify Step by Step"): share of steps whose claims are all true, share of analyses with all
  four steps true, share whose signal agrees with their own steps (``self_consistent``), share well formed;
* **agreement** of the stated signal with the reference decision's signal;
* **calibration** of the stated confidence against whether following the stated signal made money
  (ECE, Guo et al. 2017; Brier score), trades only;
* the **market outcome** of following each model's signals (mean return per share and win rate, with
  percentile-bootstrap CIs): a :class:`workbench.rlaif.TradingDecision` built from the parsed signal, size,
  stop and take profit, entered at the facts' ask (BUY) or bid (SELL), closed by
  :func:`workbench.rlaif.evaluate` on a price source given as an argument (tests pass a fake one).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from workbench import metrics
from workbench.analysis.facts import SIGNALS
from workbench.analysis.rlconfig import STEPS
from workbench.analysis.verifier import StepVerifier
from workbench.llm.data import facts_of
from workbench.llm.model import format_prompt, has_chat_template, resolve_system
from workbench.rlaif.store import TradingDecision
from workbench.rlaif.tracker import evaluate as evaluate_decision


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding: nucleus sampling (Holtzman et al. 2020) at ``temperature``, or greedy; seeded per batch."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 256
    greedy: bool = False
    batch_size: int = 16
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _encode(tokenizer: Any, texts: Sequence[str]) -> Any:
    return tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=not has_chat_template(tokenizer))


def fast_enabled() -> bool:
    """Whether :func:`generate` may use :class:`workbench.llm.fastgen.FastDecoder` (``WORKBENCH_FASTGEN=0``
    forces transformers' ``generate``, the reference path of ``benchmarks/llm.py``)."""
    return os.environ.get("WORKBENCH_FASTGEN", "1") != "0"


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings | None = None,
             system: str | None = "auto", formatted: bool = False, grounding: Sequence[Any] | None = None,
             decoder: Any = None, fast: bool | None = None) -> list[str]:
    """Completions of ``prompts`` (batched, left-padded; seeded: batch ``b`` uses ``seed + b``).

    ``formatted=True`` takes the prompts as already-rendered model inputs (e.g. a chat history).
    ``grounding``: one :class:`workbench.analysis.Facts` per prompt -- the numbers that restate a fact are
    forced from it (:class:`workbench.llm.fastgen.Grounder`; labels, signal, confidence and take profit stay
    the model's). ``system="auto"``: the system message of the model's task format (recorded in its folder and
    attached by :func:`workbench.llm.train.load_policy`; the design's system prompt otherwise). Llama-architecture models decode with :class:`~workbench.llm.fastgen.FastDecoder` (the same
    logits, less overhead; ``decoder`` reuses one already built); other models use ``model.generate``, where
    grounding is a ``LogitsProcessor`` doing the same. ``fast=False`` forces ``model.generate`` (the reference
    path); ``None``: the fast decoder when :func:`fast_enabled` and the model supports it.
    """
    from workbench.llm import fastgen

    g = settings or GenerationSettings()
    model.eval()
    tokenizer.padding_side = "left"
    system = resolve_system(model, system)
    texts = list(prompts) if formatted else [format_prompt(tokenizer, p, system) for p in prompts]
    facts = [facts_of(f) for f in grounding] if grounding is not None else None
    if facts is not None and len(facts) != len(texts):
        raise ValueError(f"grounding needs one facts per prompt: {len(facts)} for {len(texts)} prompts")
    if fast is None:
        fast = decoder is not None or (fast_enabled() and fastgen.supports(model))
    if fast and decoder is None:
        decoder = fastgen.FastDecoder(model)
    out: list[str] = []
    for b in range(0, len(texts), g.batch_size):
        enc = _encode(tokenizer, texts[b: b + g.batch_size]).to(model.device)
        seed = g.seed + b // g.batch_size
        grounder = fastgen.Grounder(tokenizer, facts[b: b + g.batch_size]) if facts is not None else None
        if fast:
            gen = torch.Generator().manual_seed(seed)
            new = decoder.generate(enc["input_ids"].cpu(), enc["attention_mask"].cpu(), g.max_new_tokens,
                                   tokenizer.eos_token_id, tokenizer.pad_token_id, greedy=g.greedy,
                                   temperature=g.temperature, top_p=g.top_p, generator=gen, grounder=grounder,
                                   decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
        else:
            torch.manual_seed(seed)
            kw: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=tokenizer.eos_token_id)
            if g.greedy:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kw.update(do_sample=True, temperature=g.temperature, top_p=g.top_p, top_k=0)
            if grounder is not None:
                kw["logits_processor"] = [fastgen.GroundingProcessor(grounder, tokenizer, enc["input_ids"].shape[1])]
            new = model.generate(**enc, **kw)[:, enc["input_ids"].shape[1]:]
        out += tokenizer.batch_decode(new, skip_special_tokens=True)
    return [o.strip() for o in out]


def _completion_ids(tokenizer: Any, prompt: str, completion: str, system: str | None) -> tuple[list[int], int]:
    """Token ids of prompt + completion (+ end) and the number of prompt tokens (the shared prefix)."""
    p_text = format_prompt(tokenizer, prompt, system)
    if has_chat_template(tokenizer):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt},
                                                                               {"role": "assistant", "content": completion}]
        f_text = tokenizer.apply_chat_template(msgs, tokenize=False)
    else:
        f_text = p_text + completion + (tokenizer.eos_token or "")
    add = not has_chat_template(tokenizer)
    p_ids = tokenizer(p_text, add_special_tokens=add)["input_ids"]
    f_ids = tokenizer(f_text, add_special_tokens=add)["input_ids"]
    k = 0
    while k < min(len(p_ids), len(f_ids)) and p_ids[k] == f_ids[k]:
        k += 1
    return f_ids, k


@torch.no_grad()
def completion_nll(model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
                   system: str | None = "auto", batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per example: summed negative log-likelihood (nats) of the completion tokens given the prompt, and the
    number of those tokens. Shapes ``(N,)``, ``(N,)``."""
    system = resolve_system(model, system)
    model.eval()
    nll, cnt = np.zeros(len(prompts)), np.zeros(len(prompts), dtype=np.int64)
    items = [_completion_ids(tokenizer, p, c, system) for p, c in zip(prompts, completions)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for b in range(0, len(items), batch_size):
        chunk = items[b: b + batch_size]
        T = max(len(ids) for ids, _ in chunk)
        x = torch.full((len(chunk), T), pad, dtype=torch.long)
        att = torch.zeros((len(chunk), T), dtype=torch.long)
        lab = torch.full((len(chunk), T), -100, dtype=torch.long)
        for i, (ids, k) in enumerate(chunk):
            x[i, : len(ids)] = torch.tensor(ids)
            att[i, : len(ids)] = 1
            lab[i, k: len(ids)] = torch.tensor(ids[k:])
        logits = model(input_ids=x.to(model.device), attention_mask=att.to(model.device)).logits.float().cpu()
        lp = torch.log_softmax(logits[:, :-1], -1)
        tgt = lab[:, 1:]
        mask = tgt != -100
        tok_lp = lp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        nll[b: b + len(chunk)] = (-tok_lp.sum(1)).numpy()
        cnt[b: b + len(chunk)] = mask.sum(1).numpy()
    return nll, cnt


def perplexity(model: Any, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
               system: str | None = "auto") -> float:
    """Corpus perplexity of the completions: ``exp(sum NLL / sum tokens)``."""
    nll, cnt = completion_nll(model, tokenizer, prompts, completions, resolve_system(model, system))
    return float(np.exp(nll.sum() / max(cnt.sum(), 1)))


# ------------------------------------------------------------------------------------------------
# Scoring analyses
# ------------------------------------------------------------------------------------------------
def decision_from_analysis(parsed: dict[str, Any], facts: Any, time_ms: int, text: str, source: str) -> TradingDecision | None:
    """A :class:`TradingDecision` from a verified analysis' parsed step 4; None when there is no usable
    signal. Entry at the facts' ask (BUY) or bid (SELL); missing stop / take profit stay NaN (no such exit);
    size 1 share when absent; confidence clipped to [0, 1]."""
    sig = parsed.get("signal")
    if sig not in SIGNALS:
        return None
    conf = parsed.get("confidence")
    conf = float(np.clip(conf, 0.0, 1.0)) if conf is not None and np.isfinite(conf) else 0.5
    size = parsed.get("size")
    size = float(size) if size is not None and np.isfinite(size) and size > 0 else 1.0
    nan = float("nan")
    entry = facts.up_ask if sig == "BUY" else (facts.up_bid if sig == "SELL" else facts.up_mid)
    stop, tp = parsed.get("stop"), parsed.get("take_profit")
    return TradingDecision(time=int(time_ms), symbol=facts.market, action=sig, size=size, confidence=conf,
                           features=facts.numeric(), analysis=text, source=source, entry_price=float(entry),
                           stop_loss=float(stop) if sig != "HOLD" and stop is not None else nan,
                           take_profit=float(tp) if sig != "HOLD" and tp is not None else nan)


def score_analyses(name: str, texts: Sequence[str], examples: pd.DataFrame, source: Any = None,
                   max_hold_ms: int = 15 * 60_000, verifier: StepVerifier | None = None) -> pd.DataFrame:
    """One row per analysis: verifier verdicts, parsed decision, agreement with the reference signal and,
    when ``source`` (a price source) is given, the market outcome of following it.

    ``examples`` has the decision-point columns (``time``, ``market``, ``facts``, ``signal``...).
    """
    ver = verifier or StepVerifier()
    rows = []
    for text, r in zip(texts, examples.itertuples()):
        f = facts_of(r.facts)
        v = ver.verify(text, f)
        p = v.parsed
        row: dict[str, Any] = {"model": name, "time": int(r.time), "market": r.market, "text": text,
                               **{f"ok_{s}": v.step_ok[s] for s in STEPS}, "true_step_share": v.true_step_share,
                               "all_steps_true": all(v.step_ok.values()), "self_consistent": v.self_consistent,
                               "well_formed": v.well_formed, "signal": p.get("signal"), "confidence": p.get("confidence"),
                               "size": p.get("size"), "stop": p.get("stop"), "take_profit": p.get("take_profit"),
                               "ref_signal": r.signal, "agrees": p.get("signal") == r.signal,
                               "n_claims": len(v.claims), "false_claims": sum(not c.ok for c in v.claims),
                               "ret": np.nan, "exit": None}
        conf = p.get("confidence")
        row["confidence_valid"] = conf is not None and 0.0 <= conf <= 1.0
        if source is not None and p.get("signal") in ("BUY", "SELL"):
            d = decision_from_analysis(p, f, int(r.time), text, name)
            if d is not None:
                out, _ = evaluate_decision(d, source, max_hold_ms)
                if out is not None:
                    row["ret"], row["exit"] = float(out.ret), out.reason
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(scored: pd.DataFrame, perplexities: dict[str, float] | None = None, n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """One row per model: verifier shares, agreement, calibration (trades with a valid confidence and a known
    outcome) and market outcome with 95 % bootstrap CIs (trades only; ``ret`` per share, Up-price units)."""
    rows = []
    for name, g in scored.groupby("model", sort=False):
        trades = g[g["signal"].isin(["BUY", "SELL"])]
        known = trades[trades["ret"].notna()]
        cal = known[known["confidence_valid"]]
        succ = (cal["ret"] > 0).astype(float).to_numpy()
        conf = cal["confidence"].astype(float).to_numpy()
        m, lo, hi = metrics.bootstrap_ci(known["ret"].to_numpy(), np.mean, n_boot=n_boot, seed=seed)
        w, wlo, whi = metrics.bootstrap_ci((known["ret"] > 0).astype(float).to_numpy(), np.mean, n_boot=n_boot, seed=seed)
        row = {"model": name, "n": len(g), "perplexity": (perplexities or {}).get(name, np.nan),
               "true_step_share": g["true_step_share"].mean(), "all_steps_true": g["all_steps_true"].mean(),
               **{f"true_{s}": g[f"ok_{s}"].mean() for s in STEPS},
               "self_consistent": g["self_consistent"].mean(), "well_formed": g["well_formed"].mean(),
               "signal_agreement": g["agrees"].mean(), "n_trades": len(trades), "n_outcomes": len(known),
               "ece": metrics.ece(conf, succ) if len(cal) else np.nan,
               "brier": metrics.brier(conf, succ) if len(cal) else np.nan,
               "mean_ret": m, "mean_ret_lo": lo, "mean_ret_hi": hi, "win_rate": w, "win_rate_lo": wlo,
               "win_rate_hi": whi}
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


@dataclass
class ModelSpec:
    """A model to evaluate: a display name and a loader returning ``(model, tokenizer)`` (loaded lazily, one
    model in memory at a time)."""

    name: str
    load: Callable[[], tuple[Any, Any]]


GROUNDED_SUFFIX = " (grounded)"
#: Row name of the template baseline: the analyst's analysis of another decision point (wrong numbers).
TEMPLATE_BASELINE = "template, another point's numbers"


def evaluate_models(specs: Sequence[ModelSpec], examples: pd.DataFrame, generation: GenerationSettings | None = None,
                    source: Any = None, max_hold_ms: int = 15 * 60_000, include_reference: bool = True,
                    n_boot: int = 1000, system: str | None = "auto",
                    modes: Sequence[str] = ("model_only", "grounded")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate, verify and score every model on ``examples`` (test-period decision points).

    Each model writes one analysis per prompt in each of ``modes``: ``model_only`` (its own tokens) and
    ``grounded`` (numbers that restate a fact forced from the facts, :func:`generate`'s ``grounding``); the
    grounded rows are named ``"<model> (grounded)"`` and carry ``mode = "grounded"``. ``system``: the task
    format's system message. Returns ``(summary, scored)``: :func:`summarize`'s table (plus ``gen_seconds``
    and ``mode``) and the per-analysis rows. ``include_reference`` adds the analyst's own analyses as
    ``reference (analyst)``: the verifier's and the market's view of the target the models imitate -- and
    :data:`TEMPLATE_BASELINE`, the analyst's analysis of the point half the set away: what a well-formed text
    with the wrong numbers scores (the floor a model must clear).
    """
    from workbench.llm import fastgen

    g = generation or GenerationSettings()
    scored, ppl, secs, mode_of = [], {}, {}, {}
    facts = list(examples["facts"])
    for spec in specs:
        model, tok = spec.load()
        nll_ppl = perplexity(model, tok, list(examples["prompt"]), list(examples["completion"]), system)
        dec = fastgen.FastDecoder(model) if fast_enabled() and fastgen.supports(model) else None
        for mode in modes:
            name = spec.name + (GROUNDED_SUFFIX if mode == "grounded" else "")
            t0 = time.perf_counter()
            texts = generate(model, tok, list(examples["prompt"]), g, system=system,
                             grounding=facts if mode == "grounded" else None, decoder=dec)
            secs[name], ppl[name], mode_of[name] = time.perf_counter() - t0, nll_ppl, mode
            scored.append(score_analyses(name, texts, examples, source, max_hold_ms).assign(mode=mode, base_model=spec.name))
        del model, dec
    if include_reference:
        scored.append(score_analyses("reference (analyst)", list(examples["completion"]), examples, source,
                                     max_hold_ms).assign(mode="reference", base_model="reference (analyst)"))
        mode_of["reference (analyst)"] = "reference"
        # the trivial rule a model must beat: a perfect template filled with another decision point's numbers
        other = list(np.roll(np.asarray(examples["completion"], dtype=object), max(len(examples) // 2, 1)))
        scored.append(score_analyses(TEMPLATE_BASELINE, other, examples, source, max_hold_ms)
                      .assign(mode="reference", base_model=TEMPLATE_BASELINE))
        mode_of[TEMPLATE_BASELINE] = "reference"
    allrows = pd.concat(scored, ignore_index=True)
    summary = summarize(allrows, ppl, n_boot=n_boot, seed=g.seed)
    summary["gen_seconds"] = pd.Series(secs)
    summary["mode"] = pd.Series(mode_of)
    return summary, allrows


def true_steps_table(scored: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {mode: {"rate", "ci", "per_step", "n"}}}`` from :func:`evaluate_models`' rows: the mean share
    of true steps with a 95 % percentile-bootstrap interval over prompts (the independent units) and the
    share of each step that is true."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (model, mode), gr in scored.groupby(["base_model", "mode"], sort=False):
        m, lo, hi = metrics.bootstrap_ci(gr["true_step_share"].to_numpy(float), np.mean, n_boot=n_boot, seed=seed)
        out.setdefault(str(model), {})[str(mode)] = {
            "rate": float(m), "ci": [float(lo), float(hi)], "n": int(len(gr)),
            "per_step": {s: float(gr[f"ok_{s}"].mean()) for s in STEPS}}
    return out


#: Claim names of :class:`workbench.analysis.StepVerifier` by what producing them takes.
CLAIM_KINDS: dict[str, str] = {
    **{k: "copied from the prompt" for k in ("rsi_value", "macd_value", "bb_value", "vol_value", "btc_move", "minutes_left",
                                            "fair_value", "support_resistance", "entry_price")},
    **{k: "computed (arithmetic)" for k in ("up_price", "risk_arithmetic", "risk_share", "risk_rule", "risk_rule_word")},
    **{k: "label (comparison)" for k in ("rsi_label", "bb_label", "vol_label", "macd_direction", "pricing_word")},
    **{k: "decision consistency" for k in ("consistent_with_facts", "stop_take_profit_sides", "matches_risk_step",
                                          "confidence_range")},
}


def claim_table(scored: pd.DataFrame, examples: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per claim of ``model``'s analyses: how often it was made, how often false, and its kind
    (:data:`CLAIM_KINDS`; a missing core claim is kind ``missing``). Rows in the order of ``examples``."""
    ver = StepVerifier()
    made: dict[tuple[str, str], list[int]] = {}
    g = scored[scored["model"] == model]
    for text, (_, r) in zip(g["text"], examples.iloc[: len(g)].iterrows()):
        for c in ver.verify(text, facts_of(r["facts"])).claims:
            m = made.setdefault((c.step, c.name), [0, 0])
            m[0] += 1
            m[1] += int(not c.ok)
    rows = [{"step": st, "claim": nm, "kind": CLAIM_KINDS.get(nm, "missing" if nm.endswith("_present") else "other"),
             "made": a, "false": b, "false_share": b / a, "false_per_analysis": b / max(len(g), 1)}
            for (st, nm), (a, b) in made.items()]
    return pd.DataFrame(rows, columns=["step", "claim", "kind", "made", "false", "false_share", "false_per_analysis"])


def claim_failures(scored: pd.DataFrame, examples: pd.DataFrame, model: str, top: int = 12) -> pd.Series:
    """Which claims fail most often in ``model``'s analyses (``step: claim`` -> share of analyses where it is
    false): what limits the share of true steps."""
    t = claim_table(scored, examples, model)
    s = pd.Series(t["false_per_analysis"].to_numpy(), index=t["step"] + ": " + t["claim"], dtype=float)
    return s.sort_values(ascending=False).head(top)


def claims_by_kind(table: pd.DataFrame) -> pd.DataFrame:
    """Share of false claims by kind (copied / computed / label / decision / missing), from :func:`claim_table`."""
    if not len(table):
        return pd.DataFrame(columns=["made", "false", "false_share"])
    k = table.groupby("kind")[["made", "false"]].sum()
    k["false_share"] = k["false"] / k["made"]
    return k.sort_values("false_share", ascending=False)


def quantize_int8(model: Any) -> Any:
    """A copy of ``model`` with every ``nn.Linear`` int8 dynamically quantised (``torch.ao.quantization.quantize_dynamic``:
    int8 weights, activations quantised per batch at run time; CPU only). Decoded by ``model.generate``."""
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|quantize).*")
        return quantize_dynamic(copy.deepcopy(model).float().cpu(), {torch.nn.Linear}, dtype=torch.qint8)


def precision_comparison(model: Any, tokenizer: Any, examples: pd.DataFrame, settings: GenerationSettings | None = None,
                         system: str | None = "auto") -> pd.DataFrame:
    """Inference at full and reduced precision on the same prompts: new tokens per second and the true-step share
    (model-only and grounded), one row per variant.

    * ``float32, transformers generate``: the reference path (``WORKBENCH_FASTGEN=0``);
    * ``float32, fast decoder``: :class:`workbench.llm.fastgen.FastDecoder`, the same logits;
    * ``bfloat16 linears, fast decoder``: the projections and MLP in bfloat16 (AVX-512 BF16 CPUs; a GPU);
    * ``int8 dynamic, transformers generate``: :func:`quantize_int8`.
    4-/8-bit bitsandbytes loading applies to a local model on a CUDA GPU (:func:`workbench.llm.model.load_base`).
    """
    from workbench.llm import fastgen

    g = settings or GenerationSettings()
    facts = [facts_of(f) for f in examples["facts"]]
    prompts = list(examples["prompt"])
    ver = StepVerifier()
    variants: list[tuple[str, Any, Any]] = [("float32, transformers generate", model, None)]
    if fastgen.supports(model):
        variants += [("float32, fast decoder", model, fastgen.FastDecoder(model)),
                     ("bfloat16 linears, fast decoder", model, fastgen.FastDecoder(model, torch.bfloat16))]
    if not torch.cuda.is_available():
        variants.append(("int8 dynamic, transformers generate", quantize_int8(model), None))
    rows = []
    for name, m, dec in variants:
        row: dict[str, Any] = {"variant": name}
        for mode in ("model_only", "grounded"):
            t0 = time.perf_counter()
            texts = generate(m, tokenizer, prompts, g, system=system, grounding=facts if mode == "grounded" else None,
                             decoder=dec, fast=dec is not None)
            dt = time.perf_counter() - t0
            n = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
            row[f"tokens_per_s_{mode}"] = n / dt
            row[f"true_steps_{mode}"] = float(np.mean([ver.verify(t, f).true_step_share for t, f in zip(texts, facts)]))
        rows.append(row)
    out = pd.DataFrame(rows).set_index("variant")
    out["speed_vs_reference"] = out["tokens_per_s_model_only"] / out["tokens_per_s_model_only"].iloc[0]
    return out
