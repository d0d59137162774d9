"""The relative modality gap (Schrodi et al. 2024, ``compute_rmg`` in their code).

d_m = 1 − (matched + 1)/2 (the matched pairs' distance in cosine units), d_A = 1 − (cone_A + 1)/2 and d_B likewise
(within each modality), RMG = d_m / (d_m + (d_A + d_B)/2). From first moments, O(N·D).

The floor on d_m, by name (``rmg_floor``):

- ``"source"`` (default, the authors' ``compute_rmg``): d_m is replaced by 1e-3 only where it is not positive
  (``torch.where(d_m > 0, d_m, 1e-3)``): a matched cosine of exactly 1 (identical modalities) gives d_m = 1e-3;
- ``"clamp"``: max(d_m, 1e-3), which also lifts 0 < d_m < 1e-3 (matched cosine above 0.998) — a near-aligned space
  then reads up to several times higher than the source's RMG.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from embspace.families.alignment import matched_terms
from embspace.families.base import Context, Family, Found, Need, Statistics, Weighted
from embspace.families.cone import weighted_cones
from embspace.families.gap import PAIR_SUMS
from embspace.options import check_choice

MATCHED_FLOOR = 1e-3
RMG_FLOORS = ("source", "clamp")
DEFAULT_FLOOR = "source"


def floored_distance(distance, floor: str = DEFAULT_FLOOR):
    """d_m with the floor ``floor`` applied (a float, or a tensor)."""
    if floor not in RMG_FLOORS:
        raise ValueError(f"unknown RMG floor {floor!r}; choose one of {', '.join(RMG_FLOORS)}")
    if isinstance(distance, torch.Tensor):
        if floor == "clamp":
            return distance.clamp_min(MATCHED_FLOOR)
        return torch.where(distance > 0, distance, torch.full_like(distance, MATCHED_FLOOR))
    if floor == "clamp":
        return max(distance, MATCHED_FLOOR)
    return distance if distance > 0 else MATCHED_FLOOR


def relative_modality_gap(matched_cosine, cone_a, cone_b, floor: str = DEFAULT_FLOOR):
    """RMG from the matched cosine and the two within-modality mean cosines (floats, or tensors of one shape)."""
    d_matched = floored_distance(1 - (matched_cosine + 1) / 2, floor)
    d_a, d_b = 1 - (cone_a + 1) / 2, 1 - (cone_b + 1) / 2
    return d_matched / (d_matched + (d_a + d_b) / 2)


def rmg_floor(context: Context) -> str:
    """The floor a run asked for (``source`` unless ``rmg_floor`` says otherwise)."""
    floor = context.options.get("rmg_floor") or DEFAULT_FLOOR
    check_choice(floor, RMG_FLOORS, "rmg_floor", "RMG floor",
                 "source: 1e-3 replaces only d_m ≤ 0, as Schrodi et al.'s compute_rmg; clamp: max(d_m, 1e-3)")
    return floor


class RelativeModalityGap(Family):
    name = "rmg"
    paired_only = True
    table_position = 2.0
    conventions: ClassVar[dict[str, str]] = {
        "rmg": "relative modality gap d_m/(d_m + (d_A + d_B)/2), d_m = 1 − (matched+1)/2, d_A = 1 − (cone_A+1)/2; "
               "settings.rmg_floor: source = 1e-3 replaces only d_m ≤ 0 (Schrodi et al. 2024, compute_rmg), "
               "clamp = max(d_m, 1e-3)"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        rmg_floor(context)  # an unknown floor is refused before any work
        return [PAIR_SUMS]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        floor = rmg_floor(context)
        return Found(metrics={"rmg": relative_modality_gap(sums.dots / sums.n, sums.x.cone(), sums.y.cone(), floor)},
                     settings={"rmg_floor": floor})

    def resample_paths(self, names, settings) -> list[str]:
        return ["rmg"]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        matched, _ = matched_terms(view)
        cone_x, cone_y = weighted_cones(view)
        floor = view.settings.get("rmg_floor", DEFAULT_FLOOR)
        return {"rmg": relative_modality_gap((view.w @ matched).double() / view.w.sum(1).double(),
                                             cone_x, cone_y, floor).numpy()}
