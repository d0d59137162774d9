"""Geometric consistency of the two modalities of one model: do the image–image and text–text neighbourhoods agree?

Jiang et al. (CVPR 2023, "Understanding and constructing latent modality structures") ask a multimodal space to
keep its intra-modal geometry consistent across modalities (their L_gc term pulls ⟨x̂_j, x̂_k⟩ toward ⟨ŷ_j, ŷ_k⟩).
As a metric, the agreement of the two modalities' self-similarity structures over the pairs (row i of A with row i
of B), three ways (:mod:`embspace.spaces`):

- ``mutual_knn`` — mean_i |kNN_A(i) ∩ kNN_B(i)|/k, self excluded (Huh et al. 2024), k = 10, from one top-k over
  each modality's self pass (the pass uniformity already runs);
- ``cka`` — linear CKA, ``unbiased`` (Song et al. 2012 HSIC) and ``biased`` (Kornblith et al. 2019), exact from
  one O(N·D²) pass of D×D sums;
- ``procrustes`` — the orthogonal Procrustes residual of the centred, Frobenius-normalised modalities
  (0: one modality is a rotation of the other).

Exact (never sampled). Under pair weights (the paired bootstrap of ``compare``, dense on its seeded subsample of S
pairs, as uniformity and recall@k): CKA from the S×S linear kernels of the subsample, exact for the row-repeated
data in O(S²) per resample (:mod:`embspace.spaces.weighted`); mutual-kNN as the weighted mean Σw m_i/Σw of the
per-row overlaps m_i, with each row's neighbours searched once among the S subsample rows and held fixed (the
variance of the neighbour search itself is left out, as recall@k holds its candidate set fixed). Procrustes fits
a rotation to the rows, so a bootstrap resample's copies of a row would bias it low: ``compare`` bounds it by
half-samples instead (:meth:`Structure.on_rows`, the delete-d jackknife of :mod:`embspace.bootstrap`), one D×D
cross-Gram and symmetric eigenproblem per half-sample.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from embspace.families.base import (
    Context,
    Family,
    Found,
    Need,
    PairPass,
    RowStat,
    Statistics,
    Weighted,
    exact_pass_left_out,
)
from embspace.kernels.pairwise import Reduction
from embspace.spaces.cka import CKA_CONVENTION, cka_from_sums
from embspace.spaces.neighbours import KNN_K, MUTUAL_KNN_CONVENTION, SelfNeighbours, neighbours_of, overlap
from embspace.spaces.procrustes import PROCRUSTES_CONVENTION, procrustes_from_sums, procrustes_of_rows
from embspace.spaces.weighted import Kernels, weighted_cka, weighted_mean

SPACE_SUMS = RowStat("space_sums", label="structure")
MIN_PAIRS = 4
RESAMPLED_CKA = ("compare's bootstrap: on its seeded subsample of S pairs, exact for the resampled rows (row i "
                 "repeated w_i times) from the S×S linear kernels, O(S²) per resample")
HALF_SAMPLED = ("compare's noise bound: the delete-d jackknife over seeded half-samples of a pool of pairs "
                "(Shao & Wu 1989; a bootstrap resample's copies of a row would bias a fitted rotation)")
RESAMPLED_KNN = ("compare's bootstrap: on its seeded subsample of S pairs, Σw m_i/Σw with each row's k neighbours "
                 "searched once among the S rows and held fixed (leaves out the variance of the neighbour search)")


def _neighbours(context: Context, x, y, tile: int) -> Reduction:
    return SelfNeighbours(x.n, KNN_K, x.device)


def knn_pass(modality: str, n: int) -> PairPass:
    """The k nearest other rows of every row of one modality, from its self pass."""
    return PairPass(modality, "knn", _neighbours, label="structure", state_bytes=4 * 8 * n * KNN_K,
                    options={"k": KNN_K})


def knn_left_out(context: Context) -> str | None:
    """Why a run leaves mutual-kNN out (an exact top-k over each modality's self pass), or None."""
    return exact_pass_left_out(context,
                               "a sharded run does not shard the within-modality kNN; measure it in one process",
                               "mutual-kNN needs an exact self pass per modality (--estimate exact)")


class Structure(Family):
    name = "structure"
    aliases = ("cka", "mutual_knn", "procrustes", "geometric_consistency")
    paired_only = True
    table_position = 45.0
    conventions: ClassVar[dict[str, str]] = {
        "cka": f"between the two modalities over the pairs; {CKA_CONVENTION}; {RESAMPLED_CKA}",
        "mutual_knn": f"between the two modalities' self-neighbourhoods (Jiang et al. 2023 geometric consistency); "
                      f"{MUTUAL_KNN_CONVENTION}; k = 10; {RESAMPLED_KNN}",
        "procrustes": f"between the two modalities; {PROCRUSTES_CONVENTION}; {HALF_SAMPLED}"}
    resampled = "subsample"

    def needs(self, context: Context) -> list[Need]:
        if context.n < MIN_PAIRS:
            return []
        if knn_left_out(context):  # the sums add across ranks and cost O(N·D²); the self kNN is an N² pass
            return [SPACE_SUMS]
        return [SPACE_SUMS, *(knn_pass(name, context.n) for name in context.names)]

    def finish(self, context: Context, stats: Statistics) -> Found:
        a, b = context.names
        if context.n < MIN_PAIRS:
            return Found(settings={"structure": {"left_out": f"needs at least {MIN_PAIRS} pairs (unbiased HSIC: "
                                                              f"n − 3 in its denominator), got {context.n}"}})
        sums = stats[SPACE_SUMS]
        metrics = {"cka": cka_from_sums(sums), "procrustes": procrustes_from_sums(sums)}
        if knn_left_out(context):
            return Found(metrics=metrics, settings={"structure_k": KNN_K, "structure": {
                "left_out": {"mutual_knn": knn_left_out(context)}}})
        knn_a, knn_b = (stats.reduction(name, "knn").neighbours() for name in (a, b))
        metrics = {"cka": metrics["cka"], "mutual_knn": float(overlap(knn_a, knn_b).mean()),
                   "procrustes": metrics["procrustes"]}
        return Found(metrics=metrics, settings={"structure_k": KNN_K})

    def resample_paths(self, names, settings) -> list[str]:
        return ["cka.unbiased", "cka.biased", "mutual_knn"]

    def half_sample_paths(self, names, settings) -> list[str]:
        return ["procrustes"]

    def on_rows(self, x, y, names, settings, *, exact: bool = True) -> dict[str, float]:
        if x.shape[0] < MIN_PAIRS:
            return {"procrustes": float("nan")}
        return {"procrustes": procrustes_of_rows(x, y, exact=exact)}

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        if view.x.shape[0] < MIN_PAIRS:
            return {path: np.full(view.w.shape[0], np.nan) for path in self.resample_paths(view.names, {})}

        def overlaps() -> torch.Tensor:
            return overlap(neighbours_of(view.x, KNN_K), neighbours_of(view.y, KNN_K))  # (S,) m_i

        cka = weighted_cka(view.static("structure_kernels", lambda: Kernels(view.x, view.y)), view.w)
        return {"cka.unbiased": cka["unbiased"].numpy(), "cka.biased": cka["biased"].numpy(),
                "mutual_knn": weighted_mean(view.static("structure_overlaps", overlaps), view.w).numpy()}
