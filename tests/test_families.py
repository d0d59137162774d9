"""The families as units: every statistic merges associatively, top-k ties go to the lower index whatever the
tiling, each bootstrapped family's weighted form at w = 1 is its exact metric, and the worked example of adding a
family (gap_split, docs/families.md) holds its identity against a float64 brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import embspace
from embspace.compare import _Resampled
from embspace.families import FAMILIES, REGISTRY, family, parse_metrics
from embspace.kernels.pairwise import ExpSum, Histogram, RankCount, TopK, keep_best, tile_topk
from embspace.kernels.rows import ResidentRows, prepare_rows
from embspace.metrics.centroid import moment_sums, pair_sums
from embspace.metrics.spectrum import Gram
from tests import reference as ref

CPU = torch.device("cpu")


def rows(a: np.ndarray) -> ResidentRows:
    return prepare_rows(a, CPU, torch.float64)


def lexicographic_top(sim: np.ndarray, k: int) -> np.ndarray:
    """The k largest of each row, ties to the lower column (a stable sort of −s)."""
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


# --- top-k ties ---------------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000), st.integers(1, 9))
def test_tile_topk_takes_the_lowest_positions_of_a_tie(k, seed, distinct):
    """Entries drawn from a few values tie everywhere; the kept positions are those of a stable sort."""
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, distinct, size=(7, 11)).astype(np.float64)
    for dim, view in ((1, sim), (0, sim.T)):
        values, index = tile_topk(torch.from_numpy(sim), min(k, view.shape[1]), dim=dim)
        got = index.numpy() if dim == 1 else index.numpy().T
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(lexicographic_top(view, min(k, view.shape[1])),
                                                                        axis=1))
        np.testing.assert_array_equal(values.numpy() if dim == 1 else values.numpy().T,
                                      -np.sort(-view, axis=1)[:, : min(k, view.shape[1])])


@pytest.mark.parametrize("tile", [3, 8, 50])
def test_top_k_sets_do_not_depend_on_the_tiling(tile):
    """Duplicated rows (a few distinct captions) make most similarities equal: every tiling keeps the same sets,
    those of the float64 brute force with ties to the lower index.

    The rows are (±½, ±½, ±½, ±½): unit norm and every product exact, so the ties are ties in any summation order.
    (With general floats a BLAS may round one dot product differently by its position in a tile — MKL on AMD EPYC
    does, by one ulp in float64 — and duplicated rows then are no longer exact ties.)"""
    rng = np.random.default_rng(3)
    signs = rng.choice([-0.5, 0.5], size=(9, 4))
    x = signs[:5][rng.integers(0, 5, 50)]
    y = signs[5:][rng.integers(0, 4, 50)]
    rx, ry = rows(x), rows(y)
    top = TopK(50, 50, 6, CPU)
    embspace.kernels.engine.stream_pairs(rx, ry, [top], tile=tile, backend="torch")
    sim = ref.unit(x) @ ref.unit(y).T
    # ties are ties of the engine's own float64 products (numpy's may differ in the last bit)
    exact = (rx.data @ ry.data.T).numpy()
    want_rows, want_cols = lexicographic_top(exact, 6), lexicographic_top(exact.T, 6)
    np.testing.assert_array_equal(np.sort(top.row_index.numpy(), axis=1), np.sort(want_rows, axis=1))
    np.testing.assert_array_equal(np.sort(top.col_index.numpy().T, axis=1), np.sort(want_cols, axis=1))
    assert np.abs(np.sort(sim, axis=1)[:, ::-1][:, :6] - top.row_values.numpy()).max() < 1e-12


def test_keep_best_breaks_ties_by_index_and_puts_unfilled_slots_last():
    best = torch.tensor([[2.0, -math.inf]], dtype=torch.float64)
    best_index = torch.tensor([[9, -1]])
    values, index = keep_best(best, best_index, torch.tensor([[2.0, 1.0]]), torch.tensor([[4, 3]]), dim=1)
    assert index.tolist() == [[4, 9]] and values.tolist() == [[2.0, 2.0]]


# --- merges -------------------------------------------------------------------------------------------------------

def split_states(x: np.ndarray, y: np.ndarray, cuts: tuple[int, int]):
    """The statistics of three row ranges of a cross problem, each over its own tiles, and of the whole."""
    rx, ry = rows(x), rows(y)
    n = len(x)
    sim = rx.data @ ry.data.T
    bounds = [(0, cuts[0]), (cuts[0], cuts[1]), (cuts[1], n)]

    def states(r0: int, r1: int):
        part = sim[r0:r1]
        acc = ExpSum(3.0, symmetric=False, exclude_diagonal=True)
        hist = Histogram(16, symmetric=False)
        ranks = RankCount(sim.diagonal().clone())
        top = TopK(n, n, 4, CPU)
        for reduction in (acc, hist, ranks, top):
            reduction.update(part, r0, 0, diagonal=False)
        return acc, hist, ranks, top

    return [states(*b) for b in bounds if b[1] > b[0]]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 20), st.integers(1, 20))
def test_merges_are_associative(seed, first, second):
    rng = np.random.default_rng(seed)
    n = 24
    x, y = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    cut = (min(first, n - 2), min(first, n - 2) + min(second, n - 1 - min(first, n - 2)))
    parts = split_states(x, y, cut)
    while len(parts) < 3:
        parts.append(split_states(x, y, (0, 0))[0])  # pad with a state of the whole (merged twice below)

    def merged(order):
        left = [_copy(s) for s in parts[order[0]]]
        for index in order[1:]:
            for state, other in zip(left, parts[index], strict=True):
                state.merge(other)
        return left

    one, two = merged((0, 1, 2)), merged((2, 0, 1))
    assert one[0].log_sum() == pytest.approx(two[0].log_sum(), rel=1e-14)
    assert one[1].counts() == two[1].counts()
    assert torch.equal(one[2].rows, two[2].rows) and torch.equal(one[2].cols, two[2].cols)
    assert torch.equal(one[3].row_index, two[3].row_index) and torch.equal(one[3].col_index, two[3].col_index)


def _copy(state):
    clone = type(state).__new__(type(state))
    clone.__dict__ = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in state.__dict__.items()}
    return clone


def test_row_statistics_merge_to_the_whole():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    whole = pair_sums(rows(x), rows(y))
    parts = [pair_sums(rows(x[a:b]), rows(y[a:b])) for a, b in ((0, 11), (11, 13), (13, 30))]
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert merged.n == whole.n and merged.dots == pytest.approx(whole.dots, rel=1e-14)
    assert torch.allclose(merged.x.total, whole.x.total, rtol=1e-14)
    moments = moment_sums(rows(x[:7])).merge(moment_sums(rows(x[7:])))
    assert moments.cone() == pytest.approx(ref.cone(x), abs=1e-14)
    gram = Gram.of_rows(rows(x[:4])).merge(Gram.of_rows(rows(x[4:])))
    np.testing.assert_allclose(gram.singular_values(centered=True), ref.singular_values(x, centered=True)[:6],
                               rtol=1e-10, atol=1e-10)


# --- weighted forms -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["random", "cone"])
def test_weighted_forms_at_unit_weights_are_the_exact_metrics(kind):
    """w = 1 turns every bootstrapped family's weighted form into its metric: the same numbers as measure."""
    x, y = ref.paired_data(kind, 120, 10, seed=4)
    report = embspace.measure(image=x, text=y, precision="fp64")
    unit = {"t": 2.0, "alpha": 2.0, "recall_ks": (1, 5, 10)}
    tx, ty = (torch.from_numpy(ref.unit(a)).float() for a in (x, y))
    checked = set()
    for how in ("pairs", "subsample"):
        found = _Resampled(how, tx, ty, ("image", "text"), unit)
        values = found.values(torch.ones(1, len(x)))
        assert set(values) == set(found.paths)
        for path, value in values.items():
            assert value[0] == pytest.approx(report[path], abs=2e-5), path
            checked.add(path)
    bootstrapped = {f.name for f in REGISTRY if f.resampled}
    assert {"gap", "alignment", "cone", "rmg", "uniformity", "retrieval", "gap_split"} <= bootstrapped
    assert {"uniformity.joint", "recall@5.text->image", "gap_split.residual", "rmg"} <= checked


def test_every_family_names_its_conventions_and_how_it_is_bootstrapped():
    for fam in REGISTRY:
        assert fam.name in FAMILIES and parse_metrics(fam.name) == [fam.name]
        assert fam.resampled in ("pairs", "subsample", None)
        if fam.resampled is None and fam.name != "histograms":
            assert fam.not_resampled, fam.name
    report = embspace.measure(image=np.eye(6) + 0.1, text=np.eye(6)[::-1] + 0.1)
    assert set(report.metrics) <= set(report.conventions)


# --- the worked example: gap_split --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["random", "cone", "clustered"])
def test_gap_split_is_the_exact_split_of_the_squared_pair_distance(kind):
    x, y = ref.paired_data(kind, 200, 12, seed=9)
    report = embspace.measure(image=x, text=y, metrics="gap_split,gap,alignment", precision="fp64")
    ux, uy = ref.unit(x), ref.unit(y)
    delta = ux.mean(0) - uy.mean(0)
    residual = ux - uy - delta
    squared = ((ux - uy) ** 2).sum(1).mean()
    assert report["gap_split.centroid"] == pytest.approx(delta @ delta, abs=1e-12)
    assert report["gap_split.residual"] == pytest.approx((residual**2).sum(1).mean(), abs=1e-12)
    assert report["gap_split.centroid"] + report["gap_split.residual"] == pytest.approx(report["alignment"], abs=1e-9)
    assert report["gap_split.centroid"] == pytest.approx(report["gap"] ** 2, abs=1e-12)
    assert report["gap_split.centroid_share"] == pytest.approx(delta @ delta / squared, abs=1e-12)
    assert "gap_split" in report.conventions and family("gap_split").resampled == "pairs"


def test_gap_split_is_bootstrapped_by_compare():
    x, y = ref.paired_data("cone", 150, 8, seed=2)
    shifted = y - 0.5 * (ref.unit(y).mean(0) - ref.unit(x).mean(0))
    before = embspace.measure(image=x, text=y, metrics="gap_split")
    after = embspace.measure(image=x, text=shifted, metrics="gap_split")
    found = embspace.compare(before, after, data_before={"image": x, "text": y},
                             data_after={"image": x, "text": shifted}, resamples=200)
    test = found.significance.metrics["gap_split.centroid"]
    assert test.change == pytest.approx(after["gap_split.centroid"] - before["gap_split.centroid"], abs=1e-6)
