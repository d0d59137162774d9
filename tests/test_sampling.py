"""Sampled estimators: intervals that cover the exact value, unbiased pair draws, exact gathers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embspace.kernels.rows import prepare_rows
from embspace.kernels.sampling import gather, sample_pairs, sampled_recall, sampled_uniformity, wilson_interval
from tests import reference as ref

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    x, y = ref.paired_data("cone", 1500, 16, seed=21)
    exact = {"self": ref.uniformity(x), "cross": ref.uniformity_cross(x, y), "joint": ref.uniformity_joint(x, y)}
    return prepare_rows(x, CPU, torch.float64), prepare_rows(y, CPU, torch.float64), x, y, exact


@pytest.mark.parametrize("variant", ["self", "cross", "joint"])
def test_uniformity_interval_covers_the_exact_value(data, variant):
    rx, ry, _, _, exact = data
    draws = 100
    covered = 0
    errors = []
    for seed in range(draws):
        if variant == "self":
            est = sampled_uniformity(rx, pairs=4000, seed=seed)
        elif variant == "cross":
            est = sampled_uniformity(rx, ry, pairs=4000, seed=seed)
        else:
            est = sampled_uniformity(rx, ry, pairs=4000, seed=seed, joint=True)
        covered += est.low <= exact[variant] <= est.high
        errors.append(est.value - exact[variant])
        assert est.samples == 4000 and est.low < est.value < est.high
    assert covered / draws >= 0.90, covered
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(draws)  # no visible bias


def test_recall_interval_covers_the_exact_value(data):
    rx, ry, x, y, _ = data
    exact = {k: ref.recall(x, y, k) for k in (1, 5)}
    covered = {1: 0, 5: 0}
    for seed in range(60):
        estimates = sampled_recall(rx, ry, (1, 5), queries=200, seed=seed, tile=500)
        for k, est in estimates.items():
            covered[k] += est.low <= exact[k] <= est.high
    assert all(c / 60 >= 0.88 for c in covered.values()), covered


def test_recall_on_every_query_is_exact(data):
    rx, ry, x, y, _ = data
    estimates = sampled_recall(rx, ry, (1, 10), queries=10_000, tile=333)
    assert estimates[1].value == pytest.approx(ref.recall(x, y, 1), abs=1e-12)
    assert estimates[10].value == pytest.approx(ref.recall(x, y, 10), abs=1e-12)


def test_pairs_are_distinct_and_uniform():
    generator = np.random.default_rng(0)
    i, j = sample_pairs(5, 200_000, generator)
    assert (i != j).all()
    counts = np.zeros((5, 5))
    np.add.at(counts, (i, j), 1)
    off = counts[~np.eye(5, dtype=bool)]
    assert off.min() > 0.9 * off.mean() and off.max() < 1.1 * off.mean()


def test_gather_returns_rows_in_request_order(data):
    rx, _, x, _, _ = data
    index = np.array([1499, 3, 3, 700, 0, 1499])
    np.testing.assert_allclose(gather(rx, index, chunk=256).numpy(), x[index], atol=1e-12)


def test_wilson_interval_closed_form():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
