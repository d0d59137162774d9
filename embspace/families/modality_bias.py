"""The modality bias of a pooled gallery: for each query, the share of its k nearest neighbours in X̂ ∪ Ŷ (2N items,
itself excluded) from its own modality, averaged per modality, against chance (N − 1)/(2N − 1)
(:mod:`embspace.metrics.gap_anatomy`). A gap makes a pooled (mixed-modality) retrieval return the query's own
modality: 1.0 when every neighbour is.

Exact, from three top-k tables of the pairwise engine (:class:`~embspace.kernels.pairwise.TopK`, ties by index):
each modality against itself (k + 1 candidates, so that the query itself can be dropped; the passes uniformity
runs) and the cross pass (k). Never sampled; left out of a sharded run (its symmetric top-k
tables are not merged across ranks), which ``settings["modality_bias"]`` says.

Under pair weights (the paired bootstrap of ``compare``, dense on its seeded subsample of S pairs, as recall@k): each
query's own-modality count c_i among its k pooled neighbours in the subsample's 2S items is found once and held
fixed, and the share is Σw c_i/(k Σw) — the queries are resampled, the gallery is the whole subsample (copies of a
gallery item would otherwise take several of a query's k places), so the variance of the neighbour search itself is
left out. The chance level of the subsample, (S − 1)/(2S − 1), is a constant and not resampled.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from embspace.families.base import Context, Family, Found, Need, PairPass, Statistics, Weighted, exact_pass_left_out
from embspace.kernels.pairwise import TopK
from embspace.metrics.gap_anatomy import BIAS_K, chance, merged_symmetric, pooled_neighbours, self_excluded
from embspace.metrics.retrieval import top_state_bytes
from embspace.spaces.weighted import weighted_mean


def _self_top(context: Context, x, y, tile: int) -> TopK:
    return TopK(x.n, x.n, BIAS_K + 1, x.device)


def _cross_top(context: Context, x, y, tile: int) -> TopK:
    return TopK(x.n, y.n, BIAS_K, x.device)


def left_out(context: Context) -> str | None:
    """Why a run leaves modality bias out (its three exact top-k passes), or None."""
    return exact_pass_left_out(context, "a sharded run merges no symmetric top-k tables",
                               "modality bias needs three exact top-k passes (--estimate exact)")


class ModalityBias(Family):
    name = "modality_bias"
    paired_only = True
    table_position = 41.0  # beside hubness: both read top-k tables
    conventions: ClassVar[dict[str, str]] = {
        "modality_bias": f"mean over a modality's queries of the share of its k = {BIAS_K} nearest neighbours "
                         "(cosine) in the pooled gallery of both modalities (2N items, itself excluded, ties by "
                         "gallery index) from its own modality; chance = (N − 1)/(2N − 1); compare's bootstrap: on its "
                         "seeded subsample of S pairs, each query's own-modality count c_i among its k pooled "
                         "neighbours of the subsample's 2S items found once and held fixed, share = Σw c_i/(k Σw) "
                         "(leaves out the variance of the neighbour search); chance not resampled"}
    resampled = "subsample"

    def needs(self, context: Context) -> list[Need]:
        if left_out(context):
            return []
        bytes_self = top_state_bytes(context.n, context.n, BIAS_K + 1)
        return [*(PairPass(name, "pooled_top", _self_top, label="modality_bias", state_bytes=bytes_self,
                           options={"k": BIAS_K + 1}) for name in context.names),
                PairPass("cross", "pooled_top", _cross_top, label="modality_bias",
                         state_bytes=top_state_bytes(context.n, context.n, BIAS_K), options={"k": BIAS_K})]

    def finish(self, context: Context, stats: Statistics) -> Found:
        if left_out(context):
            return Found(settings={"modality_bias": {"k": BIAS_K, "left_out": left_out(context)}})
        a, b = context.names
        cross = stats.reduction("cross", "pooled_top")
        k = min(BIAS_K, context.n - 1)
        shares = {}
        for name, other_values, first in ((a, cross.row_values, True), (b, cross.col_values.T, False)):
            top = stats.reduction(name, "pooled_top")
            values, index = merged_symmetric(top.row_values, top.row_index, top.col_values, top.col_index,
                                             top.k_rows)
            own_values, own_index = self_excluded(values, index, k)
            own = pooled_neighbours(own_values, own_index, other_values, k, context.n, first)
            shares[name] = float(own.double().mean() / k) if k > 0 else float("nan")
        return Found(metrics={"modality_bias": {**shares, "chance": chance(context.n)}},
                     settings={"modality_bias": {"k": k}})

    def resample_paths(self, names, settings) -> list[str]:
        return [f"modality_bias.{name}" for name in names]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        a, b = view.names
        counts = view.static("modality_bias_counts", lambda: own_counts(view.x, view.y))
        k = min(BIAS_K, view.x.shape[0] - 1)
        if k <= 0:
            return {f"modality_bias.{name}": np.full(view.w.shape[0], np.nan) for name in (a, b)}
        return {f"modality_bias.{name}": (weighted_mean(count, view.w) / k).numpy()
                for name, count in zip((a, b), counts, strict=True)}


def own_counts(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query of each modality (S,) float64, how many of its k = min(BIAS_K, S − 1) nearest neighbours in the
    pooled gallery X̂ ∪ Ŷ (itself excluded; ties by gallery index, X's items first) are from its own modality;
    dense S×S similarities, for a bootstrap subsample. With t_i the k-th largest pooled similarity: the items
    above t_i, then the ties at t_i in gallery order."""
    n = x.shape[0]
    k = min(BIAS_K, n - 1)
    out = []
    for query, gallery, first in ((x, y, True), (y, x, False)):
        own = (query @ query.T).fill_diagonal_(-torch.inf)  # itself excluded
        other = query @ gallery.T
        threshold = torch.cat([own, other], dim=1).topk(k, dim=1).values[:, -1:]  # (S, 1) t_i
        above_own, above_other = (own > threshold).sum(1), (other > threshold).sum(1)
        tied_own, tied_other = (own == threshold).sum(1), (other == threshold).sum(1)
        left = k - above_own - above_other  # places for the ties at t_i
        taken = torch.minimum(left, tied_own) if first else left - torch.minimum(left, tied_other)
        out.append((above_own + taken).double())
    return out[0], out[1]
