"""A simulated population of wallets in one bucket layout, with the hidden truth of who is skilled.

The markets (BTC path, market-maker quotes, background fills, bars, resolutions) are simulated once by
:func:`workbench.data.simulate.simulate_market`; every wallet then trades a share of them by its own hidden
rule and gets one seed-format file per market it traded, holding the market's records and its own fills,
exactly as a real ``merged_trades/<address>/`` folder does. Kinds of wallet:

``skilled``      buys Up when the true fair value exceeds the ask by at least its edge (Down symmetrically):
                 positive expected P&L.
``latency_arb``  the same comparison, but only against quotes older than a few seconds (stale quotes).
``copy``         repeats a skilled wallet's fills after a delay of 5-40 s at the quote then in force.
``favourite``    buys the side the market prices above 50 % once per market: about the spread's loss.
``noise``        buys a random side at random times: the spread's loss.

The truth (kind, parameters, the leader of a copy-trader) goes to ``simulator_truth/population.parquet``: for
evaluation only, never read by a fit.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from workbench import atomic
from workbench.data.ledger import DOWN, UP
from workbench.data.simulate import (_WARMUP_S, MARKET_SECONDS, SimConfig, asset_config, fair_up, simulate_market,
                                     simulate_path)

KINDS = ("skilled", "latency_arb", "copy", "favourite", "noise")
SKILLED_KINDS = ("skilled", "latency_arb")  # positive expected edge by construction
_TYPE_ORDER = {"bar": 0, "price_change": 1, "last_trade_price": 2, "trade": 3, "resolution": 4}


@dataclass(frozen=True)
class PopulationConfig:
    """A bucket of ``n_wallets`` wallets over the markets of ``market`` (its trader is switched off).

    ``shares`` are the kinds' shares of the wallets (skilled, latency_arb, copy, favourite, noise); each
    wallet trades in a share of the markets drawn uniformly from ``participation``, whatever its kind (so
    activity alone does not reveal skill; a copy-trader trades where its leader does).
    """

    n_wallets: int = 500
    market: SimConfig = SimConfig(days=30.0, seed=7)
    seed: int = 1
    shares: tuple[float, float, float, float, float] = (0.03, 0.02, 0.03, 0.22, 0.70)
    participation: tuple[float, float] = (0.01, 0.06)
    edge_range: tuple[float, float] = (0.02, 0.05)  # skilled wallets' required edge (probability units)
    stale_s: float = 4.0  # a latency arbitrageur trades only against quotes at least this old
    size_median: float = 40.0  # shares per fill (log-normal, sd 0.5)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return orjson.loads(orjson.dumps(asdict(self)))


def wallet_address(seed: int, i: int) -> str:
    """Deterministic pseudo-address of population wallet ``i``."""
    return "0x" + hashlib.sha256(f"workbench-population-{seed}-{i}".encode()).hexdigest()[:40]


@dataclass
class PopulationResult:
    """Where the bucket went and what it holds."""

    root: Path
    truth: pd.DataFrame
    n_files: int
    n_events: int
    seconds: float


def _wallets(cfg: PopulationConfig) -> pd.DataFrame:
    rng = np.random.default_rng([cfg.seed, 0])
    counts = np.floor(np.asarray(cfg.shares) / sum(cfg.shares) * cfg.n_wallets).astype(int)
    counts[-1] += cfg.n_wallets - counts.sum()
    kind = np.repeat(np.arange(len(KINDS)), counts)
    rng.shuffle(kind)
    skilled = np.flatnonzero(kind == 0)
    rows = []
    for i, k in enumerate(kind):
        rows.append({"wallet": wallet_address(cfg.seed, i), "kind": KINDS[k],
                     "participation": float(rng.uniform(*cfg.participation)),
                     "edge": float(rng.uniform(*cfg.edge_range)) if k in (0, 1) else np.nan,
                     "delay_s": float(rng.uniform(5, 40)) if k == 2 else np.nan,
                     "leader": (wallet_address(cfg.seed, int(rng.choice(skilled))) if k == 2 and len(skilled)
                                else None),
                     "skilled": KINDS[k] in SKILLED_KINDS})
    return pd.DataFrame(rows)


def _quote_index(events: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = [e for e in events if e["type"] == "price_change"]
    return (np.array([e["t"] for e in q], dtype=np.int64), np.array([e["bid"] for e in q]),
            np.array([e["ask"] for e in q]))


def _fill(t: int, up: bool, qt: np.ndarray, bid: np.ndarray, ask: np.ndarray, size: float) -> dict[str, Any]:
    """A BUY of Up at the ask, or of Down at 1 - bid, at the quote in force at ``t`` (ms)."""
    j = max(int(np.searchsorted(qt, t, side="right")) - 1, 0)
    px = float(ask[j]) if up else round(1.0 - float(bid[j]), 2)
    size = round(size, 2)
    return {"t": int(t), "type": "trade", "outcome": UP if up else DOWN, "side": "BUY", "price": px,
            "size": size, "usdc": round(px * size, 4)}


def simulate_population(cfg: PopulationConfig, root: str | os.PathLike[str], *, progress: bool = False
                        ) -> PopulationResult:
    """Write the bucket ``root/merged_trades/<address>/<slug>_prices.json`` and the hidden truth
    ``root/simulator_truth/population.parquet`` (both replaced as a whole: written aside, then renamed)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    root = Path(root)
    market_cfg = replace(cfg.market, trader=replace(cfg.market.trader, participation=0.0))
    wallets = _wallets(cfg)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "simulator_truth").mkdir(parents=True)
    rng = np.random.default_rng([cfg.seed, 1])
    kinds = wallets["kind"].to_numpy()
    part = wallets["participation"].to_numpy()
    edge = wallets["edge"].to_numpy()
    made_dirs: set[str] = set()
    n_files = n_events = 0
    pnl_rows = []
    for asset in market_cfg.assets:  # every underlying's markets, each on its own path
        acfg = asset_config(market_cfg, asset)
        price, sigma, regime = simulate_path(acfg)
        for k in tqdm(range(market_cfg.n_markets), desc=f"{asset} markets", disable=not progress):
            out = simulate_market(acfg, k, price, sigma, regime)
            base = [e for e in out.events if e["type"] != "trade"]
            s_ms = int(out.summary["start"])
            i0 = _WARMUP_S + k * MARKET_SECONDS  # the path's index of the market's open
            p_start = float(out.summary["price_start"])
            up_won = out.summary["winner"] == UP
            qt, bid, ask = _quote_index(base)
            active = rng.random(len(wallets)) < part
            fills: dict[int, list[dict[str, Any]]] = {}
            for w in np.flatnonzero(active & np.isin(kinds, SKILLED_KINDS)):
                secs = np.arange(5 + rng.integers(0, 30), MARKET_SECONDS - 60, 30)
                ms = s_ms + secs * 1000
                j = np.maximum(np.searchsorted(qt, ms, side="right") - 1, 0)
                fair = fair_up(price[i0 + secs], p_start, sigma[i0 + secs], MARKET_SECONDS - secs.astype(float))
                age = (ms - qt[j]) / 1000.0
                ok = age >= cfg.stale_s if kinds[w] == "latency_arb" else np.ones(len(secs), dtype=bool)
                buy_up = ok & (fair - ask[j] > edge[w])
                buy_dn = ok & (bid[j] - fair > edge[w])
                for i in np.flatnonzero(buy_up | buy_dn)[:4]:  # at most four fills a market
                    size = cfg.size_median * math.exp(rng.normal(0.0, 0.5))
                    fills.setdefault(int(w), []).append(
                        _fill(int(ms[i] + rng.integers(200, 1200)), bool(buy_up[i]), qt, bid, ask, size))
            leaders = {wallets.at[w, "wallet"]: w for w in fills}
            for w in np.flatnonzero(kinds == "copy"):
                lw = leaders.get(wallets.at[w, "leader"])
                if lw is None:
                    continue
                for f in fills[lw]:
                    t = f["t"] + int(wallets.at[w, "delay_s"] * 1000)
                    if t < s_ms + MARKET_SECONDS * 1000 - 1000:
                        fills.setdefault(int(w), []).append(_fill(t, f["outcome"] == UP, qt, bid, ask, f["size"] * 0.5))
            for w in np.flatnonzero(active & np.isin(kinds, ("favourite", "noise"))):
                n = 1 if kinds[w] == "favourite" else int(rng.integers(1, 4))
                for t in np.sort(s_ms + rng.integers(5_000, (MARKET_SECONDS - 30) * 1000, size=n)):
                    j = max(int(np.searchsorted(qt, t, side="right")) - 1, 0)
                    up = (bid[j] + ask[j]) / 2 > 0.5 if kinds[w] == "favourite" else bool(rng.random() < 0.5)
                    size = cfg.size_median * math.exp(rng.normal(0.0, 0.5))
                    fills.setdefault(int(w), []).append(_fill(int(t), bool(up), qt, bid, ask, size))
            for w, own in fills.items():
                address = wallets.at[w, "wallet"]
                folder = tmp / "merged_trades" / address
                if address not in made_dirs:
                    folder.mkdir(parents=True)
                    made_dirs.add(address)
                events = sorted(base + own, key=lambda e: (e["t"], _TYPE_ORDER[e["type"]]))
                (folder / f"{out.summary['slug']}_prices.json").write_bytes(
                    orjson.dumps({"slug": out.summary["slug"], "prices": events}))
                n_files += 1
                n_events += len(events)
                pnl = sum(f["size"] * ((1.0 if (f["outcome"] == UP) == up_won else 0.0) - f["price"]) for f in own)
                pnl_rows.append({"wallet": address, "slug": out.summary["slug"], "true_pnl": pnl, "fills": len(own)})
    truth = wallets.merge(pd.DataFrame(pnl_rows).groupby("wallet").agg(true_pnl=("true_pnl", "sum"),
                                                                      markets=("slug", "size")),
                          on="wallet", how="left").fillna({"true_pnl": 0.0, "markets": 0})
    truth.to_parquet(tmp / "simulator_truth" / "population.parquet", index=False)
    atomic.write_json(tmp / "simulator_truth" / "population.json",
                      {"config": cfg.to_dict(), "n_files": n_files, "n_events": n_events,
                       "note": "Hidden truth of the simulator: for evaluation only."})
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return PopulationResult(root, truth, n_files, n_events, time.perf_counter() - t0)


def load_population_truth(root: str | os.PathLike[str]) -> pd.DataFrame:
    """The hidden kinds and parameters of a simulated bucket (evaluation only)."""
    return pd.read_parquet(Path(root) / "simulator_truth" / "population.parquet")
