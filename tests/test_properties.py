"""Properties every metric must satisfy, for any input (hypothesis), checked against float64 numpy.

Bounds (0 ≤ gap ≤ 2, uniformity ≤ 0, cone and cosines in [−1, 1], alignment in [0, 4], RMG in [0, 1], recall in
[0, 1]); invariance to a common rotation of both modalities and to a consistent permutation of the pairs; symmetry
under swapping the modalities where the metric is symmetric; equal values from the exact and the tiled paths (tiles
of a few rows, uneven last tile); a sampled estimate whose interval holds the exact value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import embspace
from embspace.kernels.rows import prepare_rows
from embspace.kernels.sampling import sampled_uniformity
from tests import reference as ref

FAMILIES = "gap,alignment,cone,rmg,uniformity,retrieval,hubness,spectrum"
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-9  # fp64 tiles against float64 numpy


@st.composite
def pairs(draw: st.DrawFn, min_n: int = 3, max_n: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Two paired N×D float64 matrices: random, cone-shaped or clustered rows with a gap of random size."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["random", "cone", "clustered"]))
    scale = draw(st.floats(0.01, 100.0))  # rows need not be unit: every metric normalises first
    x, y = ref.paired_data(kind, n, d, seed)
    return x * scale, y * draw(st.floats(0.01, 100.0))


def raw_rows(n: int, d: int) -> st.SearchStrategy[np.ndarray]:
    """Arbitrary rows (repeated values, duplicates, signs), none of them all-zero."""
    values = st.floats(-8, 8, allow_nan=False, allow_infinity=False, width=64).filter(lambda v: abs(v) > 1e-3)
    return arrays(np.float64, (n, d), elements=values)


def measured(x: np.ndarray, y: np.ndarray, **options) -> dict[str, float]:
    return embspace.measure(image=x, text=y, metrics=FAMILIES, precision="fp64", **options).flat()


def rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def check_bounds(m: dict[str, float], shape: tuple[int, int], slack: float = 1e-12) -> None:
    assert -slack <= m["gap"] <= 2 + slack
    assert -slack <= m["alignment"] <= 4 + slack
    for path in ("centroid_cosine", "matched_cosine", "cone.image", "cone.text"):
        assert -1 - slack <= m[path] <= 1 + slack, path
    assert -slack <= m["rmg"] <= 1 + slack
    for path, value in m.items():
        if path.startswith("uniformity."):
            assert value <= slack, path
        if path.startswith("recall@"):
            assert 0 <= value <= 1, path
    for name in ("image", "text"):  # an entropy of at most min(N, D) singular values (RankMe's ε adds ~1e-6)
        assert 1 - 1e-6 <= m[f"rankme.{name}"] <= min(shape) * (1 + 1e-5)


@SETTINGS
@given(data=pairs())
def test_bounds_and_float64_references(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    m = measured(x, y)
    check_bounds(m, x.shape)
    assert m["gap"] == pytest.approx(ref.gap(x, y), abs=TOL)
    assert m["alignment"] == pytest.approx(ref.alignment(x, y), abs=TOL)
    assert m["matched_cosine"] == pytest.approx(ref.matched_cosine(x, y), abs=TOL)
    assert m["cone.image"] == pytest.approx(ref.cone(x), abs=TOL)
    assert m["rmg"] == pytest.approx(ref.rmg(x, y), abs=TOL)
    assert m["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=TOL)
    assert m["uniformity.cross"] == pytest.approx(ref.uniformity_cross(x, y), abs=TOL)
    assert m["uniformity.joint"] == pytest.approx(ref.uniformity_joint(x, y), abs=TOL)
    for k in (1, 5):
        assert m[f"recall@{k}.image->text"] == pytest.approx(ref.recall(x, y, k), abs=1e-12)
        assert m[f"recall@{k}.text->image"] == pytest.approx(ref.recall(y, x, k), abs=1e-12)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.integers(3, 8).flatmap(lambda n: st.tuples(raw_rows(n, 3), raw_rows(n, 3))))
def test_bounds_hold_on_arbitrary_rows_at_every_precision(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Duplicated rows, identical modalities, opposite signs: still within bounds, in fp64 and in fp32 tiles."""
    x, y = data
    check_bounds(measured(x, y), x.shape)
    m32 = embspace.measure(image=x.astype(np.float32), text=y.astype(np.float32), metrics=FAMILIES).flat()
    check_bounds(m32, x.shape, slack=1e-6)
    assert m32["gap"] == pytest.approx(ref.gap(x.astype(np.float32), y.astype(np.float32)), abs=1e-6)


@SETTINGS
@given(data=pairs(), seed=st.integers(0, 2**16))
def test_invariant_to_a_common_rotation(data: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    x, y = data
    q = rotation(x.shape[1], seed)
    before, after = measured(x, y), measured(x @ q, y @ q)
    for path in ("gap", "centroid_cosine", "alignment", "matched_cosine", "rmg", "cone.image", "cone.text",
                 "uniformity.image", "uniformity.text", "uniformity.cross", "uniformity.joint", "rankme.image",
                 "effective_rank.text", "participation_ratio.image"):
        assert after[path] == pytest.approx(before[path], abs=1e-8, rel=1e-8), path


@SETTINGS
@given(data=pairs(), seed=st.integers(0, 2**16))
def test_invariant_to_a_consistent_permutation_of_pairs(data: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    x, y = data
    order = np.random.default_rng(seed).permutation(len(x))
    before, after = measured(x, y), measured(x[order], y[order])
    assert before.keys() == after.keys()
    for path, value in before.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(after[path]), path
        else:
            assert after[path] == pytest.approx(value, abs=1e-9, rel=1e-9), path


@SETTINGS
@given(data=pairs())
def test_swapping_the_modalities(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    ab = measured(x, y)
    ba = embspace.measure(image=y, text=x, metrics=FAMILIES, precision="fp64").flat()
    for path in ("gap", "centroid_cosine", "alignment", "matched_cosine", "rmg", "uniformity.mean",
                 "uniformity.joint", "uniformity.cross"):
        assert ba[path] == pytest.approx(ab[path], abs=1e-10), path
    for k in (1, 5, 10):
        assert ba[f"recall@{k}.image->text"] == ab[f"recall@{k}.text->image"]
    assert ba["cone.image"] == pytest.approx(ab["cone.text"], abs=1e-12)
    assert ba["uniformity.image"] == pytest.approx(ab["uniformity.text"], abs=1e-12)


@SETTINGS
@given(data=pairs(min_n=5, max_n=23), tile=st.integers(1, 6))
def test_tiled_equals_exact(data: tuple[np.ndarray, np.ndarray], tile: int) -> None:
    """Tiles of 1–6 rows (most with an uneven last tile) against one tile holding everything."""
    x, y = data
    whole = embspace.measure(image=x, text=y, metrics=FAMILIES + ",histograms", precision="fp64", tile=4096)
    tiled = embspace.measure(image=x, text=y, metrics=FAMILIES + ",histograms", precision="fp64", tile=tile)
    for path, value in whole.flat().items():
        assert tiled.flat()[path] == pytest.approx(value, abs=1e-10, rel=1e-10, nan_ok=True), path
    assert tiled.histograms == whole.histograms


def test_sampled_uniformity_interval_holds_the_exact_value() -> None:
    """A light check (coverage is tested in test_sampling.py): 20 seeds, the exact U inside at least 17 of the
    95% intervals, and every interval within 0.05 of it."""
    x, _ = ref.paired_data("cone", 300, 16, seed=4)
    rows = prepare_rows(torch.from_numpy(x), torch.device("cpu"), torch.float64)
    exact = ref.uniformity(x)
    inside = 0
    for seed in range(20):
        estimate = sampled_uniformity(rows, pairs=20_000, seed=seed)
        inside += estimate.low <= exact <= estimate.high
        assert abs(estimate.value - exact) < 0.05
    assert inside >= 17
