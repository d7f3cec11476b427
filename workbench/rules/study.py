"""Notebook 09's studies: the card of a wallet, its recovery over simulation seeds and traders, the real wallets."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.rules import card as C
from workbench.rules import search, terms


def wallet_terms(data01: Any, steps: pd.DataFrame, actions: np.ndarray, strong: float, train_rows: np.ndarray, *,
                 sigma_noise: float | None = None, quote_noise: float | None = None, quote_lag: float = 0.0,
                 n_draws: int = 64, seed: int = 0) -> tuple[terms.PolicyData, np.ndarray, dict[str, float]]:
    """The card's terms for every step of one wallet, and the positions of the training markets.

    The volatility's scale and the quote noise are fitted on the training rows only. Returns
    ``(data, training market positions, {"sigma_scale", "quote_noise", "quote_lag"})``.
    """
    from workbench.data import ingest
    from workbench.features import indicators as F

    ohlcv = F.ohlcv(ingest.rebar(data01, "1min"))
    steps = terms.with_quote_age(steps, data01.events)
    end = steps.index[train_rows[-1]]
    _, scale = terms.volatility(ohlcv.loc[:end])
    sigma, _ = terms.volatility(ohlcv, scale=scale)
    if quote_noise is None or sigma_noise is None:  # the quote model and volatility error, on the training steps
        tr = terms.policy_data(steps.iloc[train_rows], actions[train_rows], strong=strong, sigma=sigma,
                               sigma_noise=sigma_noise, quote_noise=quote_noise, quote_lag=quote_lag,
                               n_draws=n_draws, seed=seed)
        quote_noise, quote_lag, sigma_noise = tr.quote_noise, tr.quote_lag, tr.sigma_noise
    d = terms.policy_data(steps, actions, strong=strong, sigma=sigma, sigma_noise=sigma_noise,
                          quote_noise=quote_noise, quote_lag=quote_lag, n_draws=n_draws, seed=seed)
    train_slugs = set(steps["slug"].to_numpy()[train_rows])
    markets = np.flatnonzero([s in train_slugs for s in d.slugs])
    return d, markets, {"sigma_scale": scale, "quote_noise": float(quote_noise), "quote_lag": float(quote_lag),
                        "sigma_noise": float(sigma_noise)}


def simulated_card(cfg: Any, *, candidates: tuple[str, ...] = tuple(terms.CANDIDATES), n_draws: int = 32,
                   n_draws_final: int = 128,
                   quote_noise: float | None = None, sigma_noise: float | None = None, work: Path | None = None,
                   fit_kw: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate ``cfg``, ingest its files, fit the card on the whole period (change points and terms on
    ``n_draws``, the final fit on ``n_draws_final``) and compare it with the hidden policy (evaluation only: the
    fit never reads the truth). Returns the card table (with ``true``, ``covered``) and
    run facts (markets, seconds)."""
    from workbench.data import ingest, simulate
    from workbench.features import indicators as F
    from workbench.twin import steps as S

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="rulecard-", dir=work))
    try:
        res = simulate.simulate(cfg, tmp)
        data = ingest.load_wallet(res.wallet_dir, progress=False)
        bars1 = ingest.rebar(data, "1min")
        ohlcv = F.ohlcv(bars1)
        feat = F.price_features(ohlcv, 0.4, ffd_threshold=1e-3, vol_window=60, rsi_window=14, bb_window=20,
                                volume_window=240)
        steps = S.build_steps(data.events, data.positions, ingest.rebar(data, "1min", "5s"), feat, notional=5000.0)
        steps = terms.with_quote_age(steps, data.events)
        flow = steps["flow"].to_numpy()
        th = S.fit_action_thresholds(flow)
        sigma, _ = terms.volatility(ohlcv)
        d = terms.policy_data(steps, S.classify_flow(flow, th), strong=th.strong, sigma=sigma,
                              sigma_noise=sigma_noise, quote_noise=quote_noise, n_draws=n_draws)
        fit = search.fit_card(d, candidates=candidates, covariance=False, **(fit_kw or {}))
        fine = terms.policy_data(steps, S.classify_flow(flow, th), strong=th.strong, sigma=sigma,
                                 sigma_noise=d.sigma_noise, quote_noise=d.quote_noise, quote_lag=d.quote_lag,
                                 n_draws=n_draws_final)
        fit = search.refit(fit, fine)
        tab = C.table(fit, truth_values=C.truth(cfg.trader))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tab, {"markets": d.n_markets, "seconds": time.perf_counter() - t0, "dropped": sorted(fit.fit.spec.dropped)}


def recovery(configs: dict[str, Any], **kw: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`simulated_card` for each named configuration. Returns the long table (run, parameter, estimate,
    lo, hi, true, covered) and the coverage per parameter (share of runs whose interval holds the truth; a
    parameter the card dropped counts as covered only when its true value is the null), and run facts."""
    rows, facts = [], []
    for name, cfg in configs.items():
        tab, info = simulated_card(cfg, **kw)
        t = tab.reset_index()[["parameter", "estimate", "lo", "hi", "true", "covered"]].assign(run=name)
        truth = C.truth(cfg.trader)
        for g in info["dropped"]:  # a dropped term is an estimate of 0 (or 1 for the damp, 100 % participation)
            pname = {"exit": "exit_push", "late": "late_damp", "activity": "participation_logit",
                     "conviction": "size_conviction"}.get(g, g if g in C.ROWS else f"cand_{g}")
            null = {"late_damp": 1.0, "participation_logit": 1.0}.get(pname, 0.0)
            t = pd.concat([t, pd.DataFrame([{"parameter": pname, "estimate": null, "lo": null, "hi": null,
                                             "true": truth.get(pname, math.nan), "run": name,
                                             "covered": bool(abs(truth.get(pname, math.nan) - null) < 1e-12)}])])
        rows.append(t)
        facts.append({"run": name, **info})
    long = pd.concat(rows, ignore_index=True)
    cov = long.groupby("parameter").agg(runs=("covered", "size"), coverage=("covered", "mean"),
                                        mean_estimate=("estimate", "mean"), mean_true=("true", "mean"))
    return long, cov, pd.DataFrame(facts).set_index("run")


def calibration(long: pd.DataFrame, level: float = 0.95, target: float = 0.9) -> dict[str, Any]:
    """How to read a coverage table: pooled coverage, per-parameter bias, and what calibrated intervals would score.

    Parameters
    ----------
    long : DataFrame
        :func:`recovery`'s long table (one row per run and parameter: ``estimate``, ``lo``, ``hi``, ``true``,
        ``covered``); rows without an interval (a dropped term) count in the pooled coverage only.
    level : nominal level of the intervals.
    target : the share of runs each parameter's interval must cover.

    Returns
    -------
    dict
        ``pooled`` (covered share of every run x parameter pair, Wilson 95 % interval, pairs), ``bias`` (per
        parameter: mean standardised error ``(estimate - true) / se`` over runs with ``se = (hi - lo) / (2 z)``,
        and the share of runs below the truth; a calibrated interval gives a mean near 0 and a share near 1/2,
        a consistent sign over runs is a bias, not noise), and ``target_probability``: the chance that
        perfectly calibrated ``level`` intervals meet the target for every parameter with this many runs,
        ``P(Binomial(runs, level) >= ceil(target x runs)) ** parameters`` (parameters taken as independent) --
        the yardstick's own power.
    """
    from scipy.stats import binom, norm

    from workbench.metrics import wilson_interval

    cov = long["covered"].astype(bool)
    lo, hi = wilson_interval(int(cov.sum()), len(cov))
    z = float(norm.ppf((1 + level) / 2))
    iv = long[(long["hi"] > long["lo"]) & long["true"].notna()]
    se = (iv["hi"] - iv["lo"]) / (2 * z)
    zs = ((iv["estimate"] - iv["true"]) / se).groupby(iv["parameter"])
    below = (iv["estimate"] < iv["true"]).groupby(iv["parameter"]).mean()
    bias = pd.DataFrame({"mean_z": zs.mean(), "runs": zs.size(), "share_below_truth": below})
    runs = int(long.groupby("parameter").size().median()) if len(long) else 0
    k = int(long["parameter"].nunique())
    need = math.ceil(target * runs - 1e-9)
    p_one = float(binom.sf(need - 1, runs, level)) if runs else float("nan")
    return {"pooled": {"coverage": float(cov.mean()) if len(cov) else float("nan"), "ci": [float(lo), float(hi)],
                       "pairs": int(len(cov)), "nominal": level},
            "bias": bias, "runs_per_parameter": runs, "parameters": k,
            "target_probability": p_one ** k if runs else float("nan"), "one_parameter_probability": p_one}


def population(base: Any, n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` simulated traders with hidden parameters drawn around ``base``'s (one in three ignores momentum,
    so model choice must drop a term); each with its own simulation seed."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        tp = replace(base.trader, beta_edge=float(rng.uniform(0.3, 0.8)),
                     beta_momentum=0.0 if i % 3 == 2 else float(rng.uniform(0.2, 0.6)),
                     beta_inventory=float(rng.uniform(1.0, 3.0)), exit_push=float(rng.uniform(1.5, 3.5)),
                     take_profit=float(np.round(rng.uniform(0.06, 0.20), 3)),
                     stop_loss=float(np.round(rng.uniform(0.08, 0.25), 3)), late_damp=float(rng.uniform(0.2, 0.7)),
                     participation=float(rng.uniform(0.6, 0.95)))
        out[f"trader {i + 1}"] = replace(base, seed=int(base.seed) + 1000 + i, trader=tp)
    return out


def real_wallet_card(trades: pd.DataFrame, wallet: str, step_s: int = 10) -> dict[str, Any]:
    """A multinomial logit (statsmodels ``MNLogit``) of a real wallet's 10-second steps in 15-minute markets:
    nothing / buy Up / buy Down, on the wallet's own last fill price (the Up-equivalent, cents from 50), its
    share imbalance (Up - Down shares, per 100) and the minutes left. These exports hold no quotes and no BTC
    bars, so mispricing and momentum cannot be formed; each term's likelihood-ratio test says whether it is
    kept. Returns the coefficient table, the tests, and the sample (markets, fills, hours)."""
    import statsmodels.api as sm
    from scipy.stats import chi2

    t = trades[(trades["wallet"] == wallet) & trades["slug"].str.contains("-15m-")].sort_values("t")
    rows = []
    for slug, g in t.groupby("slug", sort=True):
        start, end = int(g["market_start"].iloc[0]), int(g["market_end"].iloc[0])
        gt = g["t"].to_numpy()
        up = np.where(g["outcome"] == "Up", g["size"], 0.0).cumsum()
        dn = np.where(g["outcome"] == "Down", g["size"], 0.0).cumsum()
        mark = g["up_equiv_price"].to_numpy()
        for s in range(start, end, step_s * 1000):
            j = np.searchsorted(gt, s, side="left") - 1
            inside = (gt >= s) & (gt < s + step_s * 1000)
            qty = g["up_equiv_qty"].to_numpy()[inside].sum()
            rows.append({"slug": slug, "y": 0 if not inside.any() else (1 if qty > 0 else 2),
                         "price_c": (mark[j] if j >= 0 else 0.5) * 100 - 50,
                         "imbalance": ((up[j] - dn[j]) if j >= 0 else 0.0) / 100, "minutes_left": (end - s) / 60000})
    df = pd.DataFrame(rows)
    sample = {"wallet": wallet, "markets": int(df["slug"].nunique()) if len(df) else 0, "steps": len(df),
              "fills": int(len(t)), "hours": float(len(df) * step_s / 3600)}
    names = ["price_c", "imbalance", "minutes_left"]
    counts = df["y"].value_counts() if len(df) else pd.Series(dtype=int)
    n_up, n_down = int(counts.get(1, 0)), int(counts.get(2, 0))
    if min(n_up, n_down) < 10:  # about ten events per outcome and term is the least a logit needs
        return {"sample": sample, "table": pd.DataFrame(), "tests": pd.DataFrame(),
                "note": f"too few buys to fit ({n_up} Up, {n_down} Down steps)"}
    X = sm.add_constant(df[names])
    full = sm.MNLogit(df["y"], X).fit(disp=0, maxiter=200)
    tests = []
    for n in names:
        r = sm.MNLogit(df["y"], X.drop(columns=n)).fit(disp=0, maxiter=200)
        lr = 2 * (full.llf - r.llf)
        tests.append({"term": n, "LR": lr, "df": 2, "p": float(chi2.sf(lr, 2))})
    ci = full.conf_int()
    tab = []
    for j, outcome in enumerate(["buy Up", "buy Down"]):
        for n in ["const"] + names:
            tab.append({"outcome": outcome, "term": n, "coef": float(full.params.iloc[:, j][n]),
                        "lo": float(ci.loc[(str(j + 1), n), "lower"]), "hi": float(ci.loc[(str(j + 1), n), "upper"])})
    return {"sample": sample, "table": pd.DataFrame(tab), "tests": pd.DataFrame(tests),
            "shares": df["y"].value_counts(normalize=True).sort_index().rename({0: "none", 1: "buy Up", 2: "buy Down"})}
