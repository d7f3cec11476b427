"""Notebook 07's package: GRPO reward wrappers on crafted analyses, the market outcome of a signal, the curriculum,
evaluation tables and the verdict, diagnostics, the guide's entry point with a tiny model, a tiny GRPO run whose
reward rises, and the CLI. Synthetic data and a model trained here in seconds; nothing read from notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_analysis import FACTS, GOOD

from workbench.analysis import Analyst, Facts, load_config
from workbench.llm import data as D
from workbench.rlhf import curriculum as C
from workbench.rlhf import diagnostics as G
from workbench.rlhf import evaluation as E
from workbench.rlhf import rewards as R
from workbench.rlhf import study as S
from workbench.rlhf.trainer import RLHFTradingTrainer, facts_from_market

CFG = load_config(profile="cpu")
BAD_RSI = GOOD.replace("RSI(14) is 63.4, neutral", "RSI(14) is 80.0, overbought")
SELL_GOOD = GOOD.replace("BUY, confidence", "SELL, confidence")
GUIDE_MARKET = {"symbol": "BTC", "close": 43250.0, "change_24h": 2.5, "rsi": 62.5, "macd": 0.15, "bb_position": 0.7}


class RisingMarket:
    """A price source where every market's Up price jumps to 0.99 a minute after any decision: buying wins,
    selling loses (Up-equivalent)."""

    def quotes(self, symbol, start, end):
        t = np.array([start + 60_000]) if start + 60_000 <= end else np.zeros(0, np.int64)
        return t, np.full(len(t), 0.99), np.full(len(t), 0.99)

    def expiry(self, symbol):
        return None, None

    def now(self):
        return 2**62


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# ---- reward wrappers ----------------------------------------------------------------------------------------
def test_grpo_reward_functions_on_crafted_analyses():
    outcome = R.ReplayOutcome(RisingMarket(), CFG, 600_000)
    fns = R.grpo_reward_functions(CFG, outcome)
    assert set(fns) == {"outcome-only", "process-only", "combined"}
    assert fns["process-only"].__name__ == "process_only"  # what trl logs: rewards/process_only/mean
    texts = [GOOD, BAD_RSI, SELL_GOOD, "BUY now"]
    kw = {"facts": [json.dumps(FACTS.to_dict())] * 4, "time": [1767600330000] * 4}
    logged: dict[str, float] = {}
    # strings and conversational completions give the same rewards
    proc = fns["process-only"](["p"] * 4, [_chat(t) for t in texts], log_metric=logged.__setitem__, **kw)
    assert proc == pytest.approx(fns["process-only"](["p"] * 4, texts, **kw))
    # GOOD: 0.5 + mentions 0.4; BAD_RSI: 0.29 + 0.1 (guarded); SELL_GOOD: the signal step is false
    # (0.75 x 0.5 + 0.25 x -0.2 = 0.325, mentions 0.4); nothing parseable: -0.2
    assert proc == pytest.approx([0.9, 0.39, 0.725, -0.2])
    assert logged["components/true_step_share"] == pytest.approx(np.mean([1.0, 0.75, 0.75, 0.0]))
    out = fns["outcome-only"](["p"] * 4, texts, **kw)
    assert out == pytest.approx([0.5, 0.5, -0.3, -0.3])  # the market rises: BUY wins, SELL loses, no signal -0.3
    comb = fns["combined"](["p"] * 4, texts, **kw)
    # combined = process + outcome + calibration (confidence 0.72 on a winner: +0.3) + mentions
    assert comb == pytest.approx([0.9 + 0.5 + 0.3, 0.39 + 0.5 + 0.3, 0.725 - 0.3, -0.2 - 0.3])
    rec = pd.DataFrame(fns["combined"].records)
    assert len(rec) == 4 and rec["signal"].tolist()[:3] == ["BUY", "BUY", "SELL"] and rec["ok_technical_analysis"].tolist() == [True, False, True, False]
    with pytest.raises(KeyError, match="facts"):
        fns["combined"](["p"], [GOOD])
    with pytest.raises(ValueError, match="process reward model"):
        R.GRPOReward("combined", CFG, process="prm")


def test_replay_outcome_credits_an_avoided_loss_and_caches():
    fn = R.ReplayOutcome(RisingMarket(), CFG, 600_000)
    extra = {"time": 1767600330000}
    ret, alt = fn(GOOD, FACTS, extra)
    assert ret == pytest.approx(0.99 - 0.56) and np.isnan(alt)  # bought at the ask, out at the target
    hold = GOOD.replace("BUY, confidence 0.72", "HOLD, confidence 0.55")
    ret, alt = fn(hold, FACTS, extra)
    assert ret == 0.0 and alt > 0  # the facts point to BUY, which would have won: no avoided loss
    assert R.outcome_reward(["HOLD"], [ret], [alt], CFG)[0] == 0.0
    bearish = Facts(**{**FACTS.to_dict(), "fair": 0.40, "macd_bp": -1.2})
    ret, alt = fn(hold, bearish, extra)
    assert alt < 0 and R.outcome_reward(["HOLD"], [ret], [alt], CFG)[0] == pytest.approx(0.2)  # SELL would have lost
    assert np.isnan(fn("gibberish", FACTS, extra)[0])
    n = len(fn._cache)
    fn(GOOD, FACTS, extra)
    assert n == 3 and len(fn._cache) == 3  # GOOD's trade, two alternative trades; a repeat comes from the cache
    no_source = R.ReplayOutcome(None, CFG)
    assert np.isnan(no_source(GOOD, FACTS, extra)[0])


def test_format_and_prm_process_rewards():
    assert R.format_reward([GOOD, GOOD.split("\nStep 3")[0], "Step 4 - Trading signal: BUY", "nothing"]).tolist() == \
        [1.0, 0.5, 0.0, 0.0]  # step 4 counts only with a signal and a confidence

    class FakePRM:
        def step_probs(self, rows, feats):
            assert len(rows[0]) == 4 and rows[0][0].startswith("Step 1 - Technical analysis: RSI")
            return np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])[: len(rows)]

    np.testing.assert_allclose(R.prm_process_reward([GOOD, BAD_RSI], [FACTS, FACTS], FakePRM(), CFG), [0.5, 0.29])
    fn = R.GRPOReward("process-only", CFG, process="prm", prm=FakePRM())
    assert fn(["p", "p"], [GOOD, BAD_RSI], facts=[FACTS.to_dict()] * 2) == pytest.approx([0.9, 0.39])


# ---- curriculum ---------------------------------------------------------------------------------------------
def test_curriculum_difficulty_and_ordering():
    clear = Facts(**{**FACTS.to_dict(), "fair": 0.75, "vol_pct": 0.02, "rsi": 50.0, "minutes_left": 14.0})
    hard = Facts(**{**FACTS.to_dict(), "fair": 0.58, "vol_pct": 0.09, "rsi": 71.0, "macd_bp": -1.5, "minutes_left": 1.0})
    t = C.difficulty_table([clear, FACTS, hard], CFG)
    assert t["difficulty"].is_monotonic_increasing and t["stage"].tolist() == list(C.STAGES)
    assert t.loc[0, "conflict"] == 0.0 and t.loc[2, "near_threshold"] > 0 and t.loc[2, "expiry"] > 0.9
    pts = D.synthetic_decision_points(150, seed=5)
    pool = S.rl_pool(pts, 10 * 60_000)
    assert set(pool["period"]) <= {"train", "val"}
    assert (pool["time"] + 10 * 60_000).max() < pts.loc[pts["period"] == "test", "time"].min()  # no look-ahead
    cur = C.curriculum(pool, CFG, n=30, seed=1)
    assert len(cur) == 30 and cur["stage"].value_counts().to_dict() == {s: 10 for s in C.STAGES}
    assert list(dict.fromkeys(cur["stage"])) == list(C.STAGES)  # clear, then mixed, then adversarial
    for _, g in cur.groupby("stage"):
        assert g["difficulty"].is_monotonic_increasing
    assert cur["order"].tolist() == list(range(30)) and {"facts", "prompt", "time"} <= set(cur.columns)
    assert C.curriculum(pool, CFG, n=30, seed=1).equals(cur)  # seeded
    rnd = C.curriculum(pool, CFG, n=30, seed=1, order="random")
    assert sorted(rnd["time"]) == sorted(cur["time"]) and rnd["time"].tolist() != cur["time"].tolist()
    assert C.curriculum(pool, CFG, order="reverse")["stage"].iloc[0] == "adversarial"
    assert C.stage_summary(cur)["n"].tolist() == [10, 10, 10]


# ---- evaluation, verdict and diagnostics --------------------------------------------------------------------
def _scored_pair() -> tuple[pd.DataFrame, pd.DataFrame]:
    pts = D.synthetic_decision_points(60, seed=2)
    ex = S.test_examples(pts, 12)
    analyst = Analyst(CFG.verifier, seed=0)
    facts = E.facts_list(ex)
    bad = [analyst.write(f, mistakes=["wrong_value", "contradiction"]).text for f in facts]
    src = RisingMarket()
    scored = pd.concat([E.score_texts("process-only", list(ex["completion"]), ex, src, 600_000, CFG),
                        E.score_texts("outcome-only", bad, ex, src, 600_000, CFG)], ignore_index=True)
    return scored, ex


def test_summary_table_and_computed_conclusion():
    scored, ex = _scored_pair()
    summ = E.summary_table(scored, n_boot=200, seed=0)
    assert list(summ.index) == ["process-only", "outcome-only"]
    assert summ.loc["process-only", "true_step_share"] == 1.0
    for m in E.METRICS:
        row = summ.loc["process-only"]
        assert not np.isfinite(row[m]) or row[f"{m}_lo"] - 1e-12 <= row[m] <= row[f"{m}_hi"] + 1e-12
    d, lo, hi, n = E.paired_difference(scored, "process-only", "outcome-only", "true_step_share", 200)
    assert n == 12 and lo > 0 and d > 0
    table = E.display_table(summ)
    assert list(table.columns)[:6] == [E.LABELS[m] for m in E.METRICS] and "[" in table.iloc[0, 0]
    text = E.conclusion(scored, None, n_boot=200)
    assert "share of true steps" in text and "better" in text and "process supervision came out ahead" in text
    flipped = scored.assign(model=scored["model"].map({"process-only": "outcome-only", "outcome-only": "process-only"}))
    assert "outcome supervision came out ahead" in E.conclusion(flipped, None, n_boot=200)


def test_best_of_n_picks_by_each_scorer():
    scored, ex = _scored_pair()
    bad = scored[scored["model"] == "outcome-only"]["text"].tolist()
    cands = pd.DataFrame({"prompt_id": np.repeat(np.arange(len(ex)), 2), "sample": np.tile([0, 1], len(ex)),
                          "text": [t for pair in zip(bad, ex["completion"]) for t in pair]})
    picks, scored_c = E.best_of_n(cands, ex, {"step verifier (oracle)": E.verifier_scorer(CFG)})
    assert picks["step verifier (oracle)"] == list(ex["completion"]) and picks["single sample (no reranking)"] == bad
    withret = E.attach_returns(scored_c, ex, RisingMarket(), CFG, 600_000)
    assert withret["ret0"].notna().all()
    corr = G.reward_outcome_correlation(withret, ["step verifier (oracle)"], "ret0", n_boot=100)
    assert corr.loc[0, "n"] == len(cands) and -1 <= corr.loc[0, "spearman"] <= 1


def test_step_diagnostics_and_debug_rewards():
    crafted = S.crafted_analyses(FACTS, CFG)
    dbg = G.debug_rewards(list(crafted.values()), [FACTS] * len(crafted), CFG, names=list(crafted))
    assert dbg.loc["clean (analyst)", "true_step_share"] == 1.0
    terse, stuffed = dbg.loc["terse (required claims left out)"], dbg.loc["terse, false RSI claim + keywords"]
    assert terse["true_step_share"] == 0.5  # MACD, Bollinger, support/resistance are required: steps 1 and 3 false
    assert stuffed["true_step_share"] == 0.5 and stuffed["mentions (guarded)"] < stuffed["mentions (naive)"]
    # naive keyword rewards pay the padding (the padded false analysis above the terse one); the guard pays none
    assert stuffed["total: combined without the guard"] > terse["total: combined without the guard"]
    assert stuffed["total: process-only"] <= terse["total: process-only"]
    steps = G.step_table([GOOD, BAD_RSI, "BUY"], [FACTS] * 3, CFG, model="m")
    assert len(steps) == 12 and steps["ok"].sum() == 4 + 3
    a = G.analyze_steps(steps).set_index("step")
    assert a.loc["technical_analysis", "accuracy"] == pytest.approx(1 / 3)
    assert "rsi" in a.loc["technical_analysis", "most_failed_claim"]
    worst = G.worst_steps(steps, 3)
    assert not worst.loc[0, "ok"] and worst.loc[0, "step"] == "technical_analysis"
    assert "rsi_value" in worst.loc[0, "failed_claims"]
    rec = pd.DataFrame([{"step": s, "reward": 0.1 * s, "process": 0.0, "outcome": 0.0, "calibration": 0.0,
                         "true_step_share": 0.5, "signal": None,
                         **{f"ok_{k}": True for k in ("technical_analysis", "risk_assessment", "market_context",
                                                      "signal_generation")}} for s in range(3)])
    assert G.training_steps(rec)["reward"].tolist() == pytest.approx([0.0, 0.1, 0.2])


# ---- a tiny policy ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama that writes only step 4 with a random BUY or SELL (trained here in seconds), saved in
    notebook 06's layout: ``llm/workbench-tiny`` and an ``llm/sft_adapter`` (a LoRA adapter, identity at start)."""
    from peft import get_peft_model

    from workbench.llm import LoRASettings
    from workbench.llm import model as M

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pts = D.synthetic_decision_points(900, seed=3)
    prompts = list(pts["prompt"])
    comps = [f"Step 4 - Trading signal: {rng.choice(['BUY', 'SELL'])}" for _ in prompts]
    tok = M.train_tokenizer(prompts + comps, vocab_size=512)
    model = M.build_tiny_model(tok, M.TinyConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2,
                                                 intermediate_size=128), seed=0)
    texts = [M.format_prompt(tok, p) + c + tok.eos_token for p, c in zip(prompts, comps)]
    plen = [len(tok(M.format_prompt(tok, p), add_special_tokens=False)["input_ids"]) for p in prompts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tok.padding_side = "right"
    model.train()
    for _ in range(200):
        idx = rng.choice(len(texts), 8, replace=False)
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        lab = enc["input_ids"].clone()
        lab[enc["attention_mask"] == 0] = -100
        for j, i in enumerate(idx):
            lab[j, : plen[i]] = -100
        loss = model(**enc, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tok.padding_side = "left"
    root = tmp_path_factory.mktemp("rlhf") / "models"
    M.save_pretrained(model, tok, root / "llm" / "workbench-tiny")
    peft_model = get_peft_model(model, LoRASettings(r=4, alpha=8).peft_config())
    peft_model.save_pretrained(root / "llm" / "sft_adapter")
    (root / "llm" / "sft_adapter" / "workbench.json").write_text(json.dumps({"base": str(root / "llm" / "workbench-tiny")}))
    return root


def test_entry_point_with_a_tiny_model(models_dir, tmp_path):
    f, notes = facts_from_market(GUIDE_MARKET, CFG)
    assert f.rsi == 62.5 and f.macd_bp == pytest.approx(1e4 * 0.15 / 43250) and f.btc_move_pct == 0.0
    assert any("change_24h" in n for n in notes) and any("bb_position" in n for n in notes)
    assert facts_from_market({**FACTS.to_dict()}, CFG)[0] == FACTS  # a full Facts dict is used as is
    trainer = RLHFTradingTrainer("rlhf_config.yaml", models_dir=models_dir)
    decision = trainer.generate_trading_analysis(GUIDE_MARKET)
    assert decision["model"] == "SFT" and decision["final_signal"] in ("BUY", "SELL", "HOLD")
    assert 0.0 <= decision["confidence"] <= 1.0 and isinstance(decision["final_reasoning"], str)
    assert {"technical_analysis", "risk_assessment", "market_context", "signal_generation"} <= set(decision)
    assert decision["final_reasoning"].startswith("Step 4 - Trading signal:") and decision["parsed"]
    with pytest.raises(S.MissingInput, match="run notebook 06"):
        RLHFTradingTrainer("rlhf_config.yaml", models_dir=tmp_path).generate_trading_analysis(GUIDE_MARKET)


def test_a_tiny_grpo_run_raises_the_reward(models_dir, tmp_path):
    from workbench.rlhf.grpo import load_rl_policy, policy_chain, rl_settings, train_grpo

    base, adapters = S.find_sft(models_dir)
    pool = S.rl_pool(D.synthetic_decision_points(200, seed=4), 600_000)
    prompts = C.curriculum(pool, CFG, n=48, seed=0)
    reward = R.GRPOReward("outcome-only", CFG, R.ReplayOutcome(RisingMarket(), CFG, 600_000))
    s = rl_settings(CFG, "cpu", learning_rate=2e-3, beta=0.0, temperature=0.7, num_generations=16, prompts_per_step=2,
                    max_completion_length=8, loss_type="dapo", seed=0)
    assert (s.prompts_per_step, s.epochs) == (2, 1.0)  # rl_epochs of the cpu block
    res = train_grpo(base, adapters, prompts, reward, s, tmp_path / "policy")
    h = res.history[res.history["reward"].notna()]
    assert res.steps == 24 and len(h) == 24
    assert res.info["fast_rollouts"] == 24 * 2 * 16  # every rollout (2 prompts x 16 per step) from the fast decoder
    first, last = h["reward"].iloc[:8].mean(), h["reward"].iloc[-8:].mean()
    assert last > first + 0.05, h["reward"].round(3).tolist()  # the trainer's logged group-mean reward rises
    buy = res.records.assign(buy=res.records["signal"] == "BUY").groupby("step")["buy"].mean()
    assert buy.iloc[-8:].mean() > buy.iloc[:8].mean() + 0.05
    assert {"components/outcome", "rewards/outcome_only/mean"} <= set(res.history.columns)
    b, chain = policy_chain(tmp_path / "policy")
    assert b == base and chain == [*adapters, str(tmp_path / "policy")]
    model, tok = load_rl_policy(tmp_path / "policy")
    assert model is not None and tok.padding_side == "left"


def test_cli_train_evaluate_generate(models_dir, tmp_path, capsys):
    from workbench.rlhf.cli import main

    processed = tmp_path / "processed"
    D.write_contract(processed / "05_rlaif", D.synthetic_decision_points(80, seed=6))
    env = {**os.environ, "WORKBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "workbench.rlhf", "train", "--config", "rlhf_config.yaml", "--samples", "4",
           "--models-dir", str(models_dir), "--processed-dir", str(processed), "--num-generations", "2",
           "--batch-size", "2", "--max-completion-length", "8", "--steps", "2", "--learning-rate", "1e-3",
           "--scheme", "process-only", "--output-dir", str(tmp_path / "cli_policy")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "saved under" in out.stdout and (tmp_path / "cli_policy" / "adapter_config.json").exists()
    assert main(["evaluate", "--model-path", str(tmp_path / "cli_policy"), "--samples", "4", "--n-boot", "20",
                 "--models-dir", str(models_dir), "--processed-dir", str(processed)]) == 0
    printed = capsys.readouterr().out
    assert "true-step share" in printed and "cli_policy" in printed and "SFT" in printed
    assert main(["generate", "--market", json.dumps(GUIDE_MARKET), "--model-path", str(tmp_path / "cli_policy")]) == 0
    assert "final_signal" in capsys.readouterr().out
    assert main(["evaluate", "--model-path", str(tmp_path / "nowhere" / "sft"), "--models-dir", str(tmp_path / "none"),
                 "--processed-dir", str(processed)]) == 2
