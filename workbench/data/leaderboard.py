"""Whom to twin: a wallet leaderboard with intervals and a ranking that expects lucky wallets.

Among a thousand wallets, the best raw P&L is mostly luck: with 1,000 coin-flippers the top one wins far more
often than not. Each wallet's mean P&L per market is therefore tested against zero (one-sided t test over its
markets, the independent units), the p-values are adjusted for the number of wallets with the
Benjamini-Hochberg false-discovery rate (statsmodels' ``multipletests``), and the ranking puts the wallets the
data can tell apart from zero first, ordered by the lower bound of their interval, not by their point
estimate. Intervals are percentile bootstraps over each wallet's markets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from workbench.data.ledger import DOWN, UP
from workbench.data.tables import infer_resolutions

COLUMNS = ("wallet", "markets", "fills", "fills_per_market", "days_active", "capital", "pnl", "roc",
           "pnl_per_market", "pnl_per_market_lo", "pnl_per_market_hi", "sharpe_per_market", "sharpe_lo",
           "sharpe_hi", "win_rate", "win_rate_lo", "win_rate_hi", "t_stat", "p_value", "q_value", "discovery",
           "rank", "naive_rank")


def market_pnl(events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """P&L of every (wallet, market) from the wallets' own fills, settled at the resolution the data shows.

    A BUY of a side pays ``size * (1{side won} - price)``, a SELL ``size * (price - 1{side won})``; capital is
    the cash paid for buys. Markets whose winner the files do not show are left out and counted.

    Returns
    -------
    per_market : DataFrame, one row per (wallet, slug)
        ``wallet, slug, day, pnl, capital, fills``.
    counts : dict
        ``fills``, ``markets``, ``unresolved_markets``, ``unresolved_fills``.
    """
    res = infer_resolutions(events)[["wallet", "slug", "winner"]]
    fills = events.loc[events["type"] == "trade", ["wallet", "slug", "t", "outcome", "side", "price", "size", "usdc"]]
    fills = fills.merge(res, on=["wallet", "slug"], how="left")
    known = fills["winner"].isin([UP, DOWN]).to_numpy()
    won = (fills["outcome"] == fills["winner"]).to_numpy(dtype=float)
    buy = (fills["side"] == "BUY").to_numpy()
    size, price = fills["size"].to_numpy(), fills["price"].to_numpy()
    fills = fills.assign(pnl=np.where(buy, size * (won - price), size * (price - won)),
                         capital=np.where(buy, fills["usdc"].to_numpy(), 0.0),
                         day=pd.to_datetime(fills["t"], unit="ms", utc=True).dt.floor("D"))
    unresolved = fills[~known]
    per = (fills[known].groupby(["wallet", "slug"], sort=True)
           .agg(day=("day", "first"), pnl=("pnl", "sum"), capital=("capital", "sum"), fills=("pnl", "size"))
           .reset_index())
    counts = {"fills": int(len(fills)), "markets": int(len(per)),
              "unresolved_markets": int(unresolved.groupby(["wallet", "slug"]).ngroups),
              "unresolved_fills": int(len(unresolved))}
    return per, counts


def _bootstrap(pnl: np.ndarray, n_boot: int, rng: np.random.Generator
               ) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of mean P&L, Sharpe and win rate per market over resampled markets."""
    m = len(pnl)
    idx = rng.integers(0, m, size=(n_boot, m))
    s = pnl[idx]
    mean = s.mean(axis=1)
    sd = s.std(axis=1, ddof=1) if m > 1 else np.full(n_boot, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(sd > 0, mean / sd, np.nan)
    win = (s > 0).mean(axis=1)
    q = lambda x: (float(np.nanpercentile(x, 2.5)), float(np.nanpercentile(x, 97.5)))  # noqa: E731
    return {"pnl_per_market": q(mean), "sharpe": q(sharpe) if np.isfinite(sharpe).any() else (np.nan, np.nan),
            "win_rate": q(win)}


def leaderboard(events: pd.DataFrame, *, min_markets: int = 5, fdr: float = 0.10, n_boot: int = 2000,
                seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rank the wallets of ``events`` (a whole bucket) by what their P&L shows beyond luck.

    Parameters
    ----------
    events
        :func:`workbench.data.read_events` of a bucket (many ``<address>/`` folders).
    min_markets
        Wallets with fewer resolved markets are listed but not tested (their t test has no power).
    fdr
        Benjamini-Hochberg false-discovery rate for ``discovery`` (wallets whose mean P&L per market is
        positive beyond what the number of wallets tested explains).

    Returns
    -------
    board : DataFrame, one row per wallet, sorted by ``rank`` (see :data:`COLUMNS`)
        ``rank``: discoveries first, by the lower bound of mean P&L per market; then the other tested wallets
        by p-value; then those with fewer than ``min_markets`` markets.
        ``naive_rank``: by total P&L (what a raw leaderboard shows).
    info : dict
        Counts, the number tested and discovered, and the rule used.
    """
    from statsmodels.stats.multitest import multipletests

    per, counts = market_pnl(events)
    rng = np.random.default_rng(seed)
    rows = []
    for wallet, g in per.groupby("wallet", sort=True):
        pnl, cap = g["pnl"].to_numpy(), g["capital"].to_numpy()
        m = len(pnl)
        sd = float(pnl.std(ddof=1)) if m > 1 else np.nan
        mean = float(pnl.mean())
        t = mean / (sd / np.sqrt(m)) if m > 1 and sd > 0 else np.nan
        ci = _bootstrap(pnl, n_boot, rng) if m >= 2 else {k: (np.nan, np.nan) for k in
                                                                ("pnl_per_market", "sharpe", "win_rate")}
        rows.append({"wallet": wallet, "markets": m, "fills": int(g["fills"].sum()),
                     "fills_per_market": float(g["fills"].mean()), "days_active": int(g["day"].nunique()),
                     "capital": float(cap.sum()), "pnl": float(pnl.sum()),
                     "roc": float(pnl.sum() / cap.sum()) if cap.sum() > 0 else np.nan,
                     "pnl_per_market": mean, "pnl_per_market_lo": ci["pnl_per_market"][0],
                     "pnl_per_market_hi": ci["pnl_per_market"][1],
                     "sharpe_per_market": mean / sd if sd and sd > 0 else np.nan,
                     "sharpe_lo": ci["sharpe"][0], "sharpe_hi": ci["sharpe"][1],
                     "win_rate": float((pnl > 0).mean()), "win_rate_lo": ci["win_rate"][0],
                     "win_rate_hi": ci["win_rate"][1], "t_stat": t,
                     "p_value": float(stats.t.sf(t, m - 1)) if np.isfinite(t) else np.nan})
    board = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("q_value", "discovery", "rank", "naive_rank")])
    tested = (board["markets"] >= min_markets) & board["p_value"].notna()
    board["q_value"] = np.nan
    board["discovery"] = False
    if tested.any():
        reject, q, _, _ = multipletests(board.loc[tested, "p_value"].to_numpy(), alpha=fdr, method="fdr_bh")
        board.loc[tested, "q_value"] = q
        board.loc[tested, "discovery"] = reject
    # discoveries by the lower bound of their interval; the other tested wallets by their evidence (p-value:
    # a bootstrap bound of a wallet with five lucky markets is high and means little); then the untested
    group = np.where(board["discovery"], 0, np.where(tested, 1, 2))
    key = np.where(group == 0, -board["pnl_per_market_lo"].fillna(-np.inf), board["p_value"].fillna(np.inf))
    order = board.assign(_g=group, _k=key).sort_values(["_g", "_k", "wallet"]).index
    board["rank"] = 0
    board.loc[order, "rank"] = np.arange(1, len(board) + 1)
    board["naive_rank"] = board["pnl"].rank(ascending=False, method="first").astype(int)
    board = board.sort_values("rank").reset_index(drop=True)
    info = {**counts, "wallets": int(len(board)), "tested": int(tested.sum()),
            "discoveries": int(board["discovery"].sum()), "fdr": fdr, "min_markets": min_markets,
            "test": "one-sided t test of mean P&L per market > 0 over each wallet's markets, "
                    "Benjamini-Hochberg across the wallets tested",
            "intervals": f"percentile bootstrap over markets, {n_boot} resamples, 95%"}
    return board[list(COLUMNS)], info


def against_truth(board: pd.DataFrame, truth: pd.DataFrame, k: int | None = None) -> dict[str, Any]:
    """How well the ranking finds the simulated skilled wallets (evaluation only).

    Precision at ``k`` (default: the number of truly skilled wallets) for the FDR ranking and the naive
    P&L ranking, and the discoveries' false-discovery proportion, each with a 95 % Wilson interval over the
    picks (``*_ci``).
    """
    b = board.merge(truth[["wallet", "kind", "skilled"]], on="wallet", how="left")
    b["skilled"] = b["skilled"].fillna(False).astype(bool)
    k = int(truth["skilled"].sum()) if k is None else int(k)
    top = b.nsmallest(k, "rank")
    naive = b.nsmallest(k, "naive_rank")
    disc = b[b["discovery"]]
    from workbench.metrics import wilson_interval as wilson  # each pick a Bernoulli draw of the ranking

    return {"k": k, "skilled_in_bucket": int(truth["skilled"].sum()),
            "precision_at_k": float(top["skilled"].mean()) if k else np.nan,
            "precision_at_k_ci": wilson(int(top["skilled"].sum()), len(top)),
            "naive_precision_at_k": float(naive["skilled"].mean()) if k else np.nan,
            "naive_precision_at_k_ci": wilson(int(naive["skilled"].sum()), len(naive)),
            "false_discovery_proportion_ci": wilson(int((~disc["skilled"]).sum()), len(disc)),
            "discoveries": int(len(disc)),
            "false_discovery_proportion": float((~disc["skilled"]).mean()) if len(disc) else 0.0,
            "skilled_found": int(disc["skilled"].sum()),
            "top_kinds": top["kind"].value_counts().to_dict(), "naive_top_kinds": naive["kind"].value_counts().to_dict()}


def bucket_study(raw_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, n_wallets: int = 500,
                 days: float = 30.0, seed: int = 1, workers: int | None = None, fdr: float = 0.10,
                 min_markets: int = 5, assets: Sequence[str] = ("btc",), progress: bool = False) -> dict[str, Any]:
    """Simulate a bucket of ``n_wallets`` wallets (kept when its settings are unchanged), ingest it, rank it
    and check the ranking against the hidden kinds (markets of every asset of ``assets``; a wallet's P&L and
    tests pool its markets of all assets); write ``leaderboard.parquet`` and ``metrics.json`` into
    ``out_dir`` (all or nothing). Returns the metrics.

    Wall times are measured here (simulation, ingestion, ranking); ``peak_rss_mib`` is the largest resident
    set of this process and of any reading worker since they started (``getrusage``), an upper bound on the
    steps' own peak.
    """
    import resource
    import time

    from workbench import atomic
    from workbench.data.parallel import default_workers
    from workbench.data.population import PopulationConfig, load_population_truth, simulate_population
    from workbench.data.read import read_events
    from workbench.data.schema import normalise_assets
    from workbench.data.simulate import SimConfig

    cfg = PopulationConfig(n_wallets=n_wallets, market=SimConfig(days=days, seed=7, assets=normalise_assets(assets)),
                           seed=seed)
    root = Path(raw_dir) / "population"
    meta_path = root / "simulator_truth" / "population.json"
    t0 = time.perf_counter()
    reused = meta_path.exists() and json.loads(meta_path.read_text())["config"] == cfg.to_dict()
    if not reused:
        simulate_population(cfg, root, progress=progress)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    events, quarantine, files = read_events(root / "merged_trades", progress=progress, workers=workers)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    board, info = leaderboard(events, fdr=fdr, min_markets=min_markets, seed=seed)
    t_rank = time.perf_counter() - t0
    truth = load_population_truth(root)
    check = against_truth(board, truth)
    mib = lambda who: resource.getrusage(who).ru_maxrss / 1024.0  # noqa: E731 (kilobytes on Linux)
    metrics = {"bucket": {"wallets": n_wallets, "days": days, "assets": list(cfg.market.assets), "files": int(len(files)), "events": int(len(events)),
                          "quarantined": int(len(quarantine)), "simulated_now": not reused},
               "seconds": {"simulate": round(t_sim, 2), "read_events": round(t_read, 2),
                           "leaderboard": round(t_rank, 2)},
               "events_per_second": round(len(events) / t_read),
               "workers": workers or default_workers(len(files)), "peak_rss_mib": round(max(mib(resource.RUSAGE_SELF),
                                                                          mib(resource.RUSAGE_CHILDREN)), 1),
               "leaderboard": info, "against_truth": check}

    def write(tmp: Path) -> None:
        board.to_parquet(tmp / "leaderboard.parquet", index=False)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))

    atomic.replace_folder(Path(out_dir), write)
    return metrics
