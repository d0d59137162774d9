"""Rank-based retrieval numbers from per-query counts: recall under three tie conventions, ranks, MRR, margins.

Every query q has a best relevant candidate (its partner; with several relevant candidates, the most similar one,
as in CLIP_benchmark's "a hit if any relevant item is in the top k") at similarity p_q, and the counts

- ``above`` a_q = #{non-relevant j : s_qj > p_q},
- ``ties``  t_q = #{non-relevant j : s_qj == p_q},
- ``level`` m_q = #{relevant j : s_qj == p_q} (≥ 1; 1 for one partner).

recall@k under the tie conventions (McSherry & Najork 2008, "Computing information retrieval performance measures
efficiently in the presence of tied scores"):

- optimistic: a_q < k (ties rank below the relevant item; embspace's historic recall@k);
- pessimistic: a_q + t_q < k (ties rank above it);
- expected (ties in a uniformly random order): with x = k − a_q slots left for the tie group of t_q non-relevant
  and m_q relevant items, the hit probability is 1 − P(X ≥ x), X = the number of non-relevant items drawn before
  the first relevant one: P(X ≥ x) = C(t, x)/C(t + m, x) for 0 ≤ x ≤ t (1 for x ≤ 0, 0 for x > t). With one
  partner (m = 1) that is min(1, max(0, x)/(t + 1)).

Ranks are 1-based, optimistic (rank_q = a_q + 1, the convention of recall@k's default): median rank
(``numpy.median``; the mean of the two middle ranks for an even count), mean rank, and MRR = mean(1/rank_q).
The margin of a query is p_q − max{s_qj : j non-relevant} (its best relevant similarity minus the best other);
negative means a non-relevant item outranks every relevant one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

MARGIN_RANGE = (-2.0, 2.0)  # a difference of two cosines


def hit_probability(above: np.ndarray, ties: np.ndarray, level: np.ndarray, k: int) -> np.ndarray:
    """P(some relevant item in the top k) when tied scores are ordered uniformly at random (float64, per query)."""
    above, ties, level = (np.asarray(v, dtype=np.float64) for v in (above, ties, level))
    x = k - above  # slots of the top k left for the tie group
    out = np.zeros_like(x)
    inside = (x >= 1) & (x <= ties)
    out[x > ties] = 1.0
    t, m, xi = ties[inside], level[inside], x[inside]
    # P(X ≥ x) = [t!/(t−x)!] / [(t+m)!/(t+m−x)!]
    log_miss = gammaln(t + 1) - gammaln(t - xi + 1) - gammaln(t + m + 1) + gammaln(t + m - xi + 1)
    out[inside] = 1.0 - np.exp(log_miss)
    return out


def recall_conventions(above: np.ndarray, ties: np.ndarray, level: np.ndarray | None,
                       ks: Sequence[int]) -> dict[str, dict[int, float]]:
    """recall@k per tie convention: ``{"optimistic": {k: …}, "pessimistic": …, "expected": …}``."""
    above, ties = np.asarray(above, dtype=np.int64), np.asarray(ties, dtype=np.int64)
    level = np.ones_like(above) if level is None else np.asarray(level, dtype=np.int64)
    return {"optimistic": {k: float((above < k).mean()) for k in ks},
            "pessimistic": {k: float((above + ties < k).mean()) for k in ks},
            "expected": {k: float(hit_probability(above, ties, level, k).mean()) for k in ks}}


def rank_summary(above: np.ndarray) -> dict[str, float]:
    """median rank, mean rank and MRR of the 1-based optimistic ranks a_q + 1."""
    ranks = np.asarray(above, dtype=np.float64) + 1.0
    return {"median_rank": float(np.median(ranks)), "mean_rank": float(ranks.mean()),
            "mrr": float((1.0 / ranks).mean())}


def margin_summary(margin: np.ndarray) -> dict[str, float]:
    """mean, median and the fraction of negative margins."""
    margin = np.asarray(margin, dtype=np.float64)
    return {"margin_mean": float(margin.mean()), "margin_median": float(np.median(margin)),
            "margin_negative": float((margin < 0).mean())}


def margin_histogram(margin: np.ndarray, bins: int) -> list[int]:
    """Counts of the margins in ``bins`` equal bins over [−2, 2] (numpy.histogram's edges and half-open bins)."""
    clipped = np.clip(np.asarray(margin, dtype=np.float64), *MARGIN_RANGE)
    return np.histogram(clipped, bins=bins, range=MARGIN_RANGE)[0].astype(np.int64).tolist()


def margin_edges(bins: int) -> list[float]:
    return np.linspace(*MARGIN_RANGE, bins + 1).tolist()


def deep_metrics(directions: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]],
                 ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """The report metrics of the deeper retrieval, ``{metric: {direction: value}}``, from per-direction
    ``(above, ties, level or None, margin)``: pessimistic / expected recall@k, the count of queries whose best
    relevant item ties a non-relevant one, ranks, MRR and margins. Ties or margins given as None (a run that did
    not count them) leave their numbers out."""
    out: dict[str, dict[str, float]] = {}
    for direction, (above, ties, level, margin) in directions.items():
        values: dict[str, float] = {}
        if ties is not None:
            recall = recall_conventions(above, ties, level, ks)
            for convention in ("pessimistic", "expected"):
                for k in ks:
                    values[f"recall_{convention}@{k}"] = recall[convention][k]
            values["tied_partner"] = int((np.asarray(ties) > 0).sum())
        values.update(rank_summary(above))
        if margin is not None:
            values.update(margin_summary(margin))
        for key, value in values.items():
            out.setdefault(key, {})[direction] = value
    return out


DEEP_CONVENTIONS = {
    "recall_pessimistic": "recall@k with ties counted against the relevant item: a hit if #{non-relevant s > p} "
                          "+ #{non-relevant s == p} < k (p: the best relevant similarity)",
    "recall_expected": "recall@k expected under uniformly random tie-breaking: 1 − C(t, x)/C(t+m, x), x = k − "
                       "#{non-relevant s > p}, t = #{non-relevant s == p}, m = #{relevant s == p} (McSherry & "
                       "Najork 2008)",
    "tied_partner": "queries whose best relevant similarity equals that of at least one non-relevant item",
    "median_rank": "median (numpy) of the 1-based rank of the best relevant item, ties optimistic",
    "mean_rank": "mean of the 1-based rank of the best relevant item, ties optimistic",
    "mrr": "mean reciprocal rank, 1/rank of the best relevant item, ties optimistic",
    "margin_mean": "mean over queries of (best relevant similarity − best non-relevant similarity)",
    "margin_median": "median over queries of (best relevant similarity − best non-relevant similarity)",
    "margin_negative": "fraction of queries whose best non-relevant item is more similar than every relevant one",
}


def deep_convention(key: str) -> str | None:
    """The convention text of a deeper-retrieval report key (``recall_expected@5``, ``mrr``)."""
    return DEEP_CONVENTIONS.get(key.split("@")[0])
