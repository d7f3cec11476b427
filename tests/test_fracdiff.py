"""FFD and the minimum-d search (AFML ch. 5): reference values, the book's snippet, statistical checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from references import frac_diff_ffd, get_weights_ffd

from workbench.data.external import load_afml_dollar_bars
from workbench.features import adf_point, ffd, ffd_weights, min_d


def test_weights_reference_values():
    assert len(ffd_weights(0.9, 1e-3)) == 12  # the mlfinlab reference test
    np.testing.assert_allclose(ffd_weights(0.9, 1e-3), get_weights_ffd(0.9, 1e-3)[::-1, 0], rtol=0, atol=0)
    np.testing.assert_allclose(ffd_weights(0.5, 1e-2), [1, -0.5, -0.125, -0.0625, -0.0390625, -0.02734375,
                                                       -0.0205078125, -0.01611328125, -0.013092041015625,
                                                       -0.0109100341796875])
    np.testing.assert_array_equal(ffd_weights(1.0, 1e-5), [1.0, -1.0])
    np.testing.assert_array_equal(ffd_weights(0.0, 1e-5), [1.0])
    with pytest.raises(ValueError):
        ffd_weights(-0.1)


def test_d_one_is_the_first_difference():
    x = pd.Series(np.random.default_rng(0).normal(size=500).cumsum() + 100)
    pd.testing.assert_series_equal(ffd(x, 1.0, 1e-3), x.diff(), check_names=False)


@pytest.mark.parametrize("d", [0.1, 0.35, 0.6, 0.9])
def test_matches_afml_snippet_5_3_on_dollar_bars(d):
    bars = load_afml_dollar_bars()[["close"]]
    ours = ffd(bars, d, 1e-4)["close"].dropna()
    ref = frac_diff_ffd(bars, d, 1e-4)["close"]
    assert ours.index.equals(ref.index)
    np.testing.assert_allclose(ours.to_numpy(), ref.to_numpy(), rtol=1e-12)


def test_dataframe_columns_are_differenced_along_time():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(300, 3)).cumsum(axis=0), columns=list("abc"))
    out = ffd(df, 0.4, 1e-3)
    assert out.shape == df.shape and list(out.columns) == list("abc")
    for c in df:
        pd.testing.assert_series_equal(out[c], ffd(df[c], 0.4, 1e-3))
    np.testing.assert_allclose(ffd(df.to_numpy(), 0.4, 1e-3), out.to_numpy(), equal_nan=True)


def test_nan_policy_leading_and_gaps():
    x = pd.Series(np.arange(1.0, 41.0))
    x.iloc[:5] = np.nan  # leading NaNs: fine, output starts K-1 after the first value
    x.iloc[20] = np.nan  # a gap: outputs whose window covers it are NaN, nothing forward-filled
    w = ffd_weights(0.5, 0.05)
    k = len(w)
    y = ffd(x, 0.5, 0.05)
    first_valid = 5 + k - 1
    assert y.iloc[:first_valid].isna().all() and np.isfinite(y.iloc[first_valid])
    assert y.iloc[20: 20 + k].isna().all() and np.isfinite(y.iloc[20 + k])
    assert y.iloc[first_valid] == pytest.approx(np.dot(w, x.iloc[first_valid - np.arange(k)]))
    with pytest.raises(ValueError, match="interior NaN"):
        ffd(x, 0.5, 0.05, gaps="raise")
    ffd(x.iloc[:20], 0.5, 0.05, gaps="raise")  # only leading NaNs: allowed


@settings(max_examples=40, deadline=None)
@given(n=st.integers(30, 200), cut=st.floats(0.1, 0.9), d=st.floats(0.05, 1.0), seed=st.integers(0, 10**6))
def test_ffd_no_lookahead(n, cut, d, seed):
    rng = np.random.default_rng(seed)
    x = pd.Series(rng.normal(size=n).cumsum())
    t = int(cut * n)
    changed = x.copy()
    changed.iloc[t + 1:] = rng.normal(size=n - t - 1) * 50
    appended = pd.concat([x, pd.Series(rng.normal(size=10))], ignore_index=True)
    base = ffd(x, d, 1e-3).iloc[: t + 1]
    pd.testing.assert_series_equal(ffd(changed, d, 1e-3).iloc[: t + 1], base)
    pd.testing.assert_series_equal(ffd(appended, d, 1e-3).iloc[: t + 1], base)


def test_large_input_uses_fft_and_stays_exact():
    x = np.random.default_rng(2).normal(size=200_000).cumsum() + 1e4
    w = ffd_weights(0.3, 1e-4)
    assert len(x) * len(w) > 2_000_000  # the overlap-add FFT path
    y = ffd(x, 0.3, 1e-4)
    idx = np.array([len(w) - 1, 50_000, 199_999])
    direct = np.array([np.dot(w, x[i - np.arange(len(w))]) for i in idx])
    np.testing.assert_allclose(y[idx], direct, rtol=1e-9)


# ------------------------------------------------------------------------------------------------
# minimum d
# ------------------------------------------------------------------------------------------------
def _frac_integrated(n: int, big_d: float, seed: int) -> np.ndarray:
    """(1 - B)^(-D) applied to white noise, via the MA(inf) weights psi_k = psi_{k-1} (k - 1 + D) / k."""
    eps = np.random.default_rng(seed).normal(size=n)
    psi = np.ones(n)
    k = np.arange(1, n)
    psi[1:] = np.cumprod((k - 1 + big_d) / k)
    return np.convolve(eps, psi)[:n]


def test_random_walk_fails_at_zero_passes_at_one():
    x = np.random.default_rng(3).normal(size=3000).cumsum()
    assert not adf_point(x, 0.0)["stationary"]
    assert adf_point(x, 1.0)["stationary"]


def test_stationary_ar1_needs_no_differencing():
    rng = np.random.default_rng(4)
    e = rng.normal(size=3000)
    x = np.zeros(3000)
    for t in range(1, 3000):
        x[t] = 0.5 * x[t - 1] + e[t]
    assert min_d(x).d_star == 0.0


def test_differencing_with_the_true_order_whitens_a_fractionally_integrated_series():
    from statsmodels.stats.diagnostic import acorr_ljungbox

    big_d = 0.4
    x = _frac_integrated(20_000, big_d, seed=5)
    # with a small threshold (about 1,450 weights) the FFD filter is (1 - B)^D truncated far out
    y = ffd(x, big_d, 1e-5)
    y = y[np.isfinite(y)]
    lb = acorr_ljungbox(y, lags=[10, 20], return_df=True)
    assert (lb["lb_pvalue"] > 0.01).all(), lb
    # and the undifferenced series is strongly autocorrelated
    assert acorr_ljungbox(x, lags=[10], return_df=True)["lb_pvalue"].iloc[0] < 1e-10


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_search_equals_brute_force_grid(seed):
    x = np.log(100 * np.exp(np.random.default_rng(seed).normal(0, 0.01, size=4000).cumsum()))
    res = min_d(x, resolution=0.02, threshold=1e-3)
    lattice = np.round(np.arange(0, 1.0001, 0.02), 10)
    brute = next(d for d in lattice if adf_point(x, d, threshold=1e-3)["stationary"])
    assert res.d_star == pytest.approx(brute)
    # the search ran far fewer ADF tests than the brute force
    assert len(res.curve) < len(lattice) / 2


def test_min_d_curve_and_dataframe_input():
    rng = np.random.default_rng(9)
    df = pd.DataFrame({"rw": rng.normal(size=2000).cumsum(), "noise": rng.normal(size=2000)})
    res = min_d(df, threshold=1e-3)
    assert isinstance(res.d_star, pd.Series) and res.d_star["noise"] == 0.0 and res.d_star["rw"] > 0
    c = res.curve
    assert {"column", "d", "adf_stat", "p_value", "crit", "corr", "stationary", "stage"} <= set(c.columns)
    assert set(c[c["stage"] == "grid"].groupby("column").size()) == {11}
    rw = c[c["column"] == "rw"].set_index("d")
    assert rw.loc[0.0, "corr"] == pytest.approx(1.0)
    assert rw["corr"].iloc[-1] < 0.2  # memory is lost at d = 1


def test_bootstrap_interval_contains_the_estimate():
    x = np.random.default_rng(10).normal(size=1500).cumsum()
    res = min_d(x, threshold=1e-3, bootstrap=8, seed=1)
    iv = res.interval.iloc[0]
    assert iv["low"] <= iv["high"] and iv["replicates"] == 8
