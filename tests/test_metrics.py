"""Every metric of `embspace.measure` against an independent float64 brute force, closed forms and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import embspace
from tests import reference as ref

TOL = 1e-6
KINDS = ("random", "cone", "clustered")


@pytest.fixture(scope="module", params=KINDS)
def paired(request) -> tuple[str, np.ndarray, np.ndarray, embspace.Report]:
    x, y = ref.paired_data(request.param, 300, 24, seed=KINDS.index(request.param))
    report = embspace.measure(image=x, text=y, device="cpu", tile=64)
    return request.param, x, y, report


def test_first_moment_metrics(paired):
    _, x, y, report = paired
    assert report["gap"] == pytest.approx(ref.gap(x, y), abs=TOL)
    assert report["centroid_cosine"] == pytest.approx(ref.centroid_cosine(x, y), abs=TOL)
    assert report["matched_cosine"] == pytest.approx(ref.matched_cosine(x, y), abs=TOL)
    assert report["alignment"] == pytest.approx(ref.alignment(x, y), abs=TOL)
    assert report["cone.image"] == pytest.approx(ref.cone(x), abs=TOL)
    assert report["cone.text"] == pytest.approx(ref.cone(y), abs=TOL)
    assert report["rmg"] == pytest.approx(ref.rmg(x, y), abs=TOL)


def test_gap_direction_is_the_normalised_centroid_difference(paired):
    _, x, y, report = paired
    delta = ref.unit(x).mean(0) - ref.unit(y).mean(0)
    np.testing.assert_allclose(report.vectors["gap_direction"], delta / np.linalg.norm(delta), atol=TOL)


def test_uniformity_variants(paired):
    _, x, y, report = paired
    u = report["uniformity"]
    assert u["image"] == pytest.approx(ref.uniformity(x), abs=TOL)
    assert u["text"] == pytest.approx(ref.uniformity(y), abs=TOL)
    assert u["mean"] == pytest.approx((ref.uniformity(x) + ref.uniformity(y)) / 2, abs=TOL)
    assert u["cross"] == pytest.approx(ref.uniformity_cross(x, y), abs=TOL)
    assert u["joint"] == pytest.approx(ref.uniformity_joint(x, y), abs=TOL)


def test_retrieval_and_hubness(paired):
    _, x, y, report = paired
    for k in (1, 5, 10):
        assert report[f"recall@{k}.image->text"] == pytest.approx(ref.recall(x, y, k), abs=1e-12)
        assert report[f"recall@{k}.text->image"] == pytest.approx(ref.recall(y, x, k), abs=1e-12)
    assert report["hubness.image->text"] == pytest.approx(ref.hubness(x, y), abs=1e-9)
    assert report["hubness.text->image"] == pytest.approx(ref.hubness(y, x), abs=1e-9)


def test_spectrum(paired):
    _, x, y, report = paired
    for name, data in (("image", x), ("text", y)):
        assert report[f"rankme.{name}"] == pytest.approx(ref.rankme(data), rel=TOL)
        assert report[f"effective_rank.{name}"] == pytest.approx(ref.effective_rank(data, False), rel=TOL)
        assert report[f"effective_rank_centered.{name}"] == pytest.approx(ref.effective_rank(data, True), rel=TOL)
        assert report[f"participation_ratio.{name}"] == pytest.approx(ref.participation_ratio(data), rel=TOL)
        np.testing.assert_allclose(report.spectra[name]["singular_values"], ref.singular_values(data, False),
                                   rtol=1e-6, atol=1e-9)


def test_alpha_req_against_numpy_fit_and_a_planted_power_law():
    rng = np.random.default_rng(3)
    d, alpha = 40, 1.5
    scales = np.arange(1, d + 1) ** (-alpha / 2)  # covariance eigenvalues ∝ k^−α before normalising rows
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = (rng.normal(size=(50_000, d)) * scales) @ q.T
    report = embspace.measure(image=x, metrics="spectrum", device="cpu", alpha_req_range=(1, 20), alpha_req_fit="ols")
    lam = np.sort(np.linalg.eigvalsh(np.cov(ref.unit(x), rowvar=False)))[::-1]
    expected = -np.polyfit(np.log(np.arange(1, 21)), np.log(lam[:20]), 1)[0]
    assert report["alpha_req.image"] == pytest.approx(expected, abs=1e-6)
    assert report["alpha_req.image"] == pytest.approx(alpha, abs=0.25)  # row normalisation bends the law a little
    assert report.settings["alpha_req_range"]["image"] == [1, 20]


def test_linear_separability_tells_a_large_gap_from_none():
    rng = np.random.default_rng(0)
    x = ref.unit(rng.normal(size=(600, 16)))
    same = embspace.measure(image=x, text=ref.unit(rng.normal(size=(600, 16))), metrics="separability",
                            device="cpu")
    shifted = embspace.measure(image=x, text=ref.unit(x + 3.0), metrics="separability", device="cpu")
    assert 0.35 < same["linear_separability"] < 0.65
    assert shifted["linear_separability"] == 1.0
    assert shifted.settings["separability"]["test_pairs"] == 120


# ---- closed forms --------------------------------------------------------------------------------------------

def test_regular_simplex_closed_forms():
    """N unit vectors with pairwise cosine −1/(N−1): U = −2t(1 + 1/(N−1)), cone = −1/(N−1)."""
    n = 12
    simplex = np.eye(n) - 1 / n  # rows span an (N−1)-simplex around the origin
    report = embspace.measure(image=simplex, metrics="uniformity,cone", device="cpu", precision="fp64")
    assert report["uniformity.image"] == pytest.approx(-2 * 2 * (1 + 1 / (n - 1)), abs=1e-12)
    assert report["cone.image"] == pytest.approx(-1 / (n - 1), abs=1e-12)


def test_uniform_sphere_s2_closed_form():
    """Uniform points on S²: E exp(−t‖a−b‖²) = (1 − e^{−4t})/(4t) (Archimedes: a·b is uniform on [−1, 1])."""
    x = np.random.default_rng(1).normal(size=(4000, 3))
    report = embspace.measure(image=x, metrics="uniformity", device="cpu")
    expected = math.log((1 - math.exp(-8)) / 8)
    assert report["uniformity.image"] == pytest.approx(expected, abs=0.02)  # sampling error ~ 1/N
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=TOL)


def test_identical_modalities():
    x = ref.cone_data(200, 16, 1.5, seed=4)
    report = embspace.measure(image=x, text=x.copy(), device="cpu")
    assert report["gap"] == pytest.approx(0.0, abs=1e-12)
    assert report["alignment"] == pytest.approx(0.0, abs=1e-12)
    assert report["matched_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert report["recall@1.image->text"] == 1.0 and report["recall@1.text->image"] == 1.0
    assert report["uniformity.joint"] == pytest.approx(ref.uniformity_joint(x, x), abs=TOL)
    d_m = 1e-3  # the clamp floor on the matched distance (rounding leaves d_m within ±1e-7 of 0)
    d_a = 1 - (ref.cone(x) + 1) / 2
    clamped = embspace.measure(image=x, text=x.copy(), metrics="rmg", device="cpu", rmg_floor="clamp")
    assert clamped["rmg"] == pytest.approx(d_m / (d_m + d_a), abs=1e-6)
    assert report["rmg"] <= d_m / (d_m + d_a) + 1e-6  # the source's floor: 1e-3 only where d_m ≤ 0


# ---- invariances ---------------------------------------------------------------------------------------------

SCALARS = ("gap", "centroid_cosine", "alignment", "matched_cosine", "rmg", "uniformity.image", "uniformity.text",
           "uniformity.cross", "uniformity.joint", "cone.image", "rankme.image", "recall@5.image->text",
           "hubness.text->image")


def test_rotation_and_pair_consistent_permutation_leave_metrics_unchanged():
    x, y = ref.paired_data("cone", 250, 20, seed=7)
    rng = np.random.default_rng(9)
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    perm = rng.permutation(250)
    base = embspace.measure(image=x, text=y, device="cpu", metrics="all")
    rotated = embspace.measure(image=x @ q, text=y @ q, device="cpu")
    shuffled = embspace.measure(image=x[perm], text=y[perm], device="cpu")
    for other in (rotated, shuffled):
        for path in SCALARS:
            assert other[path] == pytest.approx(base[path], abs=1e-5), path


def test_swapping_modalities_swaps_directions():
    x, y = ref.paired_data("clustered", 200, 12, seed=2)
    ab = embspace.measure(image=x, text=y, device="cpu", metrics="gap,uniformity,retrieval")
    ba = embspace.measure(image=y, text=x, device="cpu", metrics="gap,uniformity,retrieval")
    assert ab["gap"] == pytest.approx(ba["gap"], abs=1e-9)
    assert ab["uniformity.cross"] == pytest.approx(ba["uniformity.cross"], abs=1e-7)
    assert ab["recall@1.image->text"] == ba["recall@1.text->image"]


def test_scaling_rows_does_not_change_normalised_metrics():
    x, y = ref.paired_data("random", 150, 10, seed=5)
    scales = np.random.default_rng(0).uniform(0.1, 10, size=(150, 1))
    a = embspace.measure(image=x, text=y, device="cpu", metrics="gap,uniformity,cone")
    b = embspace.measure(image=x * scales, text=y, device="cpu", metrics="gap,uniformity,cone")
    for path in ("gap", "uniformity.image", "uniformity.joint", "cone.image"):
        assert b[path] == pytest.approx(a[path], abs=1e-6)


# ---- precision, tiling, streaming ----------------------------------------------------------------------------

@pytest.mark.parametrize("tile", [7, 64, 299, 300, 4096])
def test_tile_size_does_not_change_results(tile):
    x, y = ref.paired_data("cone", 300, 16, seed=11)
    report = embspace.measure(image=x, text=y, device="cpu", tile=tile, metrics="uniformity,retrieval,hubness")
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=TOL)
    assert report["uniformity.cross"] == pytest.approx(ref.uniformity_cross(x, y), abs=TOL)
    assert report["recall@5.text->image"] == pytest.approx(ref.recall(y, x, 5), abs=1e-12)
    assert report["hubness.image->text"] == pytest.approx(ref.hubness(x, y), abs=1e-9)


def test_streamed_rows_match_resident_rows():
    x, y = ref.paired_data("clustered", 400, 16, seed=12)
    resident = embspace.measure(image=x, text=y, device="cpu", tile=50)  # tile 50 fits even a 1 KiB budget
    streamed = embspace.measure(image=x, text=y, device="cpu", tile=50, memory=1024)
    for path, value in resident.flat().items():
        assert streamed[path] == pytest.approx(value, abs=1e-9), path


@pytest.mark.parametrize("precision,tol", [("fp64", 1e-12), ("fp32", 1e-6), ("bf16", 3e-2), ("fp16", 3e-3)])
def test_precision_errors_stay_within_their_bounds(precision, tol):
    x = ref.cone_data(400, 32, 1.0, seed=13)
    report = embspace.measure(image=x, metrics="uniformity", device="cpu", precision=precision)
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=tol)


def test_half_precision_inputs_are_upcast():
    x, y = ref.paired_data("cone", 200, 32, seed=14)
    x16, y16 = x.astype(np.float16), y.astype(np.float16)
    report = embspace.measure(image=x16, text=y16, device="cpu", metrics="gap,uniformity")
    assert report.inputs["image"]["dtype"] == "float16"
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(x16.astype(np.float64)), abs=TOL)
    bf = embspace.measure(image=torch.from_numpy(x).bfloat16(), metrics="uniformity", device="cpu")
    assert bf["uniformity.image"] == pytest.approx(ref.uniformity(torch.from_numpy(x).bfloat16().double().numpy()),
                                                   abs=TOL)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_float64_reference():
    x, y = ref.paired_data("cone", 3000, 64, seed=15)
    report = embspace.measure(image=x, text=y, device="cuda", tile=512, metrics="all")
    assert report.settings["device"] == "cuda"
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=TOL)
    assert report["uniformity.cross"] == pytest.approx(ref.uniformity_cross(x, y), abs=TOL)
    assert report["gap"] == pytest.approx(ref.gap(x, y), abs=TOL)
    assert report["recall@1.image->text"] == pytest.approx(ref.recall(x, y, 1), abs=1e-3)
