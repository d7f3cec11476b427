"""Issue 17: the RLHF comparison's yardsticks -- held-out claims outside the process reward, the true expected
value of a signal, paired scheme comparisons with the minimum detectable effect, within-group reward variance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import FACTS, GOOD

from workbench.analysis import load_config
from workbench.llm import data as D
from workbench.llm import model as M
from workbench.rlhf import power as PW
from workbench.rlhf.rewards import HELD_OUT_CLAIMS, Scheme, score

CFG = load_config()


def test_process_reward_does_not_see_the_held_out_claims():
    wrong_label = GOOD.replace("normal bands", "wide bands")  # Bollinger width 0.42 % is normal
    s = score([GOOD, wrong_label], [FACTS, FACTS], CFG)
    assert s.true_step_share.tolist() == [1.0, 0.75]  # the verifier counts the false label...
    assert s.process[0] == s.process[1] == pytest.approx(0.5)  # ...the process reward does not
    tot = s.total(Scheme.named("process-only"))
    assert tot[0] == pytest.approx(tot[1])  # nor does the keyword guard: the label is a held-out target
    held = PW.held_out_claims([GOOD, wrong_label, "Step 1 - Technical analysis: RSI(14) is 63.4."], [FACTS] * 3)
    assert held[0] == 1.0 and 0 < held[1] < 1 and np.isnan(held[2])
    assert set(HELD_OUT_CLAIMS) == {"rsi_label", "bb_label", "vol_label"}


class _ConstantTruth:
    def p_up(self, t_ms: int) -> float:
        return 0.7


def test_true_ev_of_a_signal_is_the_edge_at_the_true_probability():
    f = D.synthetic_facts(3, seed=1)
    ex = D.decision_points_from_facts(f)
    scored = pd.DataFrame({"prompt_id": [0, 1, 2], "signal": ["BUY", "SELL", "HOLD"]})
    ev = PW.true_ev(scored, ex, _ConstantTruth())
    assert ev[0] == pytest.approx(0.7 - f[0].up_ask) and ev[1] == pytest.approx(f[1].up_bid - 0.7) and ev[2] == 0.0


def test_minimum_detectable_effect_and_a_detected_scheme_difference():
    assert PW.minimum_detectable_effect(1.0, 100) == pytest.approx((1.959964 + 0.841621) / 10, rel=1e-5)
    assert np.isnan(PW.minimum_detectable_effect(1.0, 1))
    rng = np.random.default_rng(0)
    rows = []
    for scheme, shift in (("a", 0.10), ("b", 0.0)):
        for seed in (1, 2):
            base = rng.normal(0, 0.05, 400)
            rows += [{"model": f"{scheme} (seed {seed})", "scheme": scheme, "seed": seed, "prompt_id": i,
                      "ret0": base[i] + shift, "true_ev": shift + rng.normal(0, 0.3)} for i in range(400)]
    scored = pd.DataFrame(rows)
    c = PW.scheme_comparison(scored, "a", "b", n_boot=300).set_index("target")
    assert c.loc["ret0", "detected"] and c.loc["ret0", "diff"] == pytest.approx(0.10, abs=0.01)
    assert c.loc["ret0", "mde_80pct_power"] < 0.02 < c.loc["true_ev", "mde_80pct_power"]  # noisier target, larger MDE
    t = PW.target_table(scored, n_boot=200)
    assert len(t) == 4 and {"ret0_lo", "ret0_hi", "true_ev"} <= set(t.columns)


class _LengthReward:
    """Reward = 1 for a completion longer than 5 characters: varies within a group only if lengths vary."""

    def score_texts(self, texts, facts, times=None):
        return np.array([float(len(t) > 5) for t in texts]), None


def test_group_reward_variance_counts_groups_without_variance():
    pts = D.synthetic_decision_points(40, seed=2)
    tok = M.train_tokenizer(list(pts["prompt"]) + list(pts["completion"]), 512)
    model = M.build_tiny_model(tok, M.TinyConfig(vocab_size=512, hidden_size=32, num_layers=1, num_heads=2,
                                                 intermediate_size=64), seed=0)
    summary, roll = PW.group_reward_variance(model, tok, pts.iloc[:4], {"length": _LengthReward()}, group=3,
                                             temperature=1.0, max_new_tokens=4, seed=0)
    assert len(roll) == 12 and roll["prompt_id"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    row = summary.loc["length"]
    assert row["groups"] == 4 and row["group_size"] == 3 and 0.0 <= row["zero_variance_groups"] <= 1.0
    sd = roll.groupby("prompt_id")["length"].std(ddof=0)
    assert row["mean_within_std"] == pytest.approx(sd.mean())
    assert row["parseable"] == 0.0  # 4 random tokens never make a signal


def test_ev_ceiling_takes_the_best_action_at_each_prompt():
    f = D.synthetic_facts(4, seed=3)
    ex = D.decision_points_from_facts(f)
    c = PW.ev_ceiling(ex, _ConstantTruth(), n_boot=100)
    best = [max(0.0, 0.7 - x.up_ask, x.up_bid - 0.7) for x in f]
    assert c["mean"] == pytest.approx(np.mean(best)) and c["n"] == 4 and c["ci"][0] <= c["mean"] <= c["ci"][1]
