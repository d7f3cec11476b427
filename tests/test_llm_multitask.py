"""Multi-task, instruction-varied fine-tuning and iterative dataset refinement (issue 22). Synthetic data only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.llm import chat as C
from workbench.llm import commentary as K
from workbench.llm import data as D
from workbench.llm import guard as G
from workbench.llm import model as M
from workbench.llm import multitask as MT
from workbench.llm import refine as R
from workbench.llm import train as T
from workbench.llm.evaluate import GenerationSettings

MICRO = M.TinyConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, context=512)


@pytest.fixture(scope="module")
def ds() -> D.SFTData:
    return D.build_sft_dataset(D.synthetic_decision_points(120, seed=5), 0.9)


@pytest.fixture(scope="module")
def market(ds) -> pd.DataFrame:
    t0 = pd.Timestamp(int(ds.train["time"].min()), unit="ms", tz="UTC") - pd.Timedelta(hours=3)
    t1 = pd.Timestamp(int(ds.test["time"].max()), unit="ms", tz="UTC")
    idx = pd.date_range(t0.floor("min"), t1.ceil("min"), freq="1min", name="time")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"log_close": np.log(95_000.0) + np.cumsum(rng.normal(0, 5e-4, len(idx)))}, index=idx)


@pytest.fixture(scope="module")
def base(ds, tmp_path_factory) -> T.BaseModel:
    s = T.settings_for("pretrain", "cpu", max_steps=8, batch_size=16, logging_steps=4, eval_steps=4)
    return T.build_tiny_base(ds, tmp_path_factory.mktemp("mt") / "tiny", MICRO, s, seed=0, reuse=False, paired=True)


def test_the_mix_holds_three_tasks_from_the_training_split_only(ds, market, base):
    mixed = MT.multitask_data(ds, base.tokenizer, market, None, commentary_every=4, chat_points=10, seed=1)
    n = mixed.groupby("task").size()
    assert n["analysis"] == len(ds.train) and n["chat"] == 20 and n["commentary"] == len(ds.train[::4])
    assert mixed["time"].max() < ds.cutoff_ms  # nothing of the SFT eval split or the test period
    an = mixed[mixed["task"] == "analysis"]
    firsts = {p.split("\n", 1)[0] if p.split("\n", 1)[0] in MT.ANALYSIS_INSTRUCTIONS else "" for p in an["prompt"]}
    assert len(firsts) >= 3 and "" in firsts  # varied instructions, the canonical prompt among them
    assert an["system"].isna().all()  # the base's own format (no system message)
    com = mixed[mixed["task"] == "commentary"]
    assert (com["system"] == K.COMMENTARY_SYSTEM).all()
    assert len({p.rsplit("UTC.", 1)[-1] for p in com["prompt"]}) >= 2
    # every commentary target verifies in full
    for r in com.itertuples():
        f = K.commentary_facts(market, pd.Timestamp(r.time, unit="ms", tz="UTC"))
        assert MT.commentary_score(r.completion, f) == 1.0
    # a chat example is exactly what ChatSession sends a model, and its target the facts responder's answer
    ch = mixed[mixed["task"] == "chat"].iloc[0]
    point = ds.train[ds.train["time"] == ch["time"]].iloc[0]
    q = ch["prompt"].split(G.OPEN, 1)[-1].split(G.CLOSE, 1)[0].strip() if G.OPEN in ch["prompt"] else None
    shown = C.ChatSession(D.facts_of(point["facts"]), decision=point["completion"], tokenizer=base.tokenizer)
    dec = None if "decision" in shown.omitted else point["completion"]
    assert "Market facts:" in ch["system"] and (dec is None) == ("The decision's analysis" not in ch["system"])
    assert q is not None and ch["completion"] == C.ChatSession(D.facts_of(point["facts"]), decision=dec).ask(q).text


def test_commentary_score_counts_a_missing_claim_as_wrong(market):
    f = K.commentary_facts(market, market.index[-1])
    full = K.template_commentary(f)
    terse = full.split(". ")[0] + "."
    assert MT.commentary_score(full, f) == 1.0
    assert 0 < MT.commentary_score(terse, f) < 1.0  # the lenient verifier passes it; the task score does not
    assert K.CommentaryVerifier().verify(terse, f).all_true
    wrong = full.replace(f"{abs(f.change_pct):.2f}%", f"{abs(f.change_pct) + 1:.2f}%", 1)
    assert MT.commentary_score(wrong, f) < 1.0


def test_rows_carry_their_own_system_message(base):
    rows = T.sft_rows(base.tokenizer, ["a", "b"], ["x", "y"], ["S1", None])
    assert rows[0]["prompt"][0] == {"role": "system", "content": "S1"} and rows[1]["prompt"][0]["role"] == "user"
    df = pd.DataFrame({"system": ["S", np.nan]})
    assert T._systems(df, "D") == ["S", "D"] and T._systems(pd.DataFrame({"x": [1]}), "D") == "D"


def test_comparison_table_pairs_units_and_names_the_verdict():
    rng = np.random.default_rng(0)
    base_scores = rng.uniform(0.3, 0.7, 60)
    rows = pd.concat([pd.DataFrame({"model": "one", "task": "analysis", "unit": range(60), "score": base_scores}),
                      pd.DataFrame({"model": "many", "task": "analysis", "unit": range(60), "score": base_scores + 0.05}),
                      pd.DataFrame({"model": "one", "task": "chat", "unit": range(10), "score": 0.5}),
                      pd.DataFrame({"model": "many", "task": "chat", "unit": range(10), "score": 0.5})])
    t = MT.comparison_table(rows, "one", "many", n_boot=200)
    assert t.loc["analysis", "diff"] == pytest.approx(0.05) and t.loc["analysis", "diff_lo"] == pytest.approx(0.05)
    assert t.loc["analysis", "verdict"] == "multi-task helps"
    assert t.loc["chat", "verdict"] == "no detectable difference" and t.loc["chat", "units"] == 10


def test_score_tasks_scores_each_task_by_its_verifier(ds, market):
    ex = ds.test.iloc[:3]
    sets = MT.TaskSets(analysis=ex, commentary_times=list(ex["time"]), chat=ex.iloc[0:0], market=market)
    answers = {**dict(zip(ex["prompt"], ex["completion"]))}
    for t in ex["time"]:
        f = K.commentary_facts(market, pd.Timestamp(int(t), unit="ms", tz="UTC"))
        answers[K.commentary_prompt(f)] = K.template_commentary(f)

    def perfect(model, tok, prompts, g, system="auto"):
        return [answers[p] for p in prompts]

    def wrong(model, tok, prompts, g, system="auto"):
        return ["BTC rose 9.99% over the last 60 minutes." if "commentary" in p else "Step 1: nothing." for p in prompts]

    good = MT.score_tasks("perfect", None, None, sets, None, generate_fn=perfect)
    bad = MT.score_tasks("wrong", None, None, sets, None, generate_fn=wrong)
    assert set(good["task"]) == {"analysis", "commentary"} and (good["score"] == 1.0).all()
    assert (bad["score"] < 0.5).all()


def test_multitask_and_refinement_run_end_to_end(ds, market, base, tmp_path, monkeypatch):
    lora = T.LoRASettings(r=4, alpha=8, dropout=0.0)
    s = T.settings_for("sft", "cpu", max_steps=2, batch_size=4, logging_steps=1)
    mixed = MT.multitask_data(ds, base.tokenizer, market, None, commentary_every=10, chat_points=4, seed=0)
    single = T.train_sft(base, ds.train, None, tmp_path / "single", lora, s)
    fresh = T.BaseModel(*M.load_base(base.path, load_in_4bit=False)[:2], base.path, base.report)
    multi = T.train_sft(fresh, mixed, None, tmp_path / "multi", lora, s)
    g = GenerationSettings(max_new_tokens=24, seed=0)
    ex = ds.test.iloc[:2]
    sets = MT.TaskSets(analysis=ex, commentary_times=list(ex["time"]), chat=ex.iloc[:1], market=market)
    table, units = MT.multitask_study(base.path, [single.output_dir], [multi.output_dir], sets, g, n_boot=50)
    assert list(table.index) == ["analysis", "commentary", "chat"] and table["units"].tolist() == [2, 2, 1]
    assert units["score"].between(0, 1).all() and {"single-task", "multi-task"} <= set(table.columns)

    # refinement: a verified analysis is kept as written, a failing one replaced by the analyst's
    sample = ds.train.iloc[:4].reset_index(drop=True)
    texts = [sample["completion"][0], "Step 1: wrong.", sample["completion"][2], "nonsense"]
    monkeypatch.setattr("workbench.llm.evaluate.generate", lambda *a, **k: list(texts))
    data, counts = R.refinement_examples(None, None, sample, g)
    assert counts == {"generated": 4, "verified_kept": 2, "corrected": 2}
    assert data["completion"].tolist() == sample["completion"].tolist()
    monkeypatch.undo()
    rt, rp = R.refinement_study(base, [single.output_dir], ds.train, ex, tmp_path / "refine", rounds=1, per_round=4,
                                steps=2, lora=lora, settings=s, generation=g, seed=0, n_boot=50)
    assert set(zip(rt["arm"], rt["round"])) == {("refined", 0), ("refined", 1), ("control", 0), ("control", 1)}
    r1 = rt[(rt["arm"] == "refined") & (rt["round"] == 1)].iloc[0]
    assert r1["generated"] == 4 and r1["verified_kept"] + r1["corrected"] == 4 and np.isfinite(r1["detectable"])
    assert (tmp_path / "refine" / "refined" / "round_1" / "adapter_config.json").exists()
    assert len(rp) == 4 * len(ex) and "refinement" in R.refinement_verdict(rt)
