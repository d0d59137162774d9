"""The noise bounds of the metrics fitted to the rows (Procrustes, gap_subspace): their values on rows against
independent references, the half-sample interval's width against the spread of the change over independent data
sets, and a planted change called beyond noise while an identical copy is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import procrustes as scipy_procrustes

import embspace
from embspace.bootstrap import half_sample_interval, half_samples
from embspace.compare import half_sampled_tests, paired_bootstrap
from embspace.families.gap_anatomy import GapAnatomy
from embspace.families.structure import Structure
from embspace.metrics.gap_anatomy import SUBSPACE_K
from tests import reference as ref

NAMES = ("image", "text")
HALF_SAMPLED = ("procrustes", "gap_subspace.image", "gap_subspace.text")


def _subspace_share(rows: np.ndarray, delta: np.ndarray, k: int = SUBSPACE_K) -> float:
    """‖P_kΔ‖²/‖Δ‖² with P_k from numpy's full eigendecomposition of the centred covariance, float64."""
    centred = rows - rows.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, ::-1][:, :k]
    inside = top @ (top.T @ delta)
    return float(inside @ inside / (delta @ delta))


def _on_rows(x: np.ndarray, y: np.ndarray, exact: bool = True) -> dict[str, float]:
    a, b = torch.from_numpy(x), torch.from_numpy(y)
    return {**Structure().on_rows(a, b, NAMES, {}, exact=exact), **GapAnatomy().on_rows(a, b, NAMES, {}, exact=exact)}


def test_values_on_rows_match_scipy_and_a_full_eigendecomposition():
    x, y = ref.paired_data("clustered", 300, 24, seed=2)
    got = _on_rows(x, y)
    disparity = scipy_procrustes(x, y)[2]  # 1 − (Σσ)² after scipy's extra scaling of the rotated matrix
    assert got["procrustes"] == pytest.approx(2 - 2 * np.sqrt(1 - disparity), abs=1e-12)
    assert _on_rows(x, y, exact=False)["procrustes"] == pytest.approx(got["procrustes"], abs=1e-8)
    delta = x.mean(0) - y.mean(0)
    assert got["gap_subspace.image"] == pytest.approx(_subspace_share(x, delta), abs=1e-10)
    assert got["gap_subspace.text"] == pytest.approx(_subspace_share(y, delta), abs=1e-10)
    # the streamed passes agree, up to measure's float32 unit rows
    report = embspace.measure(image=x, text=y, metrics=["structure", "gap_anatomy"])
    assert report.metrics["procrustes"] == pytest.approx(got["procrustes"], abs=1e-7)
    for name in NAMES:
        assert report.metrics["gap_subspace"][name] == pytest.approx(got[f"gap_subspace.{name}"], abs=1e-7)


def test_the_half_sample_variance_of_a_mean_is_the_variance_over_n():
    """For θ = the mean of the rows, E[v] = s²/N exactly (sampling without replacement), so the interval's
    half-width over z approaches s/√N as the half-samples grow in number."""
    rng = np.random.default_rng(0)
    rows = rng.exponential(size=600)
    for pool, n in ((600, 600), (300, 600)):  # the whole data, and a pool of half of it scaled to N
        picks = half_samples(rng, pool, 4000)
        low, high = half_sample_interval(float(rows.mean()), rows[:pool][picks].mean(1), pool, n, 0.95)
        expected = 1.959964 * rows[:pool].std(ddof=1) / np.sqrt(n)
        assert (high - low) / 2 == pytest.approx(expected, rel=0.05)
    assert np.all(np.diff(picks, axis=1) > 0) and picks.shape == (4000, 150)  # sorted, without replacement
    assert all(np.isnan(half_sample_interval(float("nan"), np.ones(5), 10, 10)))  # no estimate, no interval
    assert half_sample_interval(0.5, np.ones(5), 10, 10) == (0.5, 0.5)  # halves that agree: no spread


def _draw(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One data set from a fixed population: an anisotropic image side, a text side that is a rotated noisy copy
    with a gap, and after fine-tuning a text side with more noise and a smaller gap."""
    scales = np.linspace(2.0, 0.3, d)
    x = ref.unit(rng.normal(size=(n, d)) * scales + 1.5)
    rotation = np.linalg.qr(np.random.default_rng(99).normal(size=(d, d)))[0]  # the same rotation every draw
    shift = np.random.default_rng(98).normal(size=d)
    y = ref.unit(x @ rotation + 0.5 * rng.normal(size=(n, d)) / np.sqrt(d) + 0.4 * shift / np.linalg.norm(shift))
    tuned = ref.unit(x @ rotation + 0.8 * rng.normal(size=(n, d)) / np.sqrt(d) + 0.2 * shift / np.linalg.norm(shift))
    return x, y, tuned


def test_the_interval_width_matches_the_spread_of_the_change_over_independent_data(one_thread):
    """Over 40 independent data sets of one population, the standard deviation of the measured change against the
    mean half-sample standard error: the bound is as wide as the noise it bounds (within the Monte Carlo error of
    40 draws, ±25 %, and a wider band for a ratio's own spread)."""
    rng = np.random.default_rng(3)
    n, d, z = 300, 12, 1.959964
    changes, errors = {p: [] for p in HALF_SAMPLED}, {p: [] for p in HALF_SAMPLED}
    for draw in range(40):
        x, y, tuned = _draw(rng, n, d)
        tests = half_sampled_tests((torch.from_numpy(x), torch.from_numpy(y)),
                                   (torch.from_numpy(x), torch.from_numpy(tuned)), NAMES, {}, seed=draw, count=60)
        for path in HALF_SAMPLED:
            changes[path].append(tests[path].resampled_change)
            errors[path].append((tests[path].ci[1] - tests[path].ci[0]) / (2 * z))
    for path in HALF_SAMPLED:
        ratio = np.mean(errors[path]) / np.std(changes[path], ddof=1)
        assert 0.65 < ratio < 1.5, (path, ratio)


def test_a_planted_change_is_beyond_noise_and_an_identical_copy_is_not(one_thread):
    x, y = ref.paired_data("clustered", 400, 16, seed=4)
    rng = np.random.default_rng(5)
    noisy = ref.unit(y + 0.35 * rng.normal(size=y.shape))  # no rotation maps the image onto the text any more
    moved = paired_bootstrap((x, y), (x, noisy), resamples=50, seed=1)
    test = moved.metrics["procrustes"]
    assert test.interval == "jackknife" and test.method == "half-samples"
    assert test.significant and test.ci[0] > 0  # the residual grew
    assert test.data_before == pytest.approx(_on_rows(x, y)["procrustes"], abs=1e-7)  # float32 unit rows
    same = paired_bootstrap((x, y), (x.copy(), y.copy()), resamples=50, seed=1)
    for path in HALF_SAMPLED:
        assert same.metrics[path].ci == (0.0, 0.0) and not same.metrics[path].significant, path
    block = moved.to_dict()["metrics"]["procrustes"]
    assert block["interval"] == "jackknife" and "percentile_ci" not in block and "acceleration" not in block
    assert not any("procrustes" in item or "gap_subspace" in item for item in moved.not_tested)
    assert any("delete-d jackknife from 100 seeded half-samples of 200 of 400 pairs" in note for note in moved.notes)
    assert "procrustes" not in paired_bootstrap((x, y), (x, noisy), resamples=20, half_sample_count=0).metrics


def test_a_gap_turned_into_the_image_principal_directions_is_beyond_noise(one_thread):
    x, y = ref.paired_data("random", 400, 16, seed=6)
    centred = x - x.mean(0)
    top = np.linalg.eigh(centred.T @ centred)[1][:, -1]  # the image side's first principal direction
    along = ref.unit(y - 0.3 * top)  # the text moves along it: more of Δ inside the image's top subspace
    result = paired_bootstrap((x, y), (x, along), resamples=20, seed=2)
    test = result.metrics["gap_subspace.image"]
    assert test.change > 0 and test.ci[0] > 0
    assert test.data_after == pytest.approx(_subspace_share(x, x.mean(0) - along.mean(0)), abs=1e-7)  # float32 rows


def test_no_half_samples_is_an_empty_draw_and_scipy_blas_is_restored():
    from threadpoolctl import threadpool_info

    from embspace.kernels.threads import single_threaded_scipy_blas

    assert half_samples(np.random.default_rng(0), 10, 0).shape == (0, 5)
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    before = torch.get_num_threads()
    with single_threaded_scipy_blas():
        inside = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        assert inside and all(pool["num_threads"] == 1 for pool in inside)
        assert torch.get_num_threads() == before  # torch's threads are not touched
    after = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
    assert all(after[pool["filepath"]] == pool["num_threads"] for pool in blas if pool["filepath"] in after)
