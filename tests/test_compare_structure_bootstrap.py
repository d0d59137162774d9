"""The paired bootstrap of CKA, mutual-kNN and modality bias: exact at w = 1, the weighted forms against explicitly
repeated rows, and a planted change called beyond noise while an identical copy is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embspace
from embspace.compare import paired_bootstrap
from embspace.families.base import Weighted
from embspace.families.modality_bias import ModalityBias
from embspace.families.structure import Structure
from tests import reference as ref

NAMES = ("image", "text")
PATHS = ("cka.unbiased", "cka.biased", "mutual_knn", "modality_bias.image", "modality_bias.text")
K = 10


@pytest.fixture(scope="module")
def pair():
    return ref.paired_data("clustered", 90, 12, seed=3)


def _cka(a: np.ndarray, b: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(unbiased, biased) linear CKA of rows a, b by the plain formulas, float64; ``same`` (n, n) marks two
    different copies of one original row, whose kernel entry is set to 0."""
    kk, ll = a @ a.T, b @ b.T
    kk[same], ll[same] = 0.0, 0.0
    n = len(a)
    h = np.eye(n) - 1.0 / n

    def biased(p, q):
        return np.trace(p @ h @ q @ h)

    def unbiased(p, q):  # Song et al. 2012, eq. 5
        p, q = p.copy(), q.copy()
        np.fill_diagonal(p, 0.0)
        np.fill_diagonal(q, 0.0)
        one = np.ones(n)
        return (np.trace(p @ q) + (one @ p @ one) * (one @ q @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (one @ p @ q @ one)) / (n * (n - 3))

    return tuple(f(kk, ll) / np.sqrt(f(kk, kk) * f(ll, ll)) for f in (unbiased, biased))


def _knn(a: np.ndarray, k: int) -> list[set[int]]:
    s = a @ a.T
    np.fill_diagonal(s, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k]) for row in s]


def _own_share(q: np.ndarray, g: np.ndarray, first: bool, k: int) -> np.ndarray:
    """Per query, the share of its k nearest of the pooled gallery (first modality's items at indices 0…n−1)
    that are of its own modality; itself excluded, ties by gallery index."""
    n = len(q)
    own, other = q @ q.T, q @ g.T
    np.fill_diagonal(own, -np.inf)
    pooled = np.concatenate([own, other] if first else [other, own], axis=1)  # gallery order: X then Y
    is_own = np.r_[np.ones(n, bool), np.zeros(n, bool)] if first else np.r_[np.zeros(n, bool), np.ones(n, bool)]
    return np.array([is_own[np.argsort(-row, kind="stable")[:k]].mean() for row in pooled])


def _values(x: np.ndarray, y: np.ndarray, w: torch.Tensor) -> dict[str, float]:
    view = Weighted(torch.from_numpy(x), torch.from_numpy(y), NAMES, {}).at(w)
    got = {**Structure().resample(view), **ModalityBias().resample(view)}
    return {path: float(got[path][0]) for path in PATHS}


def test_unweighted_values_are_the_exact_metrics(pair):
    x, y = (ref.unit(a) for a in pair)
    got = _values(x, y, torch.ones(1, len(x), dtype=torch.float64))
    unbiased, biased = _cka(x, y, np.zeros((len(x), len(x)), bool))
    assert got["cka.unbiased"] == pytest.approx(unbiased, abs=1e-12)
    assert got["cka.biased"] == pytest.approx(biased, abs=1e-12)
    na, nb = _knn(x, K), _knn(y, K)
    assert got["mutual_knn"] == pytest.approx(np.mean([len(a & b) / K for a, b in zip(na, nb, strict=True)]))
    assert got["modality_bias.image"] == pytest.approx(_own_share(x, y, True, K).mean(), abs=1e-12)
    assert got["modality_bias.text"] == pytest.approx(_own_share(y, x, False, K).mean(), abs=1e-12)
    report = embspace.measure(image=x, text=y, metrics=["structure", "modality_bias"])  # the exact passes agree
    assert report.metrics["cka"]["unbiased"] == pytest.approx(unbiased, abs=1e-9)
    assert report.metrics["mutual_knn"] == pytest.approx(got["mutual_knn"], abs=1e-12)
    assert report.metrics["modality_bias"]["text"] == pytest.approx(got["modality_bias.text"], abs=1e-12)


def test_weighted_forms_are_the_metrics_of_the_repeated_rows(pair):
    """Counts w: CKA of the rows repeated w_i times (two copies of one row not similar: their kernel entry 0);
    mutual-kNN and modality bias: the per-row values of the whole sample's neighbours, averaged over the repeats."""
    x, y = (ref.unit(a) for a in pair)
    n = len(x)
    for seed in range(3):
        idx = np.sort(np.random.default_rng(seed).integers(0, n, n))
        w = torch.from_numpy(np.bincount(idx, minlength=n)).double()[None]
        got = _values(x, y, w)
        same = (idx[:, None] == idx[None, :]) & ~np.eye(n, dtype=bool)
        unbiased, biased = _cka(x[idx], y[idx], same)
        assert got["cka.unbiased"] == pytest.approx(unbiased, abs=1e-10)
        assert got["cka.biased"] == pytest.approx(biased, abs=1e-10)
        na, nb = _knn(x, K), _knn(y, K)
        m = np.array([len(a & b) / K for a, b in zip(na, nb, strict=True)])
        assert got["mutual_knn"] == pytest.approx(m[idx].mean(), abs=1e-12)
        assert got["modality_bias.image"] == pytest.approx(_own_share(x, y, True, K)[idx].mean(), abs=1e-12)
        assert got["modality_bias.text"] == pytest.approx(_own_share(y, x, False, K)[idx].mean(), abs=1e-12)


def test_float32_rows_give_the_float64_values(pair):
    x, y = (ref.unit(a) for a in pair)
    w = torch.from_numpy(np.bincount(np.random.default_rng(7).integers(0, len(x), len(x)), minlength=len(x)))[None]
    single = _values(x.astype(np.float32), y.astype(np.float32), w.float())
    double = _values(x, y, w.double())
    for path in ("cka.unbiased", "cka.biased"):
        assert single[path] == pytest.approx(double[path], abs=1e-5)


def test_a_perturbed_modality_is_beyond_noise_and_an_identical_copy_is_not(one_thread):
    x, y = ref.paired_data("clustered", 200, 16, seed=4)
    rng = np.random.default_rng(5)
    noisy = ref.unit(y + 0.35 * rng.normal(size=y.shape))  # the text structure loses its agreement with the image
    moved = paired_bootstrap((x, y), (x, noisy), resamples=200, seed=1)
    for path in ("cka.unbiased", "cka.biased", "mutual_knn"):
        assert moved.metrics[path].significant and moved.metrics[path].ci[1] < 0, path
    closer = ref.unit(y + 0.5 * (x - y))  # the text pulled toward the image: less modality bias
    assert paired_bootstrap((x, y), (x, closer), resamples=200, seed=1).metrics["modality_bias.text"].ci[1] < 0
    same = paired_bootstrap((x, y), (x.copy(), y.copy()), resamples=200, seed=1)
    for path in PATHS:
        assert not same.metrics[path].significant, path
        assert same.metrics[path].method == "all pairs"  # N ≤ the subsample: every pair
    block = moved.to_dict()
    assert block["metrics"]["cka.unbiased"]["beyond_noise"] is True
    assert moved.metrics["procrustes"].interval == "jackknife"  # bounded by half-samples (test_compare_half_samples)


def test_modality_bias_counts_break_ties_by_gallery_index():
    """Exact ties between the two modalities (duplicated rows): the first modality's items rank first."""
    x, y = np.eye(12), np.eye(12)  # similarity 1 to the partner, exactly 0 to every other item of both modalities
    got = _values(x, y, torch.ones(1, 12, dtype=torch.float64))
    assert got["modality_bias.image"] == pytest.approx(_own_share(x, y, True, K).mean(), abs=1e-12)
    assert got["modality_bias.text"] == pytest.approx(_own_share(y, x, False, K).mean(), abs=1e-12)
    assert (got["modality_bias.image"], got["modality_bias.text"]) == (0.9, 0.0)  # the partner, then X's items


def test_on_a_subsample_the_structure_metrics_say_so(pair):
    result = paired_bootstrap(pair, pair, resamples=20, subsample=50)
    for path in PATHS:
        assert result.metrics[path].method == "subsample", path
    assert any("CKA, mutual-kNN and modality bias" in note and "50 of 90" in note for note in result.notes)
