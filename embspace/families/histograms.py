"""Similarity histograms: counts of x̂·ŷ in equal bins over [−1, 1] (numpy.histogram's edges and half-open bins).

matched = the true pairs i = j, unmatched = cross-modal pairs i ≠ j, within = pairs i < j of each modality; exact
from :class:`~embspace.kernels.pairwise.Histogram` reductions riding on the shared passes, or (above
``sample_above`` rows) the unmatched and within counts of the sampled pairs, the matched ones exact. Stored in
``report.histograms`` (the figures read them), not in the metric table.

Exact paired runs add ``histograms["margin"]``: per retrieval direction, the counts of each query's margin (its
partner's similarity minus the best other candidate's, :mod:`embspace.metrics.ranking`) in the same number of
equal bins over [−2, 2] (``histograms["margin"]["edges"]``), from the retrieval family's rank pass.
"""

from __future__ import annotations

from typing import ClassVar

from embspace.families.base import Context, Family, Found, Need, PairPass, Sampled, Statistics
from embspace.families.retrieval import best_other_pass, deep_directions, margins_computed, rank_pass
from embspace.kernels.pairwise import Histogram
from embspace.metrics.ranking import margin_edges, margin_histogram

CONVENTION = ("counts of the cosine similarity x̂·ŷ in equal bins over [−1, 1] (numpy.histogram's edges and "
              "half-open bins): matched = true pairs i = j, unmatched = cross-modal pairs i ≠ j, "
              "within = pairs i < j of each modality; exact")


def _within(context: Context, x, y, tile: int) -> Histogram:
    return Histogram(context.settings["histogram_bins"], symmetric=True, device=x.device)


def _cross(context: Context, x, y, tile: int) -> Histogram:
    return Histogram(context.settings["histogram_bins"], symmetric=False, device=x.device)


class Histograms(Family):
    name = "histograms"
    aliases = ("histogram",)
    table_position = 60.0
    conventions: ClassVar[dict[str, str]] = {"histograms": CONVENTION}

    def needs(self, context: Context) -> list[Need]:
        if context.sampled:
            return [Sampled("pairs", label="histograms", options={"bins": context.settings["histogram_bins"]})]
        needs: list[Need] = [PairPass(name, "histogram", _within, label="histograms") for name in context.names]
        if context.paired:
            needs.append(PairPass("cross", "histogram", _cross, label="histograms"))
            if not margins_computed(context):  # the margins (passes shared with retrieval)
                needs += [rank_pass(context), best_other_pass(context)]
        return needs

    def finish(self, context: Context, stats: Statistics) -> Found:
        if context.sampled:
            return Found(histograms=stats.sampled("pairs")[2])
        within = {name: stats.reduction(name, "histogram") for name in context.names}
        histograms = {"edges": next(iter(within.values())).edges.tolist()}
        if context.paired:
            histograms.update(stats.reduction("cross", "histogram").counts())
        histograms["within"] = {name: h.counts()["within"] for name, h in within.items()}
        if context.paired and not margins_computed(context):
            histograms["margin"] = margin_histograms(context, stats)
        elif context.paired:
            return Found(histograms=histograms, settings={"histograms": {"left_out": {
                "margin": margins_computed(context)}}})
        return Found(histograms=histograms)


def margin_histograms(context: Context, stats: Statistics) -> dict:
    """``{"edges": […], direction: counts}`` of the per-query margins over [−2, 2]."""
    bins = context.settings["histogram_bins"]
    out = {"edges": margin_edges(bins)}
    for direction, (_, _, _, margin) in deep_directions(context, stats).items():
        out[direction] = margin_histogram(margin, bins)
    return out
