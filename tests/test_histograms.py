"""The Histogram reduction and the ``histograms`` family against numpy.histogram of the dense similarity matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import embspace
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import Histogram
from embspace.kernels.rows import prepare_rows
from embspace.measure import parse_metrics
from embspace.report import Report
from tests import reference as ref

CPU = torch.device("cpu")


def dense_counts(a: np.ndarray, b: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    """numpy.histogram of x̂·ŷᵀ (float64): matched (diagonal), unmatched (off-diagonal), and of x̂·x̂ᵀ (i < j)."""
    sim = np.clip(ref.unit(a) @ ref.unit(b).T, -1, 1)
    self_sim = np.clip(ref.unit(a) @ ref.unit(a).T, -1, 1)
    off = ~np.eye(len(a), dtype=bool)
    upper = np.triu_indices(len(a), k=1)
    hist = lambda v: np.histogram(v, bins=bins, range=(-1, 1))[0]  # noqa: E731
    return {"matched": hist(np.diag(sim)), "unmatched": hist(sim[off]), "within": hist(self_sim[upper])}


@pytest.mark.parametrize(("n", "tile", "bins"), [(37, 8, 20), (50, 50, 200), (41, 16, 7)])
def test_reduction_equals_numpy_histogram(n, tile, bins):
    x, y = ref.paired_data("cone", n, 12, seed=n)
    rows_x = prepare_rows(x, CPU, torch.float64)
    rows_y = prepare_rows(y, CPU, torch.float64)
    cross, within = Histogram(bins, symmetric=False), Histogram(bins, symmetric=True)
    stream_pairs(rows_x, rows_y, [cross], tile=tile)
    stream_pairs(rows_x, None, [within], tile=tile)
    expected = dense_counts(x, y, bins)
    assert cross.matched.dtype == torch.int64
    np.testing.assert_array_equal(cross.matched.numpy(), expected["matched"])
    np.testing.assert_array_equal(cross.unmatched.numpy(), expected["unmatched"])
    np.testing.assert_array_equal(within.within.numpy(), expected["within"])
    assert within.within.sum() == n * (n - 1) // 2 and cross.unmatched.sum() == n * (n - 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_on_and_beside_every_edge_fall_in_numpys_bins(dtype):
    hist = Histogram(200, symmetric=True)
    edges = torch.from_numpy(hist.edges).to(dtype)
    values = torch.cat([edges, edges.nextafter(torch.tensor(2.0, dtype=dtype)),
                        edges.nextafter(torch.tensor(-2.0, dtype=dtype)),
                        torch.tensor([1.5, -3.0, 3e7, -1e10, float("inf"), -float("inf")], dtype=dtype)])
    expected = np.histogram(np.clip(values.double().numpy(), -1, 1), bins=hist.edges)[0]
    np.testing.assert_array_equal(hist._count(values).numpy(), expected)


def test_half_precision_tiles_are_counted_as_float32():
    x, y = ref.paired_data("random", 30, 8, seed=3)
    hist = Histogram(50, symmetric=False)
    stream_pairs(prepare_rows(x, CPU, torch.float16), prepare_rows(y, CPU, torch.float16), [hist], tile=7)
    assert int(hist.matched.sum()) == 30 and int(hist.unmatched.sum()) == 30 * 29


def test_histograms_family_in_the_report_round_trips_through_json():
    x, y = ref.paired_data("cone", 60, 10, seed=0)
    report = embspace.measure(image=x, text=y, metrics="histograms", precision="fp64", histogram_bins=40, tile=16)
    expected = dense_counts(x, y, 40)
    h = report.histograms
    np.testing.assert_allclose(h["edges"], np.linspace(-1, 1, 41))
    assert h["matched"] == expected["matched"].tolist()
    assert h["unmatched"] == expected["unmatched"].tolist()
    assert h["within"]["image"] == expected["within"].tolist()
    assert sum(h["within"]["text"]) == 60 * 59 // 2
    assert report.settings["histogram_bins"] == 40 and "histograms" in report.conventions
    again = Report.from_json(report.to_json())
    assert again.histograms == h


def test_single_modality_gets_within_histogram_only():
    x, _ = ref.paired_data("random", 20, 4, seed=1)
    report = embspace.measure(image=x, metrics="histograms")
    assert set(report.histograms) == {"edges", "within"} and set(report.histograms["within"]) == {"image"}


def test_histograms_are_in_all_and_leave_other_metrics_unchanged():
    x, y = ref.paired_data("cone", 40, 8, seed=2)
    every = embspace.measure(image=x, text=y, metrics="gap,uniformity,retrieval,histograms")
    without = embspace.measure(image=x, text=y, metrics="gap,uniformity,retrieval")
    assert every.metrics == without.metrics and without.histograms == {}
    assert "histograms" in parse_metrics("all") and "histograms" in parse_metrics(None)
    assert sum(every.histograms["matched"]) == 40


def test_reports_written_before_histograms_still_load():
    x, y = ref.paired_data("random", 20, 4, seed=1)
    data = json.loads(embspace.measure(image=x, text=y, metrics="gap").to_json())
    del data["histograms"]
    assert Report.from_dict(data).histograms == {}


def test_bad_bins_are_refused():
    x, y = ref.paired_data("random", 20, 4, seed=1)
    with pytest.raises(embspace.InputError, match="at least 1 bin"):
        embspace.measure(image=x, text=y, metrics="histograms", histogram_bins=0)
