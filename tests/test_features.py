"""Yang-Zhang volatility and indicators: published values, Monte Carlo accuracy, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import features as F


def test_yz_k_published_values():
    assert F.yz_k(20) == pytest.approx(0.139044, abs=5e-7)
    assert F.yz_k(252) == pytest.approx(0.144806, abs=5e-7)


def _ohlc_days(n_days: int, sigma: float, drift: float, steps: int, seed: int, overnight_share: float = 0.25
               ) -> pd.DataFrame:
    """Daily OHLC from a Brownian path sampled ``steps`` times a day, with an opening jump carrying
    ``overnight_share`` of the daily variance; total daily variance ``sigma**2``; log drift per day."""
    rng = np.random.default_rng(seed)
    s_on = sigma * np.sqrt(overnight_share)
    s_in = sigma * np.sqrt(1 - overnight_share)
    jumps = rng.normal(drift * overnight_share, s_on, size=n_days)
    intraday = rng.normal(drift * (1 - overnight_share) / steps, s_in / np.sqrt(steps), size=(n_days, steps))
    path = np.cumsum(intraday, axis=1)  # log price relative to the open
    opens = np.cumsum(jumps + np.r_[0.0, path[:-1, -1]])  # open_t = close_{t-1} + jump_t
    rel = np.concatenate([np.zeros((n_days, 1)), path], axis=1)
    return pd.DataFrame({"open": np.exp(opens), "high": np.exp(opens + rel.max(axis=1)),
                         "low": np.exp(opens + rel.min(axis=1)), "close": np.exp(opens + path[:, -1])})


@pytest.fixture(scope="module")
def mc_paths():
    return (_ohlc_days(4000, 0.01, 0.0, 2000, seed=1), _ohlc_days(4000, 0.01, 0.002, 2000, seed=1))


def test_yang_zhang_monte_carlo_unbiased_and_drift_independent(mc_paths):
    flat, drifted = mc_paths
    est = F.yang_zhang(flat, window=20).dropna()
    assert est.mean() == pytest.approx(0.01, rel=0.03)  # within +-3% of sigma = 1%/day
    est_drift = F.yang_zhang(drifted, window=20).dropna()
    assert abs(est_drift.mean() / est.mean() - 1) < 0.02  # a drift of 0.2%/day moves it < 2%
    # close-to-close on the same paths is unbiased too but much noisier: YZ is the efficient one
    cc = F.close_to_close(flat["close"], 20).dropna()
    assert est.std() < 0.8 * cc.std()


def test_yang_zhang_by_hand_small_window():
    df = pd.DataFrame({"open": [100, 101, 99, 100.5], "high": [102, 103, 101, 101.5],
                       "low": [99, 100, 98, 99.5], "close": [101, 100, 100, 101]}, dtype=float)
    n = 3
    o = np.log(df["open"] / df["close"].shift(1))[1:]
    c = np.log(df["close"] / df["open"])[1:]
    h, lo, op, cl = (np.log(df[k])[1:] for k in ("high", "low", "open", "close"))
    rs = ((h - cl) * (h - op) + (lo - cl) * (lo - op)).mean()
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    expected = np.sqrt(o.var(ddof=1) + k * c.var(ddof=1) + (1 - k) * rs)
    got = F.yang_zhang(df, window=n)
    assert got.iloc[:3].isna().all() and got.iloc[3] == pytest.approx(expected, rel=1e-12)
    assert F.yang_zhang(df, n, periods_per_year=252).iloc[3] == pytest.approx(expected * np.sqrt(252))


def test_indicators_are_ta_outputs_and_bounded():
    import ta

    close = pd.Series(np.exp(np.random.default_rng(2).normal(0, 0.01, 500).cumsum()) * 100)
    pd.testing.assert_series_equal(F.rsi(close, 14), ta.momentum.RSIIndicator(close, 14).rsi(), check_names=False)
    r = F.rsi(close).dropna()
    assert ((r >= 0) & (r <= 100)).all()
    m = F.macd(close)
    np.testing.assert_allclose(m["macd_hist"], m["macd"] - m["macd_signal"], equal_nan=True)
    bb = F.bollinger(close, 20)
    mid = close.rolling(20).mean()
    np.testing.assert_allclose(bb["bb_mid"], mid, equal_nan=True)
    sd = close.rolling(20).std(ddof=0)  # ta's Bollinger uses the population standard deviation
    np.testing.assert_allclose(bb["bb_width"], 4 * sd / mid, rtol=1e-10, equal_nan=True)


def test_volume_zscore_by_hand():
    v = pd.Series([1.0, 2.0, 3.0, 4.0, 10.0])
    z = F.volume_zscore(v, window=4)
    assert z.iloc[:3].isna().all()
    assert z.iloc[3] == pytest.approx((4 - 2.5) / np.std([1, 2, 3, 4], ddof=1))
    assert z.iloc[4] == pytest.approx((10 - 4.75) / np.std([2, 3, 4, 10], ddof=1))
    assert np.isnan(F.volume_zscore(pd.Series([5.0] * 6), 3).iloc[-1])  # constant volume: undefined


def _bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(rng.normal(0, 0.01, n).cumsum())
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.lognormal(2, 0.5, n)})


@settings(max_examples=30, deadline=None)
@given(n=st.integers(140, 260), cut=st.floats(0.3, 0.95), seed=st.integers(0, 10**6),
       mode=st.sampled_from(["change", "append"]))
def test_every_feature_is_causal(n, cut, seed, mode):
    """Changing or appending bars after t never changes any feature at or before t."""
    bars = _bars(n, seed)
    t = int(cut * (n - 1))
    other = bars.copy()
    if mode == "change":
        other.iloc[t + 1:] = _bars(n - t - 1, seed + 1).to_numpy() * 1.7
    else:
        other = pd.concat([bars, _bars(15, seed + 2)], ignore_index=True)
    kw = {"vol_window": 10, "rsi_window": 14, "bb_window": 20, "volume_window": 30}
    a = F.price_features(bars, 0.4, **kw).iloc[: t + 1]
    b = F.price_features(other, 0.4, **kw).iloc[: t + 1]
    pd.testing.assert_frame_equal(a, b)
    if t > 130:  # the windows are full by then: the comparison is not between empty rows
        assert a.iloc[-1].notna().sum() >= 10
