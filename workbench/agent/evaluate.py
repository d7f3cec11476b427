"""The test period: PPO against always-HOLD, behaviour cloning, the twin and the recorded trader, in one replay.

Every policy trades in :func:`workbench.twin.backtest.replay` (the environment's rules) on the same test
markets; the recorded trader's P&L is its own (the step table's rewards). Per policy: total return on the
notional, mean P&L per market, Sharpe per market (mean / standard deviation of the per-market P&L), the win
rate over the markets it traded, each with a bootstrap interval over markets; and the paired difference of
PPO against each baseline per market, with its interval and the smallest difference the test period can
detect (80 % power at the 5 % level, from the paired standard error).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench import metrics
from workbench.twin import backtest, steering


def replay_pnl(setup: Any, policies: dict[str, Any], part: str = "test") -> pd.DataFrame:
    """P&L per market ``(markets, policies)`` in USDC of each policy replayed on ``part``, plus the recorded
    trader's (``"the trader (recorded)"``)."""
    d = setup.data
    steps = d.steps.iloc[d.rows(part)]
    cols = []
    for name, pol in policies.items():
        r = backtest.replay(steps, pol, [name], setup.book, setup.execution, d.normalizer, notional=setup.notional,
                            levels=d.levels)
        cols.append(steering.market_pnl(r.equity, r.slugs).set_axis([name], axis=1))
    trader = steering.market_pnl(np.cumsum(steps["reward"].to_numpy() * setup.notional), steps["slug"].to_numpy())
    cols.append(trader.set_axis(["the trader (recorded)"], axis=1))
    return pd.concat(cols, axis=1)


def _stats(x: np.ndarray, notional: float) -> dict[str, float]:
    sd = x.std(ddof=1) if len(x) > 1 else 0.0
    traded = x[x != 0]
    return {"return": float(x.sum() / notional), "pnl_per_market": float(x.mean()),
            "sharpe_per_market": float(x.mean() / sd) if sd > 0 else 0.0,
            "win_rate": float((traded > 0).mean()) if len(traded) else float("nan"),
            "markets_traded": float((x != 0).mean())}


def metrics_table(pnl: pd.DataFrame, notional: float, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> pd.DataFrame:
    """Per policy (rows): return on notional, P&L per market, Sharpe per market, win rate, share of markets
    traded, each with ``<name>_low`` / ``<name>_high`` bootstrap bounds (markets resampled)."""
    x = pnl.to_numpy(dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    q = [(1 - level) / 2, (1 + level) / 2]
    rows = {}
    for j, name in enumerate(pnl.columns):
        point = _stats(x[:, j], notional)
        boot = pd.DataFrame([_stats(x[b, j], notional) for b in idx])
        row = dict(point)
        for k in point:
            lo, hi = np.nanquantile(boot[k].to_numpy(), q) if boot[k].notna().any() else (np.nan, np.nan)
            row[f"{k}_low"], row[f"{k}_high"] = float(lo), float(hi)
        rows[name] = row
    return pd.DataFrame(rows).T


def paired(pnl: pd.DataFrame, model: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``model`` minus each other policy, per market: mean difference (USDC per market), its bootstrap interval,
    and the minimum detectable difference ``2.8 x SE`` (80 % power, two-sided 5 %)."""
    rng = np.random.default_rng(seed)
    a = pnl[model].to_numpy(dtype=np.float64)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    rows = {}
    for other in [c for c in pnl.columns if c != model]:
        diff = a - pnl[other].to_numpy(dtype=np.float64)
        boot = diff[idx].mean(axis=1)
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
        lo, hi = np.quantile(boot, [0.025, 0.975])
        rows[other] = {"diff_per_market": float(diff.mean()), "ci_low": float(lo), "ci_high": float(hi),
                       "mde_per_market": metrics.detectable_difference(se), "better": bool(lo > 0), "worse": bool(hi < 0)}
    return pd.DataFrame(rows).T


def verdict(pairs: pd.DataFrame, model: str = "PPO") -> list[str]:
    """Plain sentences: does ``model`` beat each baseline on the test period (interval above 0)?"""
    out = []
    for other, r in pairs.iterrows():
        how = ("beats" if r["better"] else "loses to" if r["worse"] else "is not distinguishable from")
        out.append(f"{model} {how} {other}: {r['diff_per_market']:+.2f} USDC per market "
                   f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] (smallest detectable: {r['mde_per_market']:.2f}).")
    return out


def replay_consistency(setup: Any, part: str = "test", max_markets: int = 50) -> float:
    """Largest absolute difference (USDC) between the environment's per-market P&L and the replay's for the recorded
    trader's classes played open loop on the first ``max_markets`` markets of ``part`` (0 up to float rounding)."""
    from workbench.agent.env import MarketEnv, run_actions

    d, ed = setup.data, setup.periods[part]
    acts = d.actions[d.rows(part)]
    k = min(max_markets, ed.n_markets)
    stop = int(ed.segments[k - 1, 1])
    steps = d.steps.iloc[d.rows(part)[:stop]]

    r = backtest.replay(steps, backtest.SequencePolicy(acts), ["recorded"], setup.book, setup.execution, d.normalizer,
                        notional=setup.notional, levels=d.levels)
    ref = steering.market_pnl(r.equity, r.slugs).iloc[:, 0].to_numpy()
    env = MarketEnv(ed)
    got = np.array([run_actions(env, m, acts[a:b])[-1] for m, (a, b) in enumerate(ed.segments[:k])])
    return float(np.abs(got - ref).max())


def conclusion(pairs: pd.DataFrame, model: str = "PPO", targets: tuple[str, ...] = ("always HOLD", "BC logistic")) -> str:
    """The issue's target in one sentence: does ``model`` beat each of ``targets`` with an interval above 0?"""
    missing = [t for t in targets if t not in pairs.index]
    if missing:
        return f"cannot judge: no {', '.join(missing)} in the comparison"
    beaten = [t for t in targets if bool(pairs.loc[t, "better"])]
    if len(beaten) == len(targets):
        return f"{model} beats {' and '.join(targets)} on the test period (paired intervals above 0)."
    lost = [t for t in targets if t not in beaten]
    parts = [f"{pairs.loc[t, 'diff_per_market']:+.2f} [{pairs.loc[t, 'ci_low']:+.2f}, {pairs.loc[t, 'ci_high']:+.2f}] "
             f"USDC against {t}" for t in lost]
    return (f"{model} does NOT beat {' and '.join(lost)} on the test period with an interval above 0: the paired "
            f"difference per market is {'; '.join(parts)}. A market's P&L is dominated by settlement, so the design "
            f"can only detect differences of about {float(pairs.loc[lost[0], 'mde_per_market']):.1f} USDC per market.")
