"""Hubness (Radovanović et al. 2010): the skewness of the k-occurrence, both ways, exact.

N_k(ŷ_j) = #{i : ŷ_j is among the k columns most similar to x̂_i} from one
:class:`~embspace.kernels.pairwise.TopK` over the cross pass (ties broken by index, so the top-k sets do not depend
on tiles or processes); hubness A→B = E[(N_k − μ)³]/σ³ (population moments), k = 10. Large positive skew: a few
B items ("hubs") are the neighbours of many A queries. Never sampled, not bootstrapped.
"""

from __future__ import annotations

from typing import ClassVar

from embspace.families.base import Context, Family, Found, Need, PairPass, Statistics
from embspace.kernels.pairwise import TopK
from embspace.metrics.retrieval import k_occurrence, skewness, top_state_bytes


def _top(context: Context, x, y, tile: int) -> TopK:
    return TopK(x.n, y.n, context.settings["hubness_k"], x.device)


def top_pass(context: Context) -> PairPass:
    """The top-k tables of the cross pass: values (float64) and indices (int64) of every row and column."""
    k = context.settings["hubness_k"]
    return PairPass("cross", "top", _top, label="retrieval", state_bytes=top_state_bytes(context.n, context.n, k),
                    options={"k": k})


class Hubness(Family):
    name = "hubness"
    paired_only = True
    table_position = 40.0
    conventions: ClassVar[dict[str, str]] = {
        "hubness": "skewness (population) of the k-occurrence of the target modality in the queries' top-k, "
                   "k = settings.hubness_k (Radovanović et al. 2010)"}
    not_resampled = "hubness"

    def needs(self, context: Context) -> list[Need]:
        return [top_pass(context)]

    def finish(self, context: Context, stats: Statistics) -> Found:
        top = stats.reduction("cross", "top")
        n_rows, n_cols = top.row_index.shape[0], top.col_index.shape[1]
        there, back = context.directions()
        return Found(metrics={"hubness": {there: skewness(k_occurrence(top.row_index, n_cols)),
                                          back: skewness(k_occurrence(top.col_index, n_rows))}})
