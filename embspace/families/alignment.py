"""Alignment (Wang & Isola 2020) and the matched cosine, over the true pairs.

- alignment: mean_i ‖x̂_i − ŷ_i‖^α (α = 2: ``align_loss``);
- matched cosine: mean_i x̂_i·ŷ_i (not the cone effect: Fahim et al.'s code names collide).

Exact from the float64 sums of one O(N·D) pass; under pair weights w, Σw_i·term_i / Σw_i.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embspace.families.base import Context, Family, Found, Need, Statistics, Weighted
from embspace.families.gap import PAIR_SUMS


def matched_terms(view: Weighted) -> tuple:
    """Per-pair x̂_i·ŷ_i and ‖x̂_i − ŷ_i‖^α (N,) of a bootstrap's rows, computed once."""
    alpha = float(view.settings.get("alpha", 2.0))
    return view.static("matched_terms", lambda: ((view.x * view.y).sum(1), (view.x - view.y).norm(dim=1).pow(alpha)))


class Alignment(Family):
    name = "alignment"
    aliases = ("matched_cosine",)
    paired_only = True
    table_position = 1.0
    conventions: ClassVar[dict[str, str]] = {"alignment": "mean_i ‖x̂_i − ŷ_i‖^α, α from settings (Wang & Isola 2020)",
                   "matched_cosine": "mean_i x̂_i·ŷ_i over the true pairs"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        return [PAIR_SUMS]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        return Found(metrics={"alignment": sums.distances / sums.n, "matched_cosine": sums.dots / sums.n})

    def resample_paths(self, names, settings) -> list[str]:
        return ["alignment", "matched_cosine"]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        matched, distance = matched_terms(view)
        n = view.w.sum(1).double()
        return {"alignment": ((view.w @ distance).double() / n).numpy(),
                "matched_cosine": ((view.w @ matched).double() / n).numpy()}
