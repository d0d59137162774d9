"""The paired bootstrap of `compare` for many-to-many pairs: it resamples **items** (an image with all its captions),
not rows (Efron & Tibshirani 1993, ch. 16, resampling the independent units: captions of one image are not
independent draws).

With K items (:class:`~embspace.pairs.PairMap`), each resample draws K item indices with replacement
(``numpy.random.default_rng(seed)``), counts c ∈ ℕᴷ, the same before and after; every row of item i gets weight
c_i. The resampled metrics are ratios of per-item sums, Σ_i c_i S_i / Σ_i c_i C_i:

- retrieval, each direction: recall@k (CLIP_benchmark's any-relevant hit; optimistic, pessimistic and expected tie
  conventions), MRR, mean rank, mean margin and the fraction of negative margins, from the per-query statistics of
  one exact pass each (:func:`embspace.manytomany.query_statistics`): queries are resampled with their items and
  ranked against every candidate, as retrieval benchmarks are resampled;
- alignment and matched cosine over the relevant pairs (every (image, caption) pair once, weighted by its item);
- gap: ‖Σ c_i Σx̂_i / Σ c_i n_i − Σ c_i Σŷ_i / Σ c_i m_i‖ over each modality's own rows.

Intervals: BCa (Efron 1987), the acceleration from the leave-one-item-out jackknife (exact: each jackknife value is
a ratio of totals less one item's sums), or the percentile interval. Not resampled: median rank and margin median
(no ratio form), the count of tied partners, hubness, cone, uniformity, spectrum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from embspace.bootstrap import acceleration, bca_interval, bias_share, percentile_interval
from embspace.errors import InputError
from embspace.kernels.pairwise import DEFAULT_TILE
from embspace.kernels.rows import prepare_rows
from embspace.metrics.ranking import hit_probability
from embspace.pairs import PairMap, pair_map

BLOCK = 200  # resamples per block


def _unit_rows(data: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    from embspace.embeddings import Embeddings
    from embspace.io.validate import validate

    if not isinstance(data, Mapping) or len(data) != 2:
        raise InputError(where, "needs two modalities as a mapping name → rows for many-to-many pairs")
    embeddings = {name: v if isinstance(v, Embeddings) else Embeddings.from_array(v, f"{where}:{name}")
                  for name, v in data.items()}
    checked = {name: validate({name: e}, paired=False, same_dim=False)[name] for name, e in embeddings.items()}
    return {name: torch.nn.functional.normalize(e.to_tensor(torch.float32), dim=1) for name, e in checked.items()}


def item_statistics(rows: dict[str, torch.Tensor], pairs: PairMap, ks: Sequence[int],
                    alpha: float) -> dict[str, tuple[np.ndarray, np.ndarray, Any]]:
    """path → (per-item sums S (K,) or (K, D) pair, per-item counts C (K,), kind) of every resampled metric."""
    from embspace.manytomany import query_statistics

    names = tuple(rows)
    a, b = names
    k_items = pairs.n_items
    x_rows, y_rows = (prepare_rows(rows[n], torch.device("cpu"), torch.float32) for n in names)
    directions = query_statistics(x_rows, y_rows, pairs, names, DEFAULT_TILE)
    out: dict[str, tuple[np.ndarray, np.ndarray, Any]] = {}

    def per_item(items: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.bincount(items, weights=values, minlength=k_items),
                np.bincount(items, minlength=k_items).astype(np.float64))

    for direction, items in ((f"{a}->{b}", pairs.item_a), (f"{b}->{a}", pairs.item_b)):
        above, ties, level, margin = directions[direction]
        values = {}
        for k in ks:
            values[f"recall@{k}"] = (above < k).astype(np.float64)
            values[f"recall_pessimistic@{k}"] = (above + ties < k).astype(np.float64)
            values[f"recall_expected@{k}"] = hit_probability(above, ties, level, k)
        values["mrr"] = 1.0 / (above + 1.0)
        values["mean_rank"] = above + 1.0
        values["margin_mean"] = margin.astype(np.float64)
        values["margin_negative"] = (margin < 0).astype(np.float64)
        for key, v in values.items():
            out[f"{key}.{direction}"] = (*per_item(items, v), "ratio")
    pa, pb = pairs.pairs()
    x, y = rows[a].double(), rows[b].double()
    dots = (x[pa] * y[pb]).sum(1).numpy()
    distance = np.power((x[pa] - y[pb]).norm(dim=1).numpy(), alpha)
    pair_items = pairs.item_a[pa]
    out["alignment"] = (*per_item(pair_items, distance), "ratio")
    out["matched_cosine"] = (*per_item(pair_items, dots), "ratio")
    sums = []
    for items, r in ((pairs.item_a, x), (pairs.item_b, y)):
        total = torch.zeros(k_items, r.shape[1], dtype=torch.float64).index_add_(0, torch.from_numpy(items), r)
        sums.append((total.numpy(), np.bincount(items, minlength=k_items).astype(np.float64)))
    out["gap"] = (np.zeros(k_items), np.zeros(k_items), sums)
    return out


def _values(entry: tuple[np.ndarray, np.ndarray, Any], w: np.ndarray) -> np.ndarray:
    """The metric under item weights w (b, K)."""
    sums, counts, kind = entry
    if kind == "ratio":
        return (w @ sums) / (w @ counts)
    (sx, cx), (sy, cy) = kind
    return np.linalg.norm((w @ sx) / (w @ cx)[:, None] - (w @ sy) / (w @ cy)[:, None], axis=1)


def _jackknife(entry: tuple[np.ndarray, np.ndarray, Any]) -> np.ndarray:
    """Leave-one-item-out values, (K,)."""
    sums, counts, kind = entry
    if kind == "ratio":
        return (sums.sum() - sums) / (counts.sum() - counts)
    (sx, cx), (sy, cy) = kind
    mx = (sx.sum(0)[None] - sx) / (cx.sum() - cx)[:, None]
    my = (sy.sum(0)[None] - sy) / (cy.sum() - cy)[:, None]
    return np.linalg.norm(mx - my, axis=1)


def item_bootstrap(data_before: Mapping[str, Any], data_after: Mapping[str, Any], pair_ids: Any, *,
                   resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                   recall_ks: Sequence[int] = (1, 5, 10), alpha: float = 2.0,
                   reported: Mapping[str, Mapping[str, float]] | None = None, interval: str = "bca"):
    """The :class:`~embspace.compare.Significance` of every resampled metric's change, items resampled."""
    from embspace.significance import MetricTest, Significance

    before, after = _unit_rows(data_before, "data_before"), _unit_rows(data_after, "data_after")
    names = tuple(after)
    if tuple(before) != names or any(before[n].shape[0] != after[n].shape[0] for n in names):
        raise InputError("data_after", "needs the same modalities and rows as data_before (the same items)")
    if resamples < 10 or not 0 < confidence < 1:
        raise InputError("bootstrap", f"needs ≥ 10 resamples and 0 < confidence < 1, got {resamples}, {confidence}")
    pairs = pair_map(pair_ids, names, (after[names[0]].shape[0], after[names[1]].shape[0]))
    k_items = pairs.n_items
    if k_items < 2:
        raise InputError("pair_ids", "the item bootstrap needs at least 2 items")
    stats = [item_statistics(side, pairs, recall_ks, alpha) for side in (before, after)]
    rng = np.random.default_rng(seed)
    changes: dict[str, list[np.ndarray]] = {path: [] for path in stats[0]}
    for start in range(0, resamples, BLOCK):
        b = min(BLOCK, resamples - start)
        w = np.zeros((b, k_items))
        np.add.at(w, (np.repeat(np.arange(b), k_items), rng.integers(0, k_items, size=b * k_items)), 1.0)
        for path in changes:
            changes[path].append(_values(stats[1][path], w) - _values(stats[0][path], w))
    reported = reported or {}
    ones = np.ones((1, k_items))
    result = Significance(resamples, seed, confidence, k_items, k_items, interval=interval)
    for path, parts in changes.items():
        resampled = np.concatenate(parts)
        data_b, data_a = float(_values(stats[0][path], ones)[0]), float(_values(stats[1][path], ones)[0])
        old, new = reported.get("before", {}).get(path), reported.get("after", {}).get(path)
        value_b = float(old) if isinstance(old, int | float) else data_b
        value_a = float(new) if isinstance(new, int | float) else data_a
        percentile = percentile_interval(resampled, confidence)
        a = math.nan
        if interval == "bca":
            jack = _jackknife(stats[1][path]) - _jackknife(stats[0][path])
            a = acceleration(jack)
            ci = bca_interval(resampled, data_a - data_b, jack, confidence)
        else:
            ci = percentile
        result.metrics[path] = MetricTest(path, value_b, value_a, value_a - value_b, ci, "all items",
                                          data_a - data_b, data_b, data_a, interval=interval,
                                          percentile_ci=percentile,
                                          below_share=bias_share(resampled, data_a - data_b), acceleration=a)
    result.not_tested = ["median_rank", "margin_median", "tied_partner", "hubness", "cone", "uniformity",
                         "spectrum", "gap_split", "rmg"]
    result.notes.append(f"bootstrap over {k_items:,} items (each with all its rows of both modalities: "
                        f"{pairs.describe()['pairs']:,} relevant pairs), {resamples} resamples, seed {seed}, "
                        f"{interval.replace('bca', 'BCa')} intervals; 'beyond noise' = the {confidence:.0%} "
                        "interval excludes 0")
    return result
