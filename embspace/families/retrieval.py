"""Cross-modal retrieval (CLIP benchmarks): recall@k both ways, exact from rank counts or from sampled queries.

recall@k, A→B: the fraction of rows i of A whose partner ŷ_i is among the k columns most similar to x̂_i by
cosine; pair i is the only positive. Exactly: rank_i < k with rank_i = #{j ≠ i : x̂_i·ŷ_j > x̂_i·ŷ_i} (ties count
in favour of the true pair), one :class:`~embspace.kernels.pairwise.RankCount` over the cross pass. Sampled (above
``sample_above`` rows, unless hubness asks for the exact pass anyway): q random queries ranked exactly against every
candidate, Wilson intervals. Under pair weights w (the bootstrap, dense on a subsample): resampled queries are
ranked against the whole subsample, rank_a = Σ_b [s_ab > s_aa], recall = Σ_a w_a [rank_a < k] / Σw.

Exact runs also report the deeper retrieval of :mod:`embspace.metrics.ranking`: recall@k under the pessimistic and
expected tie conventions (``recall_pessimistic@k``, ``recall_expected@k``; ``recall@k`` is the optimistic one),
``tied_partner`` (queries whose partner's similarity equals another candidate's), median and mean rank, MRR and
the margin (partner similarity − best other: mean, median, fraction negative), from the rank and tie counts of
the :class:`~embspace.kernels.pairwise.RankCount` and one :class:`~embspace.kernels.grouped.BestOther`.
"""

from __future__ import annotations

import numpy as np
import torch

from embspace.families.base import Context, Family, Found, Need, PairPass, Sampled, Statistics, Weighted
from embspace.kernels.grouped import BestOther
from embspace.kernels.pairwise import RankCount
from embspace.metrics.ranking import deep_convention, deep_metrics
from embspace.metrics.retrieval import RECALL_KS, rank_state_bytes, recall_from_ranks


def _ranks(context: Context, x, y, tile: int) -> RankCount:
    return RankCount.from_tiles(x, y)


def rank_pass(context: Context) -> PairPass:
    """The rank counts of the cross pass (N rank counts each way and the matched similarities)."""
    return PairPass("cross", "ranks", _ranks, label="retrieval", state_bytes=rank_state_bytes(context.n, context.n))


def _best_other(context: Context, x, y, tile: int) -> BestOther:
    return BestOther(x.n, y.n, x.device)


def best_other_pass(context: Context) -> PairPass:
    """The best non-partner similarity of every row and column (float64, 16 bytes per item)."""
    return PairPass("cross", "best_other", _best_other, label="retrieval", state_bytes=16 * 2 * context.n)


def margins_computed(context: Context) -> str | None:
    """None where the run computes the margins' best-other similarities; else why not."""
    if "distributed" in context.settings:
        return "a sharded run carries no best-other similarities around the ring"
    if context.settings.get("backend") == "triton":
        return "the fused kernels have no best-other reduction (run with --backend auto or torch)"
    return None


def deep_directions(context: Context, stats: Statistics) -> dict:
    """Per direction (above, ties or None, level, margin or None) as numpy arrays
    (:func:`~embspace.metrics.ranking.deep_metrics`); None where the run did not count them."""
    ranks = stats.reduction("cross", "ranks")
    best = None if margins_computed(context) else stats.reduction("cross", "best_other")
    matched = ranks.matched.double().cpu().numpy()
    there, back = context.directions()
    out = {}
    for direction, above, ties, other in ((there, ranks.rows, ranks.row_ties, None if best is None else best.rows),
                                          (back, ranks.cols, ranks.col_ties, None if best is None else best.cols)):
        out[direction] = (above.cpu().numpy(), ties.cpu().numpy() if ranks.ties_counted else None, None,
                          None if other is None else matched - other.cpu().numpy())
    return out


def left_out(context: Context, stats: Statistics) -> dict[str, str]:
    """The deeper-retrieval numbers a run could not compute, with the reason (in ``settings["retrieval"]``)."""
    out = {}
    if not stats.reduction("cross", "ranks").ties_counted:
        out["tie conventions"] = ("the rank counts came from a path that counts no ties (fused kernels or the "
                                  "sharded ring)")
    if margins_computed(context):
        out["margins"] = margins_computed(context)
    return out


def exact(context: Context) -> bool:
    """Recall is exact unless the run samples and no hubness asks for the exact cross pass anyway."""
    return not context.sampled or "hubness" in context.families


class Retrieval(Family):
    name = "retrieval"
    aliases = ("recall",)
    paired_only = True
    table_position = 30.0
    resampled = "subsample"

    def needs(self, context: Context) -> list[Need]:
        if exact(context):
            return [rank_pass(context)] + ([] if margins_computed(context) else [best_other_pass(context)])
        return [Sampled("recall",
                                                                                                  label="retrieval")]

    def finish(self, context: Context, stats: Statistics) -> Found:
        ks = context.settings["recall_ks"]
        if not exact(context):
            values, uncertainty = stats.sampled("recall")
            return Found(metrics=values, uncertainty=uncertainty)
        ranks = stats.reduction("cross", "ranks")
        forward, backward = recall_from_ranks(ranks.rows, ks), recall_from_ranks(ranks.cols, ks)
        there, back = context.directions()
        metrics = {f"recall@{k}": {there: forward[k], back: backward[k]} for k in ks}
        metrics.update(deep_metrics(deep_directions(context, stats), ks))
        missing = left_out(context, stats)
        return Found(metrics=metrics, settings={"retrieval": {"left_out": missing}} if missing else {})

    def convention(self, key: str) -> str | None:
        if not key.startswith("recall@"):
            return deep_convention(key)
        k = key.removeprefix("recall@")
        return (f"fraction of queries whose partner is among the {k} most cosine-similar items of the other "
                "modality; ties count for the partner")

    def resample_paths(self, names, settings) -> list[str]:
        a, b = names
        return [f"recall@{k}.{d}" for k in settings.get("recall_ks", RECALL_KS) for d in (f"{a}->{b}", f"{b}->{a}")]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        def beats() -> tuple[torch.Tensor, torch.Tensor]:
            sxy = view.x @ view.y.T  # (S, S), row a × column b
            matched = sxy.diagonal()
            # [a, b]: column b outranks row a's partner; image b outranks text a's partner
            return (sxy > matched[:, None]).float(), (matched[:, None] < sxy.T).float()

        beats_xy, beats_yx = view.static("recall_beats", beats)
        a, b = view.names
        w, n, out = view.w, view.w.sum(1).double(), {}
        for direction, beaten in ((f"{a}->{b}", beats_xy), (f"{b}->{a}", beats_yx)):
            ranks = beaten.sum(1)  # (S,): candidates of the whole subsample that outrank each query's partner
            for k in view.settings.get("recall_ks", RECALL_KS):
                out[f"recall@{k}.{direction}"] = ((w @ (ranks < k).float()).double() / n).numpy()
        return out
