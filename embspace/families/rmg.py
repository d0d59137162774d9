"""The relative modality gap (Schrodi et al. 2024).

d_m = max(1 − (matched + 1)/2, 1e-3) (the matched pairs' distance in cosine units), d_A = 1 − (cone_A + 1)/2 and
d_B likewise (within each modality), RMG = d_m / (d_m + (d_A + d_B)/2). From first moments, O(N·D).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embspace.families.alignment import matched_terms
from embspace.families.base import Context, Family, Found, Need, Statistics, Weighted
from embspace.families.cone import weighted_cones
from embspace.families.gap import PAIR_SUMS

MATCHED_FLOOR = 1e-3


def relative_modality_gap(matched_cosine, cone_a, cone_b):
    """RMG from the matched cosine and the two within-modality mean cosines (floats, or tensors of one shape)."""
    distance = 1 - (matched_cosine + 1) / 2
    d_matched = max(distance, MATCHED_FLOOR) if isinstance(distance, float) else distance.clamp_min(MATCHED_FLOOR)
    d_a, d_b = 1 - (cone_a + 1) / 2, 1 - (cone_b + 1) / 2
    return d_matched / (d_matched + (d_a + d_b) / 2)


class RelativeModalityGap(Family):
    name = "rmg"
    paired_only = True
    table_position = 2.0
    conventions: ClassVar[dict[str, str]] = {
        "rmg": "relative modality gap d_m/(d_m + (d_A + d_B)/2), d_m = max(1 − (matched+1)/2, 1e-3), "
               "d_A = 1 − (cone_A+1)/2 (Schrodi et al. 2024)"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        return [PAIR_SUMS]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        return Found(metrics={"rmg": relative_modality_gap(sums.dots / sums.n, sums.x.cone(), sums.y.cone())})

    def resample_paths(self, names, settings) -> list[str]:
        return ["rmg"]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        matched, _ = matched_terms(view)
        cone_x, cone_y = weighted_cones(view)
        return {"rmg": relative_modality_gap((view.w @ matched).double() / view.w.sum(1).double(),
                                             cone_x, cone_y).numpy()}
