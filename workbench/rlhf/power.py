"""Can the RLHF comparison detect a difference? Reward variance before training, targets no scheme optimises,
intervals and the smallest detectable effect.

The audit of issue 17 found GRPO "had nothing to learn from": identical outcome rewards within each group (the
policy held on every prompt), zero process-reward variance in half the groups, a third of the rollouts
unparseable. GRPO's advantage is the reward standardised *within* a group of completions of one prompt (Shao et
al. 2024), so a group whose rewards are all equal teaches nothing. Before training:

* :func:`group_reward_variance`: ``G`` rollouts per RL prompt from the starting (SFT) policy at the rollout
  temperature, each reward scheme's reward, and per scheme the mean within-group standard deviation, the share of
  groups with zero variance and the share of parseable rollouts.

After training, on held-out test prompts, targets that none of the schemes optimises directly:

* :func:`true_ev`: the expected P&L per share of the final signal under the simulator's true probability of Up
  (:class:`workbench.rlaif.truth.TruePath`; simulated data only -- evaluation only, never a reward);
* the realised P&L of following the signal (``ret0``: HOLD = 0) on the recorded quotes;
* :func:`held_out_claims`: the share of true claims among the verifier's label claims that the process reward
  does not see (:data:`workbench.rlhf.rewards.HELD_OUT_CLAIMS`).

:func:`minimum_detectable_effect` gives, for a paired comparison on the same prompts, the smallest true mean
difference the design detects with 80 % power at a two-sided 5 % level: ``(z_0.975 + z_0.8) x sd(diff) / sqrt(n)``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.analysis.verifier import StepVerifier
from workbench.llm.data import facts_of
from workbench.rlhf.rewards import HELD_OUT_CLAIMS


def group_reward_variance(model: Any, tokenizer: Any, prompts: pd.DataFrame, rewards: dict[str, Any], group: int,
                          temperature: float, max_new_tokens: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Within-group reward spread of ``group`` rollouts per prompt from ``model``, per reward scheme.

    Returns ``(summary, rollouts)``: one row per scheme (``mean_within_std``, ``zero_variance_groups``, ``groups``,
    ``parseable``) and one row per rollout (``prompt_id``, the text, each scheme's reward).
    """
    from workbench.llm.evaluate import GenerationSettings, generate

    ex = prompts.reset_index(drop=True)
    rep = ex.loc[ex.index.repeat(group)].reset_index(drop=True)
    g = GenerationSettings(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens,
                           batch_size=min(len(rep), 64), seed=seed)
    texts = generate(model, tokenizer, list(rep["prompt"]), g)
    facts = [facts_of(f) for f in rep["facts"]]
    roll = pd.DataFrame({"prompt_id": np.repeat(np.arange(len(ex)), group), "text": texts})
    ver = StepVerifier()
    roll["parseable"] = [ver.verify(t, f).parsed.get("signal") is not None for t, f in zip(texts, facts)]
    rows = []
    for name, fn in rewards.items():
        total, _ = fn.score_texts(texts, facts, list(rep["time"]))
        roll[name] = np.asarray(total, float)
        sd = roll.groupby("prompt_id")[name].std(ddof=0)
        rows.append({"scheme": name, "mean_within_std": float(sd.mean()), "median_within_std": float(sd.median()),
                     "zero_variance_groups": float((sd < 1e-9).mean()), "groups": int(len(sd)),
                     "group_size": int(group), "parseable": float(roll["parseable"].mean())})
    return pd.DataFrame(rows).set_index("scheme"), roll


def true_ev(scored: pd.DataFrame, examples: pd.DataFrame, path: Any) -> np.ndarray:
    """Expected P&L per share of each scored analysis' signal under the simulator's truth: BUY ``p - ask``,
    SELL ``bid - p``, HOLD or no signal 0 (``p`` = :meth:`TruePath.p_up` at the decision). ``scored`` rows carry
    ``prompt_id`` into ``examples`` (:func:`workbench.rlhf.evaluation.score_texts`)."""
    out = np.zeros(len(scored))
    ex = examples.reset_index(drop=True)
    for i, (pid, sig) in enumerate(zip(scored["prompt_id"], scored["signal"])):
        if sig not in ("BUY", "SELL"):
            continue
        f = facts_of(ex["facts"].iloc[int(pid)])
        p = path.p_up(int(ex["time"].iloc[int(pid)]))
        out[i] = p - f.up_ask if sig == "BUY" else f.up_bid - p
    return out


def held_out_claims(texts: Sequence[str], facts: Sequence[Any], names: Sequence[str] = HELD_OUT_CLAIMS) -> np.ndarray:
    """Per analysis: the share of true claims among the held-out claims it makes (NaN when it makes none)."""
    ver = StepVerifier()
    out = np.full(len(texts), np.nan)
    for i, (t, f) in enumerate(zip(texts, facts)):
        made = [c.ok for c in ver.verify(t, facts_of(f)).claims if c.name in names]
        if made:
            out[i] = float(np.mean(made))
    return out


def minimum_detectable_effect(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference detected with ``power`` at two-sided level ``alpha``."""
    if n < 2 or not np.isfinite(sd_diff):
        return float("nan")
    return metrics.detectable_difference(sd_diff / math.sqrt(n), alpha, power)


TARGETS = ("true_ev", "ret0", "held_out_claims", "true_step_share")


def target_table(scored: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model (``scheme`` and ``seed`` columns when present): each target's mean with a 95 % bootstrap interval
    over prompts."""
    rows = []
    keys = [k for k in ("model", "scheme", "seed") if k in scored.columns]
    for key, g in scored.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["n"] = len(g)
        for t in TARGETS:
            if t in g:
                v = g[t].astype(float).dropna().to_numpy()
                m, lo, hi = metrics.bootstrap_ci(v, np.mean, n_boot=n_boot, seed=seed) if len(v) else (np.nan,) * 3
                row.update({t: m, f"{t}_lo": lo, f"{t}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def scheme_comparison(scored: pd.DataFrame, a: str, b: str, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Scheme ``a`` minus scheme ``b`` on each target: per prompt, each scheme's mean over its seeds, then the
    paired mean difference with a bootstrap interval over prompts and the minimum detectable effect."""
    rows = []
    for t in TARGETS:
        if t not in scored:
            continue
        per = scored[scored["scheme"].isin([a, b])].groupby(["scheme", "prompt_id"])[t].mean().unstack(0)
        per = per.dropna()
        if a not in per or b not in per or not len(per):
            continue
        d, lo, hi = metrics.paired_bootstrap_diff(per[a].to_numpy(), per[b].to_numpy(), n_boot=n_boot, seed=seed)
        sd = float((per[a] - per[b]).std(ddof=1)) if len(per) > 1 else float("nan")
        rows.append({"target": t, "comparison": f"{a} - {b}", "diff": d, "lo": lo, "hi": hi, "prompts": len(per),
                     "mde_80pct_power": minimum_detectable_effect(sd, len(per)),
                     "detected": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def truth_path(processed: Any, raw: Any) -> tuple[Any, str]:
    """The simulator's :class:`workbench.rlaif.truth.TruePath` of the ingested wallet, or ``(None, why)`` for real
    data (no ``simulator_truth`` folder). Evaluation only."""
    from pathlib import Path

    events = Path(processed) / "01_ingestion" / "events.parquet"
    if not events.exists():
        return None, f"no {events}: the true expected value is not computed"
    wallet = str(pd.read_parquet(events, columns=["wallet"])["wallet"].iloc[0])
    cfg_file = Path(raw) / "simulator_truth" / wallet / "sim_config.json"
    if not cfg_file.exists():
        return None, f"no simulator truth for wallet {wallet} (real data): the true expected value is not computed"
    from workbench.data.simulate import load_sim_config
    from workbench.rlaif.truth import TruePath

    return TruePath(load_sim_config(Path(raw), wallet)), f"simulator truth of wallet {wallet} (evaluation only)"


def attach_targets(scored: pd.DataFrame, examples: pd.DataFrame, path: Any,
                   names: dict[str, tuple[str, int]] | None = None) -> pd.DataFrame:
    """``scored`` with the held-out targets (``true_ev`` when ``path`` is given, ``held_out_claims``) and, from
    ``names`` (model -> (scheme, seed)), ``scheme`` and ``seed`` columns."""
    ex = examples.reset_index(drop=True)
    out = scored.copy()
    facts = [ex["facts"].iloc[int(p)] for p in out["prompt_id"]]
    out["held_out_claims"] = held_out_claims(list(out["text"]), facts)
    if path is not None:
        out["true_ev"] = true_ev(out, ex, path)
    names = names or {}
    out["scheme"] = [names.get(m, (m, -1))[0] for m in out["model"]]
    out["seed"] = [names.get(m, (m, -1))[1] for m in out["model"]]
    return out


def rl_metrics(variance: pd.DataFrame, targets: pd.DataFrame, comparisons: pd.DataFrame, settings: dict[str, Any],
               notes: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` of notebook 07: per scheme and seed the within-group reward variance (measured before
    training on the starting policy: the same for every seed of a scheme) and the held-out targets with
    intervals; the paired scheme comparisons with their minimum detectable effects."""
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not np.isfinite(v) else v

    per: dict[str, Any] = {}
    for r in targets.to_dict("records"):
        scheme, seed = str(r.get("scheme", r.get("model"))), int(r.get("seed", -1))
        entry = {t: {"mean": clean(r.get(t)), "ci": [clean(r.get(f"{t}_lo")), clean(r.get(f"{t}_hi"))]}
                 for t in TARGETS if t in r}
        entry["n"] = int(r["n"])
        if scheme in variance.index:
            entry["within_group_reward"] = {k: clean(float(v)) for k, v in variance.loc[scheme].items()}
        per.setdefault(scheme, {})[f"seed {seed}" if seed >= 0 else "-"] = entry
    return {"schemes": per, "comparisons": [{k: clean(v) for k, v in c.items()} for c in comparisons.to_dict("records")],
            "within_group_reward_variance": {k: {c: clean(float(x)) for c, x in row.items()}
                                             for k, row in variance.to_dict("index").items()},
            "settings": settings, **notes}


def ev_ceiling(examples: pd.DataFrame, path: Any, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The ceiling of the true-EV target: per prompt the best of BUY (``p - ask``), SELL (``bid - p``) and HOLD (0)
    under the simulator's truth, averaged over prompts with a bootstrap interval (evaluation only)."""
    ex = examples.reset_index(drop=True)
    best = []
    for fj, t in zip(ex["facts"], ex["time"]):
        f, p = facts_of(fj), path.p_up(int(t))
        best.append(max(0.0, p - f.up_ask, f.up_bid - p))
    m, lo, hi = metrics.bootstrap_ci(np.asarray(best), np.mean, n_boot=n_boot, seed=seed)
    return {"mean": float(m), "ci": [float(lo), float(hi)], "n": len(best),
            "share_with_an_edge": float(np.mean(np.asarray(best) > 0))}
