"""embspace.bootstrap: the percentile and BCa intervals against scipy and hand computations, the jackknife weights,
and the jackknife that paired_bootstrap feeds to BCa against leave-one-pair-out brute force."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from embspace.bootstrap import (
    acceleration,
    bca_interval,
    bca_levels,
    bias_correction,
    bias_share,
    jackknife_blocks,
    percentile_interval,
)
from embspace.compare import paired_bootstrap
from tests import reference as ref


def test_the_module_examples_run():
    import doctest

    import embspace.bootstrap

    assert doctest.testmod(embspace.bootstrap).failed == 0


def log_mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """A skewed, biased statistic (log of the mean of exponential data)."""
    return np.log(np.mean(a, axis=axis))


@pytest.mark.parametrize("statistic", [np.mean, log_mean, np.std])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_bca_equals_scipy_on_the_same_resamples(statistic, confidence):
    rng = np.random.default_rng(3)
    x = rng.exponential(size=40)
    resampled = statistic(x[rng.integers(0, 40, size=(999, 40))], axis=-1)  # (B,)
    jackknife = np.array([statistic(np.delete(x, i)) for i in range(40)])  # leave-one-out by brute force
    expected = stats.bootstrap((x,), statistic, n_resamples=0, method="BCa", confidence_level=confidence,
                               bootstrap_result=SimpleNamespace(bootstrap_distribution=resampled))
    lo, hi = bca_interval(resampled, float(statistic(x)), jackknife, confidence)
    assert lo == pytest.approx(expected.confidence_interval.low, abs=1e-12)
    assert hi == pytest.approx(expected.confidence_interval.high, abs=1e-12)
    percentile = stats.bootstrap((x,), statistic, n_resamples=0, method="percentile", confidence_level=confidence,
                                 bootstrap_result=SimpleNamespace(bootstrap_distribution=resampled))
    assert percentile_interval(resampled, confidence) == pytest.approx(tuple(percentile.confidence_interval),
                                                                       abs=1e-12)


def test_bca_by_hand():
    """z₀, a and the levels written out for a small case (Efron & Tibshirani 1993, eqs. 14.10–14.15)."""
    resampled = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    point = 2.0
    assert bias_share(resampled, point) == (1 + 3) / 16  # one below, two ties counted half
    z0 = stats.norm.ppf(0.25)
    assert bias_correction(resampled, point) == pytest.approx(z0, abs=1e-15)
    jackknife = np.array([1.0, 2.0, 4.0, 8.0])
    u = jackknife.mean() - jackknife
    a = (u ** 3).sum() / (6 * ((u ** 2).sum()) ** 1.5)
    assert acceleration(jackknife) == pytest.approx(a, abs=1e-15)
    z = stats.norm.ppf([0.05, 0.95])
    levels = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    assert bca_levels(z0, a, 0.9) == pytest.approx(tuple(levels), abs=1e-15)
    assert bca_interval(resampled, point, jackknife, 0.9) == pytest.approx(tuple(np.quantile(resampled, levels)),
                                                                           abs=1e-12)


def test_no_bias_and_no_acceleration_is_the_percentile_interval():
    rng = np.random.default_rng(0)
    resampled = rng.normal(size=1001)
    median = float(np.median(resampled))  # half below: z₀ = 0
    assert bca_interval(resampled, median, np.ones(30), 0.95) == pytest.approx(percentile_interval(resampled, 0.95),
                                                                               abs=1e-12)


def test_degenerate_cases_stay_finite():
    assert bca_interval(np.zeros(200), 0.0, np.zeros(10)) == (0.0, 0.0)
    lo, hi = bca_interval(np.arange(1.0, 101.0), 0.0, np.arange(10.0))  # the point below every resampled value
    assert math.isfinite(lo) and math.isfinite(hi) and 1.0 <= lo <= hi <= 100.0
    assert bias_correction(np.arange(1.0, 101.0), 0.0) == pytest.approx(stats.norm.ppf(0.5 / 100))
    assert acceleration(np.full(5, 2.0)) == 0.0
    assert bca_levels(0.0, 5.0, 0.95)[1] == 1.0  # 1 − a·z ≤ 0 on the upper side: the end of the range
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(np.zeros(3), 1.5)


def test_jackknife_blocks_leave_one_out_and_groups():
    rows = np.concatenate(list(jackknife_blocks(7, 3)))
    np.testing.assert_array_equal(rows, 1 - np.eye(7, dtype=np.float32))
    assert [len(b) for b in jackknife_blocks(7, 3)] == [3, 3, 1]
    grouped = np.concatenate(list(jackknife_blocks(103, 4, groups=10, seed=1)))
    assert grouped.shape == (10, 103)
    left_out = 1 - grouped
    np.testing.assert_array_equal(left_out.sum(0), np.ones(103))  # every observation left out exactly once
    assert set(left_out.sum(1).astype(int)) == {10, 11}  # near-equal groups
    with pytest.raises(ValueError, match="at least 2"):
        list(jackknife_blocks(1, 4))


def test_paired_bootstrap_jackknife_is_leave_one_pair_out():
    """The acceleration paired_bootstrap uses equals a from the metrics recomputed on the data without pair i."""
    x, y = ref.paired_data("cone", 40, 8, seed=2)
    x2 = ref.unit(x + 0.3 * np.random.default_rng(1).normal(size=x.shape))
    result = paired_bootstrap((x, y), (x2, y), resamples=50, recall_ks=(1,))
    drop = [np.delete(np.arange(40), i) for i in range(40)]
    changes = {"gap": [ref.gap(x2[k], y[k]) - ref.gap(x[k], y[k]) for k in drop],
               "cone.image": [ref.cone(x2[k]) - ref.cone(x[k]) for k in drop],
               "uniformity.image": [ref.uniformity(x2[k]) - ref.uniformity(x[k]) for k in drop]}
    for path, values in changes.items():
        assert result.metrics[path].acceleration == pytest.approx(acceleration(np.array(values)), rel=1e-3, abs=1e-6)
    assert result.metrics["gap"].interval == "bca" and result.to_dict()["interval"] == "bca"
    assert "BCa" in result.to_dict()["method"]
    plain = paired_bootstrap((x, y), (x2, y), resamples=50, recall_ks=(1,), interval="percentile")
    assert plain.metrics["gap"].ci == result.metrics["gap"].percentile_ci
    assert math.isnan(plain.metrics["gap"].acceleration) and "BCa" not in plain.to_dict()["method"]


def test_above_the_group_limit_the_jackknife_deletes_groups(monkeypatch):
    """With more pairs than JACKKNIFE_GROUPS, a comes from the delete-a-group jackknife: the same groups recomputed
    by brute force give the same a."""
    import importlib

    compare = importlib.import_module("embspace.compare")  # the module (embspace.compare is also the function)
    x, y = ref.paired_data("cone", 60, 8, seed=4)
    x2 = ref.unit(x + 0.3 * np.random.default_rng(2).normal(size=x.shape))
    monkeypatch.setattr(compare, "JACKKNIFE_GROUPS", 12)
    result = paired_bootstrap((x, y), (x2, y), resamples=50, recall_ks=(1,), seed=5)
    keep = [block.astype(bool) for rows in jackknife_blocks(60, 100, groups=12, seed=5) for block in rows]
    assert len(keep) == 12
    values = [ref.gap(x2[k], y[k]) - ref.gap(x[k], y[k]) for k in keep]
    assert result.metrics["gap"].acceleration == pytest.approx(acceleration(np.array(values)), rel=1e-3, abs=1e-6)
    lo, hi = result.metrics["gap"].ci
    assert lo <= result.metrics["gap"].resampled_change <= hi
