# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (workbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Ingestion: from wallet files to trades, positions and bars
#
# **What this notebook answers.** What does the raw data of a Polymarket "Bitcoin Up or Down" 15-minute
# wallet look like; what did the trader do (when, which side, how much); what were their inventory and
# P&L at every moment, computed only from what was known at that moment; and what happens to input that
# is broken. Everything later in the chain reads the tables this notebook writes to
# `data/processed/01_ingestion/`.
#
# **The data.** Real per-wallet files are private, so the default data is a simulation written in exactly
# their format (see `workbench/simulate.py`): one JSON file per market,
# `data/raw/merged_trades/<address>/btc-updown-15m-<start>_prices.json`, holding the market maker's quotes
# (`price_change`), other wallets' fills (`last_trade_price`), the studied wallet's fills (`trade`),
# one-minute BTC/USD bars (`bar`) and the market's `resolution`. The simulated trader follows a hidden
# policy; its true action probabilities are stored apart (`data/raw/simulator_truth/`) and are never read
# here. The last section ingests **real** fills of two public wallets (Polymarket Data-API exports).

# %% tags=["parameters"]
WALLET = ""  # wallet folder under data/raw/merged_trades (empty: the only one there, the simulated trader)
BAR_INTERVAL = "15min"  # bar size of data/processed/01_ingestion/bars.parquet (pandas offset)
REAL_DATA = "polymarket_wallets"  # folder under data/external with Data-API CSV exports (empty: skip)
N_EXAMPLE_MARKETS = 2  # markets drawn in detail
POPULATION_WALLETS = 500  # simulated wallets in the bucket of section 9 (0: skip the section)
POPULATION_DAYS = 30.0  # days of markets they trade in
POPULATION_FDR = 0.10  # false-discovery rate of the leaderboard's discoveries
READ_WORKERS = 0  # processes reading the bucket (0: one per core)
ASSETS = ["btc"]  # underlyings simulated and studied (btc, eth, sol, xrp, doge); every asset in the files is ingested

# %%
import pandas as pd
from IPython.display import display

from workbench import config, plots
from workbench.data import figures, ingest

P = config.paths().ensure()
wallet_dir = ingest.find_wallet_dir(P.merged_trades, WALLET)
OUT = P.processed / "01_ingestion"
pd.set_option("display.max_columns", 40, "display.width", 200)
print(f"wallet folder: {wallet_dir}\nfiles: {sum(1 for _ in wallet_dir.glob('*.json')):,}\noutput: {OUT}")

# %% [markdown]
# ## 1. The raw format
#
# One market file, as written: every record has `t` (UTC milliseconds at which it became observable) and
# `type`. A `bar` is stamped with the last millisecond of its minute, so it is never visible before it
# closed.

# %%
first_file = sorted(wallet_dir.glob("*.json"))[0]
display(ingest.preview_file(first_file, n=10))

# %% [markdown]
# ## 2. Ingest and reconcile
#
# `load_wallet` validates every record (types, ranges, timestamps, the market window, duplicates) and
# puts what it cannot use into a quarantine table with the file, the record and the reason. Nothing is
# dropped silently: **records read = kept + quarantined**, per file and in total, and `check()` raises if
# that does not hold.

# %%
data = ingest.load_wallet(wallet_dir, bar_interval=BAR_INTERVAL)
reconciliation = data.check()
display(pd.Series(reconciliation, name="count").to_frame())
display(ingest.quarantine_view(data))
written = data.write(OUT)
print({name: len(getattr(data, name)) for name in data.TABLES})
display(ingest.asset_summary(data, ASSETS))  # one row per underlying; an asset of ASSETS without markets is an error

# %% [markdown]
# ## 3. The trader
#
# Fills are normalised to **Up-equivalent exposure**: buying Down at price *p* is economically close to
# selling Up at 1 − *p*, so every fill gets a signed `up_equiv_qty` and an `up_equiv_price`.

# %%
display(ingest.wallet_summary(data).T)
display(data.trades[["ts", "slug", "outcome", "side", "price", "size", "up_equiv_qty", "up_equiv_price",
                     "bid_up", "ask_up", "time_left_s"]].head(10))
fig = figures.activity(data.trades, title="Simulated trader: activity")
plots.save(fig, "01_activity");

# %% [markdown]
# ## 4. Inventory and P&L over time
#
# The position state after each fill, merge, redemption or settlement (`positions.parquet`), and at every
# bar close (`bars.parquet`). Unrealised P&L is marked at the last quote **at or before** the row's time;
# a bar uses only records strictly before its close.

# %%
display(data.positions[["ts", "slug", "event", "q_up", "q_down", "net_up_equiv", "entry_price_up_equiv", "mark_up",
                        "realized_pnl", "unrealized_pnl", "cum_realized_wallet", "time_since_entry_s"]].head(12))
fig = figures.inventory_pnl(data.bars, title="Simulated trader: inventory and cumulative P&L")
plots.save(fig, "01_inventory_pnl");

# %% [markdown]
# ## 5. Markets in detail: quotes around the trades
#
# The busiest markets: the Up bid/ask, the trader's fills (▲ adds Up exposure, ▼ removes it, at the
# Up-equivalent price) and BTC/USD against its opening level (dashed). Up wins if BTC ends at or above
# where it started. The interactive version (zoom, hover a fill) is shown below the first market and saved as a
# self-contained HTML file.

# %%
for i, slug in enumerate(ingest.busiest_markets(data.trades, N_EXAMPLE_MARKETS)):
    fig = figures.market_view(data.events, data.trades, slug)
    plots.save(fig, f"01_market_{i}")
    if i == 0:
        interactive = figures.market_view_interactive(data.events, data.trades, slug)
        plots.save(interactive, "01_market_0")  # self-contained HTML, for sharing
        plots.show(interactive)  # inline, zoomable: JupyterLab's plotly renderer

# %% [markdown]
# ## 6. Bars
#
# One row per bar: BTC OHLCV from the one-minute bars, the Up mid OHLC of the market quoted last in the
# bar, other wallets' and the trader's flow, and the trader's state at the close. Empty bars stay empty
# (NaN prices, zero counts): nothing is forward-filled.

# %%
display(plots.readable_times(data.bars.head(8)))
display(data.bars.describe().T[["count", "mean", "std", "min", "max"]])

# %% [markdown]
# ## 7. Bad input: the quarantine at work
#
# The project's test corpus (`tests/data/bad_input`) holds broken files and records of every kind the
# ingestion must survive: an empty file, truncated JSON, a file without `prices`, an unknown slug, an
# unsupported file type, NaN / negative / out-of-range prices and sizes, unknown event types, missing or
# mistyped fields, timestamps in seconds or without a timezone, crossed quotes, inconsistent bars,
# duplicates and out-of-order records, and a Data-API export with bad rows. Ingesting it must balance.

# %%
bad = ingest.load_wallet(P.root / "tests" / "data" / "bad_input")
display(pd.Series(bad.check(), name="count").to_frame())
display(bad.quarantine.assign(source_file=bad.quarantine["source_file"].str.split("/").str[-1])
        [["source_file", "level", "record", "line", "reason"]])
fig = figures.quarantine_reasons(bad.quarantine, title="Test corpus: quarantined files and records by reason")
plots.save(fig, "01_quarantine_reasons");

# %% [markdown]
# ## 8. Real wallets: Polymarket Data-API exports
#
# `data/external/polymarket_wallets/` holds real activity of two public wallets (gabagool22 and
# CRYINGLITTLEBABY) on BTC/ETH/SOL/XRP Up-or-Down markets, 2026-01-04 19:51 to 2026-01-05 03:54 UTC
# (MIT-licensed; source and attribution in its `SOURCE.txt`). The export has TRADE, MERGE, SPLIT, REDEEM
# and REWARD rows but no quotes, so marks come from fills, and a market's resolution is known only from
# a REDEEM or, when the last fill before the end priced one side at ≥ 0.9, inferred from that price
# (labelled as such). Markets without either stay open and are marked at the last fill.

# %%
if REAL_DATA:
    real = ingest.load_wallet(P.external / REAL_DATA, bar_interval=BAR_INTERVAL)
    display(pd.Series(real.check(), name="count").to_frame())
    display(ingest.wallet_summary(real).T)
    display(real.resolutions.groupby(["wallet", "resolution_source"]).size().unstack(fill_value=0))
    real.write(OUT / "real")
    fig = figures.activity(real.trades, title="Real wallets: activity")
    plots.save(fig, "01_real_activity")
    fig = figures.wallets_pnl(real.positions, real.resolutions)
    plots.save(fig, "01_real_pnl")

# %% [markdown]
# **What the real data shows, and what it cannot.** Both wallets only *buy* (no SELL rows) and buy both
# Up and Down of the same market, often within seconds: a pattern of collecting both sides below $1 in
# total and merging or redeeming, rather than of directional bets. Eight hours of two wallets are too few
# to estimate a policy; the simulated trader above is what the later notebooks learn from, and this
# section shows the pipeline works unchanged on real exports.

# %% [markdown]
# ## 9. Many wallets: whom to twin
#
# A user starts one step earlier than sections 1-7: with a bucket of `merged_trades/<address>/` folders for
# hundreds of wallets, and the question *which* wallet is worth learning from. A simulated bucket answers it
# where the truth is known: the same markets, traded by wallets of five hidden kinds - a few **skilled**
# ones (buy when the true fair value beats the ask by their edge), **latency arbitrageurs** (the same, against
# stale quotes only), **copy-traders** of a skilled wallet (a 5-40 s delay), **favourite** buyers and
# **noise** traders (the spread's loss). `workbench.data.population` writes it in the real layout;
# `read_events` ingests the whole root (in a process pool), and `workbench.data.leaderboard` ranks it.
#
# A raw leaderboard ranks by P&L; among hundreds of wallets the top of it is partly luck. Each wallet's mean
# P&L per market is tested against zero (one-sided t test over its markets), the p-values are adjusted with
# Benjamini-Hochberg across all wallets, and the ranking puts the **discoveries** first, ordered by the lower
# bound of their interval. The simulated kinds are read only to score the ranking.

# %%
if POPULATION_WALLETS:
    from workbench.data import leaderboard as lb
    from workbench.data import population

    pop = lb.bucket_study(P.raw, P.processed / "01_population", n_wallets=POPULATION_WALLETS,
                          days=POPULATION_DAYS, fdr=POPULATION_FDR, workers=READ_WORKERS or None, assets=ASSETS)
    board = pd.read_parquet(P.processed / "01_population" / "leaderboard.parquet")
    truth = population.load_population_truth(P.raw / "population")
    display(pd.json_normalize(pop, sep=" / ").T.rename(columns={0: "value"}))
    display(board.head(15).merge(truth[["wallet", "kind"]], on="wallet")
            [["rank", "naive_rank", "wallet", "kind", "markets", "pnl", "roc", "pnl_per_market", "pnl_per_market_lo",
              "pnl_per_market_hi", "sharpe_per_market", "win_rate", "q_value", "discovery"]])
    fig = figures.leaderboard(board, truth)
    plots.save(fig, "01_leaderboard")

# %% [markdown]
# **Reading the leaderboard.** The table above gives the bucket's size, the wall time of each step on this
# machine, and `against_truth`: the share of truly skilled wallets (skilled or latency arbitrageur) among the
# top *k* of each ranking (*k* = the number of skilled wallets) and the discoveries' false-discovery
# proportion. A discovery is a wallet whose edge the data shows beyond the luck expected among this many
# wallets; a skilled wallet that trades rarely may not be one, and the ranking then says so rather than
# guessing. Copy-traders earn part of their leader's edge and are not counted as skilled.
