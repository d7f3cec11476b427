"""The shared yardstick helpers: the smallest detectable difference has the power it claims."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import metrics


def test_detectable_difference_is_detected_with_the_stated_power() -> None:
    assert metrics.detectable_difference(1.0) == pytest.approx(2.8016, abs=1e-4)
    assert metrics.detectable_difference(0.5, alpha=0.01, power=0.9) == pytest.approx(0.5 * (2.5758 + 1.2816), abs=1e-3)
    assert np.isnan(metrics.detectable_difference(float("nan")))
    # a true difference of exactly that size, estimated with standard error se, is significant ~80 % of the time
    rng = np.random.default_rng(0)
    se = 0.3
    est = rng.normal(metrics.detectable_difference(se), se, 20000)
    assert np.mean(np.abs(est / se) > 1.959964) == pytest.approx(0.80, abs=0.015)


def test_se_from_interval_inverts_a_normal_interval() -> None:
    assert metrics.se_from_interval(-1.959964, 1.959964) == pytest.approx(1.0, rel=1e-6)
    assert metrics.se_from_interval(0.0, 2 * 1.644854, level=0.90) == pytest.approx(1.0, rel=1e-5)
