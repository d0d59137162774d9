"""Deeper retrieval of 1:1 pairs (tie conventions, ranks, MRR, margins, their histogram) and the duplicate-row
counts, against float64 brute force on data with constructed ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

import embspace
from embspace.embeddings import Embeddings
from embspace.io.duplicates import duplicate_rows
from embspace.kernels.pairwise import RankCount, matched_similarities, stream_torch
from embspace.kernels.rows import prepare_rows
from embspace.metrics.ranking import hit_probability
from tests.test_many_to_many import brute

KS = (1, 3, 10)


def tied_pairs(rng: np.random.Generator, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of ±1/4 (D = 16; similarities are multiples of 1/16, exact in any order), with repeated rows."""
    pool_x, pool_y = rng.choice([-0.25, 0.25], size=(12, 16)), rng.choice([-0.25, 0.25], size=(9, 16))
    x = pool_x[rng.integers(0, 12, size=n)]
    y = np.where(rng.random(size=(n, 16)) < 0.85, x, pool_y[rng.integers(0, 9, size=n)])
    return x, y


@pytest.mark.parametrize("precision", ["fp64", "fp32"])
def test_tie_conventions_ranks_and_margins(precision, one_thread):
    x, y = tied_pairs(np.random.default_rng(2))
    report = embspace.measure(image=x, text=y, metrics="retrieval,histograms", recall_ks=KS, precision=precision,
                              device="cpu", normalize=False, histogram_bins=40, tile=32)
    scores, positive = x @ y.T, np.eye(len(x), dtype=bool)
    for direction, s, pos in (("image->text", scores, positive), ("text->image", scores.T, positive)):
        ref = brute(s, pos, KS)
        assert ref["tied"] > 5  # the data really has ties with the partner
        assert report[f"tied_partner.{direction}"] == ref["tied"]
        for k in KS:
            assert report[f"recall@{k}.{direction}"] == pytest.approx(ref["optimistic"][k], abs=0)
            assert report[f"recall_pessimistic@{k}.{direction}"] == pytest.approx(ref["pessimistic"][k], abs=0)
            assert report[f"recall_expected@{k}.{direction}"] == pytest.approx(ref["expected"][k], abs=1e-12)
        for key in ("median_rank", "mean_rank", "mrr"):
            assert report[f"{key}.{direction}"] == pytest.approx(ref[key], rel=1e-12)
        assert report[f"margin_mean.{direction}"] == pytest.approx(ref["margin"].mean(), abs=1e-12)
        assert report[f"margin_negative.{direction}"] == pytest.approx((ref["margin"] < 0).mean(), abs=0)
        counts = np.histogram(ref["margin"], bins=40, range=(-2, 2))[0]
        assert report.histograms["margin"][direction] == counts.tolist()
    assert report["recall_pessimistic@1.image->text"] < report["recall_expected@1.image->text"] < \
        report["recall@1.image->text"]


def test_rank_count_ties_do_not_depend_on_the_tile():
    x, y = tied_pairs(np.random.default_rng(7), n=50)
    import torch

    truth = ((x @ y.T) == np.diag(x @ y.T)[:, None]).sum(1) - 1
    for tile in (7, 16, 64):
        rx, ry = (prepare_rows(a, torch.device("cpu"), torch.float64) for a in (x, y))
        ranks = RankCount(matched_similarities(rx, ry, tile=tile))
        stream_torch(rx, ry, [ranks], tile=tile)
        assert ranks.row_ties.tolist() == truth.tolist()
        assert ranks.col_ties.tolist() == (((x @ y.T) == np.diag(x @ y.T)[None, :]).sum(0) - 1).tolist()


def test_expected_recall_closed_form():
    """1 − C(t, x)/C(t+m, x) against counting the placements of the m relevant items in the tie group."""
    for t in range(0, 7):
        for m in range(1, 4):
            for above in range(0, 5):
                for k in (1, 2, 5):
                    x = k - above
                    if x <= 0:
                        want = 0.0
                    elif x > t:
                        want = 1.0
                    else:  # all m relevant in the last t + m − x places of the group
                        want = 1 - math.comb(t + m - x, m) / math.comb(t + m, m)
                    got = hit_probability(np.array([above]), np.array([t]), np.array([m]), k)[0]
                    assert got == pytest.approx(want, abs=1e-12), (t, m, above, k)


def test_duplicate_rows_in_every_report(one_thread):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    x[[4, 9, 20]] = x[2]
    x[11] = x[12]
    x[13, 0] = -0.0
    x[14] = x[13]
    x[14, 0] = 0.0  # differs from row 13 in its stored bytes only
    assert duplicate_rows(Embeddings.from_array(x)) == 4 == len(x) - len(np.unique(x.view(np.uint32), axis=0))
    assert duplicate_rows(Embeddings.from_array(x), chunk_rows=7) == 4
    report = embspace.measure(image=x, text=rng.normal(size=(30, 5)), metrics="gap")
    assert report.inputs["image"]["duplicate_rows"] == 4 and report.inputs["text"]["duplicate_rows"] == 0
    half = embspace.measure(image=x.astype(np.float16), metrics="cone")
    assert half.inputs["image"]["duplicate_rows"] == len(x) - len(np.unique(x.astype(np.float16).view(np.uint16),
                                                                             axis=0))
