"""Issue 17: the fast decoder reproduces the HF model, grounding forces the facts (and only them), the stricter
verifier, the aligned prompt, the task format, the five criteria and the copy probe. Synthetic data only."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.analysis import Analyst, StepVerifier, prompt_from_facts
from workbench.llm import criteria as K
from workbench.llm import data as D
from workbench.llm import evaluate as E
from workbench.llm import fastgen as FG
from workbench.llm import model as M
from workbench.llm import probe as PR

MICRO = M.TinyConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, context=512)
COPIED = {"rsi_value", "macd_value", "bb_value", "vol_value", "btc_move", "minutes_left", "up_price", "fair_value",
          "support_resistance", "entry_price", "risk_arithmetic", "risk_share"}


@pytest.fixture(scope="module")
def points() -> pd.DataFrame:
    return D.synthetic_decision_points(60, seed=5)


@pytest.fixture(scope="module")
def tok(points):
    return M.train_tokenizer(list(points["prompt"]) + list(points["completion"]), 512)


@pytest.fixture(scope="module")
def model(tok):
    return M.build_tiny_model(tok, MICRO, seed=1).eval()


def _batch(tok, prompts):
    tok.padding_side = "left"
    return tok([M.format_prompt(tok, p, None) for p in prompts], return_tensors="pt", padding=True,
               add_special_tokens=False)


# ---- the decoder ------------------------------------------------------------------------------------------
def test_fast_decoder_logits_match_the_hf_model_on_a_left_padded_batch(tok, model, points):
    enc = _batch(tok, list(points["prompt"].iloc[:4]) + ["short"])
    with torch.no_grad():
        ref = model(**enc).logits
        mine = FG.FastDecoder(model).prefill_logits(enc["input_ids"], enc["attention_mask"])
    m = enc["attention_mask"].bool()
    assert torch.allclose(ref[m], mine[m], atol=1e-4, rtol=1e-4)


def test_fast_greedy_decoding_writes_the_hf_greedy_tokens(tok, model, points):
    enc = _batch(tok, list(points["prompt"].iloc[:4]))
    with torch.no_grad():
        hf = model.generate(**enc, max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id,
                            eos_token_id=tok.eos_token_id)[:, enc["input_ids"].shape[1]:]
    fast = FG.FastDecoder(model).generate(enc["input_ids"], enc["attention_mask"], 20, tok.eos_token_id,
                                          tok.pad_token_id, greedy=True)
    assert fast.shape == hf.shape and torch.equal(fast, hf)


def test_sampling_is_seeded_and_respects_top_p():
    logits = torch.tensor([[4.0, 3.9, 0.0, -5.0]] * 64)
    a = FG.FastDecoder._pick(logits, False, 1.0, 0.5, torch.Generator().manual_seed(0))
    b = FG.FastDecoder._pick(logits, False, 1.0, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert set(a.tolist()) <= {0, 1}  # tokens 0 and 1 hold over half the mass: the nucleus stops there
    wide = FG.FastDecoder._pick(logits, False, 1.0, 0.9999, torch.Generator().manual_seed(1))
    assert 2 in wide.tolist()
    assert FG.FastDecoder._pick(logits, True, 1.0, 1.0, None).tolist() == [0] * 64


def test_generate_uses_the_fast_path_and_falls_back_for_other_models(tok, model, points, monkeypatch):
    g = E.GenerationSettings(max_new_tokens=12, batch_size=4, seed=3)
    fast = E.generate(model, tok, list(points["prompt"].iloc[:4]), g, system=None)
    assert fast == E.generate(model, tok, list(points["prompt"].iloc[:4]), g, system=None)  # seeded
    monkeypatch.setenv("WORKBENCH_FASTGEN", "0")
    slow = E.generate(model, tok, list(points["prompt"].iloc[:4]), g, system=None)
    assert len(slow) == 4 and all(isinstance(t, str) for t in slow)
    greedy = E.GenerationSettings(max_new_tokens=12, batch_size=4, greedy=True)
    monkeypatch.delenv("WORKBENCH_FASTGEN")
    assert E.generate(model, tok, list(points["prompt"].iloc[:4]), greedy, system=None, fast=False) == \
        E.generate(model, tok, list(points["prompt"].iloc[:4]), greedy, system=None)  # same tokens, either path
    assert not FG.supports(torch.nn.Linear(2, 2))


# ---- grounding --------------------------------------------------------------------------------------------
def test_grounder_values_are_the_analysts_for_every_trigger(points, tok):
    n = 0
    for f in map(D.facts_of, points["facts"]):
        for signal in ("BUY", "SELL", "HOLD"):
            text = Analyst(seed=0).write(f, signal=signal).text
            g = FG.Grounder(tok, [f])
            for j in range(1, len(text) + 1):
                if text[j - 1] in FG._TRIGGER_ENDS:
                    ids = g.forced(0, text[:j])
                    if ids:
                        n += 1
                        assert text[j:].startswith(tok.decode(ids)), (text[:j][-30:], tok.decode(ids))
    assert n >= len(points) * 3 * 12  # at least 12 forced values per analysis


def _wrong_numbers(text: str) -> str:
    """Every decimal number's digits shifted by 3 (same tokens count, wrong values)."""
    return re.sub(r"\d+\.\d+", lambda m: re.sub(r"\d", lambda d: str((int(d.group()) + 3) % 10), m.group()), text)


def test_grounded_decoding_fixes_the_copied_numbers_and_leaves_the_rest_to_the_model(tok, model, points):
    """A scripted 'model' writes an analysis with every decimal number wrong; grounding must make the copied and
    derived claims true, while the labels and the signal stay as the script wrote them."""
    facts = [D.facts_of(x) for x in points["facts"].iloc[:6]]
    scripts = [_wrong_numbers(Analyst(seed=0).write(f, signal=s).text) for f, s in zip(facts, ["BUY", "SELL", "HOLD"] * 2)]
    enc = _batch(tok, [prompt_from_facts(f) for f in facts])
    script_ids = [tok(s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for s in scripts]
    dec = FG.FastDecoder(model)
    step = {"t": 0}

    def scripted(logits, *a):
        t = step["t"]
        step["t"] += 1
        return torch.tensor([ids[min(t, len(ids) - 1)] for ids in script_ids])

    dec._pick = scripted
    ver = StepVerifier()
    for grounded in (False, True):
        step["t"] = 0
        gr = FG.Grounder(tok, facts) if grounded else None
        out = dec.generate(enc["input_ids"], enc["attention_mask"], 400, tok.eos_token_id, tok.pad_token_id,
                           grounder=gr, decode=lambda ids: tok.decode(ids, skip_special_tokens=True))
        texts = tok.batch_decode(out, skip_special_tokens=True)
        for text, f, script in zip(texts, facts, scripts):
            claims = {c.name: c.ok for c in ver.verify(text, f).claims}
            copied = [claims[k] for k in COPIED if k in claims]
            if grounded:
                assert all(copied), [c for c in ver.verify(text, f).claims if not c.ok]
                assert re.search(r"\b(BUY|SELL|HOLD)\b", text).group() == re.search(r"\b(BUY|SELL|HOLD)\b", script).group()
                assert re.findall(r"(overbought|oversold|neutral|bullish|bearish)", text) == \
                    re.findall(r"(overbought|oversold|neutral|bullish|bearish)", script)
            else:
                assert text == script and not any(copied)
        if grounded:
            assert gr.forced_tokens > 0


def test_the_hf_path_grounds_the_same_way(tok, model, points):
    facts = [D.facts_of(x) for x in points["facts"].iloc[:2]]
    scripts = [_wrong_numbers(Analyst(seed=0).write(f, signal="BUY").text) for f in facts]
    enc = _batch(tok, [prompt_from_facts(f) for f in facts])
    k = enc["input_ids"].shape[1]
    ids = [tok(s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for s in scripts]

    class Script:
        def __call__(self, input_ids, scores):
            t = input_ids.shape[1] - k
            for r in range(scores.shape[0]):
                scores[r] = float("-inf")
                scores[r, ids[r][min(t, len(ids[r]) - 1)]] = 0.0
            return scores

    proc = FG.GroundingProcessor(FG.Grounder(tok, facts), tok, k)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=400, do_sample=False, logits_processor=[Script(), proc],
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    for text, f in zip(tok.batch_decode(out[:, k:], skip_special_tokens=True), facts):
        claims = {c.name: c.ok for c in StepVerifier().verify(text, f).claims}
        assert all(claims[c] for c in COPIED if c in claims)


# ---- the stricter verifier --------------------------------------------------------------------------------
def test_verifier_requires_the_claims_and_a_hold_must_justify_itself(points):
    f = D.facts_of(points["facts"].iloc[0])
    a = Analyst(seed=0)
    hold = a.write(f, signal="HOLD").text
    ver = StepVerifier()
    assert all(ver.verify(hold, f).step_ok.values()) or not ver.verify(hold, f).step_ok["signal_generation"]
    sized_hold = re.sub(r"size 0 shares", "size 25 shares", hold)
    bad = {c.name for c in ver.verify(sized_hold, f).claims if not c.ok}
    assert "hold_no_size" in bad
    buy = a.write(f, signal="BUY").text
    step2 = re.search(r"Step 2 - [^\n]*", buy).group()
    hold_after_trade = hold.replace(re.search(r"Step 2 - [^\n]*", hold).group(), step2)
    assert "hold_no_risk" in {c.name for c in ver.verify(hold_after_trade, f).claims if not c.ok}
    no_size = re.sub(r", size \d+ shares", "", buy)
    assert "size_stop_present" in {c.name for c in ver.verify(no_size, f).claims if not c.ok}
    no_minutes = re.sub(r", [\d.]+ minutes left", "", buy)
    assert not ver.verify(no_minutes, f).step_ok["market_context"]
    no_sr = re.sub(r" Support [\d.]+, resistance [\d.]+\.", "", buy)
    assert "support_resistance_present" in {c.name for c in ver.verify(no_sr, f).claims if not c.ok}


# ---- prompt style and task format -------------------------------------------------------------------------
def test_aligned_prompt_carries_every_number_the_analysis_restates(points):
    for fj in points["facts"].iloc[:20]:
        f = D.facts_of(fj)
        p = prompt_from_facts(f, "aligned")
        text = Analyst(seed=0).write(f, signal="BUY").text
        for pat in PR.COPIED:
            for m in re.finditer(pat, text):
                if "of Up at" in pat:  # the entry is the ask (BUY) or the bid (SELL)
                    assert f"ask {m.group(1)}" in p
                else:
                    assert m.group(1) in p, (pat, m.group(1), p)
        assert f"gap {(f.fair - f.up_mid) * 100:+.1f} cents" in p
        assert f.market not in p and "Write" not in p  # no slug, no request
    with pytest.raises(ValueError):
        prompt_from_facts(D.facts_of(points["facts"].iloc[0]), "nope")


def test_restyle_maps_pairs_through_their_decision_point(points):
    pairs = D.synthetic_preference_pairs(points, seed=1)
    extra = pairs.iloc[:1].assign(prompt="a prompt of no decision point")
    new_points, new_pairs = D.restyle(points, pd.concat([pairs, extra], ignore_index=True), "aligned")
    assert new_pairs.attrs["dropped_unknown_prompt"] == 1 and len(new_pairs) == len(pairs)
    assert set(new_pairs["prompt"]) <= set(new_points["prompt"])
    assert new_points["prompt"].str.startswith("RSI(14) is").all()
    same, _ = D.restyle(points, None, "full")
    assert same is points


def test_task_format_is_recorded_and_read_back(tmp_path):
    assert M.TaskFormat.of(tmp_path) == M.TaskFormat()  # nothing recorded: the old default
    (tmp_path / "workbench.json").write_text('{"task": {"prompt_style": "aligned", "system": null}}')
    assert M.TaskFormat.of(None, tmp_path) == M.TaskFormat("aligned", None)


# ---- criteria and the copy probe --------------------------------------------------------------------------
def test_criteria_reward_the_reference_and_not_a_template_with_wrong_numbers(points):
    facts = [D.facts_of(x) for x in points["facts"]]
    refs = list(points["completion"])
    ref = K.score_criteria(refs, facts, refs)
    assert (ref.to_numpy() == 5.0).all()
    other = K.score_criteria(list(np.roll(np.asarray(refs, dtype=object), 7)), facts, refs)
    assert other["factual_accuracy"].mean() < 4.0 and other["language_quality"].mean() == 5.0
    garbage = K.score_criteria(["BUY BUY BUY to the moon moon moon"] * 3, facts[:3], refs[:3])
    assert (garbage.drop(columns="language_quality").to_numpy() == 1.0).all() and garbage["language_quality"].max() < 4.0


def test_copy_probe_separates_copying_from_guessing(tok, model, points):
    ex = points.iloc[:8]
    acc = PR.copy_digit_accuracy(model, tok, list(ex["prompt"]), list(ex["completion"]), None)
    assert 0.0 <= acc < 0.5  # a random model does not copy
    ids, att, cm = PR._examples(tok, list(ex["prompt"]), list(ex["completion"]), None)
    assert cm.sum() >= 8 * 20  # ~30 copied digits per analysis
    assert all(tok.convert_ids_to_tokens(int(i)).isdigit() for i in ids[cm])


def test_merged_decoder_reads_the_lora_policy_and_leaves_it_unmerged(tok, model, points):
    import copy

    from peft import LoraConfig, get_peft_model

    pm = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                          lora_dropout=0.0))
    torch.manual_seed(0)
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.5)  # a trained-looking adapter (B = 0 at init would hide a missing merge)
    pm.eval()
    before = {n: p.detach().clone() for n, p in pm.named_parameters()}
    enc = _batch(tok, list(points["prompt"].iloc[:3]))
    assert FG.supports(pm)  # read as base + scaling x B A, never the base weights alone
    dec = FG.merged_decoder(pm)
    with torch.no_grad():
        ref = pm(**enc).logits
        mine = dec.prefill_logits(enc["input_ids"], enc["attention_mask"])
    m = enc["attention_mask"].bool()
    assert torch.allclose(ref[m], mine[m], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        plain = model(**enc).logits
    assert (ref[m] - plain[m]).abs().max() > 1e-2  # the adapter matters
    after = dict(pm.named_parameters())
    assert all(torch.equal(before[n], after[n].detach()) for n in before)  # the policy is not modified
    dec.layers[0].qkv.add_(1.0)  # the decoder holds copies
    assert all(torch.equal(before[n], after[n].detach()) for n in before)


# ---- chat evaluation protocol -----------------------------------------------------------------------------
def test_chat_protocol_scores_the_facts_responder_and_catches_wrong_numbers(points):
    from workbench.llm import chat as C
    from workbench.llm import chat_eval as CE

    facts = [D.facts_of(x) for x in points["facts"].iloc[:8]]
    decisions = list(points["completion"].iloc[:8])
    assert {q.category for q in CE.QUESTIONS} == set(CE.CATEGORIES)
    good = CE.evaluate_chat(lambda f, d: C.ChatSession(f, decision=d), facts, decisions)
    assert len(good) == 8 * len(CE.QUESTIONS) and good["relevant"].all() and good["accurate"].all()
    # the same responder answering from another point's facts: relevant, but the checks catch the numbers
    other = {id(f): facts[(i + 4) % 8] for i, f in enumerate(facts)}
    wrong = CE.evaluate_chat(lambda f, d: C.ChatSession(other[id(f)], decision=d), facts, decisions)
    assert wrong["relevant"].mean() > 0.9 and wrong["accurate"].mean() < 0.5
    s = CE.chat_scores(wrong, n_boot=100)
    assert list(s.index) == [*CE.CATEGORIES, "all"] and s.loc["all", "accurate_lo"] <= s.loc["all", "accurate"]
