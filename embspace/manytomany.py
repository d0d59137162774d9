"""`measure` with many-to-many pairs: two modalities of different row counts and a mapping of which rows belong
together (:mod:`embspace.pairs`), as MSCOCO and Flickr30k dumps hold five captions per image.

What each family measures, and over which rows:

- per modality, on its own rows (each row once, as a single-modality run measures it): cone, uniformity (``image``,
  ``text`` and their ``mean``; the ``joint`` and ``cross`` variants, which pair rows by index, are not computed),
  spectrum, and the within-modality histograms;
- the gap and centroid cosine from the two modalities' own-row means (Liang et al.'s ‖mean X̂ − mean Ŷ‖);
- over the **relevant pairs** the mapping defines, every (image, caption) pair once — an image with five captions
  counts five times, a caption once: alignment, matched cosine, gap_split (whose Δ is then the pair-weighted mean
  difference, so that ‖Δ‖² + mean‖r‖² stays exact), the matched part of RMG (its d_A, d_B from the own-row cones)
  and the ``matched`` histogram (``unmatched``: every other cross pair);
- retrieval as CLIP_benchmark computes it (LAION-AI/CLIP_benchmark, ``metrics/zeroshot_retrieval.py``): a query is
  a hit at k when at least one of its relevant items is among its k most similar candidates of the other modality
  (image→text: any of its captions; text→image: its image), averaged over the queries of each direction; ties
  counted for the relevant item (``recall@k``), against it (``recall_pessimistic@k``) or in random order
  (``recall_expected@k``), with ranks, MRR and margins taken at the best relevant item (:mod:`embspace.metrics.ranking`)
  from two exact tiled passes of :mod:`embspace.kernels.grouped`;
- hubness on the rectangular cross problem: k-occurrence of the captions in the images' top-k and of the images in
  the captions' top-k.

The separability probe pairs rows by index and is not computed. Always exact (no sampled estimate), in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from embspace.errors import InputError
from embspace.families import family, in_table_order, parse_metrics
from embspace.families.rmg import relative_modality_gap
from embspace.kernels.backend import matmul_precision, use_backend
from embspace.kernels.budget import parse_size, plan, tile_within
from embspace.kernels.engine import resolve_compute, stream_pairs
from embspace.kernels.grouped import GroupedHistogram, GroupedRanks, best_relevant
from embspace.kernels.pairwise import TopK
from embspace.kernels.rows import Rows, available_memory, prepare_rows
from embspace.metrics import centroid
from embspace.metrics.ranking import deep_metrics, margin_edges, margin_histogram
from embspace.metrics.retrieval import k_occurrence, skewness
from embspace.metrics.separability import gather_rows
from embspace.pairs import PairMap, pair_map
from embspace.report import Report, flatten

PER_MODALITY = ("cone", "uniformity", "spectrum", "histograms")
NOT_GROUPED = ("separability",)
PAIR_CHUNK = 16_384  # relevant pairs gathered at a time for the pair sums

CONVENTIONS = {
    "recall": "CLIP_benchmark: a query is a hit when at least one of its relevant items (image→text: any of its "
              "captions; text→image: its image) is among its k most cosine-similar candidates; ties count for the "
              "relevant item",
    "alignment": "mean over every relevant (image, caption) pair once of ‖x̂ − ŷ‖^α (Wang & Isola 2020)",
    "matched_cosine": "mean over every relevant (image, caption) pair once of x̂·ŷ",
    "gap": "‖mean(x̂) − mean(ŷ)‖₂ over each modality's own rows, rows L2-normalised, means not renormalised "
           "(Liang et al. 2022)",
    "gap_split": "over every relevant pair once: mean‖x̂ − ŷ‖² = ‖Δ‖² + mean‖r‖², Δ = pair-weighted mean x̂ − mean ŷ "
                 "(Liang et al. 2022; Schrodi et al. 2024)",
    "rmg": "relative modality gap, d_m from the matched cosine over every relevant pair once, d_A, d_B from the "
           "cones of each modality's own rows (Schrodi et al. 2024)",
    "hubness": "skewness (population) of the k-occurrence of the target modality's rows in the queries' top-k on the "
               "rectangular cross problem, k = settings.hubness_k (Radovanović et al. 2010)",
}


def measure_many(given: Mapping[str, Any], pair_ids: Any, measure_options: dict[str, Any], *,
                 measure: Callable[..., Report], check_inputs: Callable[..., Any]) -> Report:
    """The report of two modalities paired by ``pair_ids`` (see the module docstring); ``measure_options`` are
    :func:`embspace.measure`'s keyword arguments, ``measure`` and ``check_inputs`` are :mod:`embspace.measure`'s
    (given by it: each modality is measured on its own rows)."""
    if len(given) != 2:
        raise InputError("pair_ids", f"pairs two modalities, got {len(given)}")
    if measure_options.get("drop_invalid"):
        raise InputError("drop_invalid", "cannot be combined with pair_ids: dropping rows would misalign the mapping")
    families = parse_metrics(measure_options.get("metrics"))
    names = tuple(given)
    device, memory, tile = (measure_options.get(k) for k in ("device", "memory", "tile"))
    embeddings = {name: check_inputs({name: data}, metrics="cone", device=device or "auto", memory=memory,
                                     tile=tile)[name] for name, data in given.items()}
    a, b = names
    if embeddings[a].dim != embeddings[b].dim:
        raise InputError(f"{embeddings[b].source}", f"has {embeddings[b].dim} dimensions, {a} has "
                                                    f"{embeddings[a].dim}")
    pairs = pair_map(pair_ids, names, (embeddings[a].n, embeddings[b].n))
    single = [f for f in families if f in PER_MODALITY]
    options = {k: v for k, v in measure_options.items() if k != "metrics"}
    parts = {name: measure({name: emb}, metrics=single or "cone", **options) for name, emb in embeddings.items()}
    first = parts[a]
    settings = dict(first.settings)
    settings["metrics"] = [f for f in families if f not in NOT_GROUPED]
    settings["pairs"] = pairs.describe()
    compute = resolve_compute(settings["device"], measure_options.get("precision", "auto"),
                              measure_options.get("backend"))
    budget = parse_size(memory, "memory") if memory is not None else available_memory(compute.device)
    layout = plan(budget, embeddings[a].dim, tile or settings["tile"])
    found: dict[str, dict[str, Any]] = {}
    histograms: dict[str, Any] = {}
    with matmul_precision(compute.precision), use_backend(compute.passes):
        rows = {name: prepare_rows(emb, compute.device, compute.dtype,
                                   require_normalized=not measure_options.get("normalize", True),
                                   memory_budget=budget, chunk_rows=layout.block_rows)
                for name, emb in embeddings.items()}
        moments = {name: centroid.moment_sums(r) for name, r in rows.items()}
        pair_terms = relevant_pair_sums(rows[a], rows[b], pairs, float(settings["alpha"]))
        found.update(first_moment_families(families, names, moments, pair_terms,
                                            measure_options.get("rmg_floor") or "source"))
        cross = {"retrieval", "hubness", "histograms"} & set(families)
        if cross:
            tile_cross = tile_within(layout, 64 * (embeddings[a].n + embeddings[b].n)
                                     + 16 * settings["hubness_k"] * (embeddings[a].n + embeddings[b].n))
            found_cross, histograms = cross_families(families, names, rows, pairs, settings, tile_cross)
            found.update(found_cross)
    metrics: dict[str, Any] = {}
    for fam in in_table_order([f for f in families if f not in NOT_GROUPED]):
        if fam.name in PER_MODALITY and fam.name != "histograms":
            for part in parts.values():
                for key, value in part.metrics.items():
                    if fam.convention(key) is not None or _belongs(fam.name, key):
                        metrics.setdefault(key, {}).update(value)
            if fam.name == "uniformity" and "uniformity" in metrics:
                metrics["uniformity"]["mean"] = (metrics["uniformity"][a] + metrics["uniformity"][b]) / 2
        metrics.update(found.get(fam.name, {}))
    if "histograms" in families:
        histograms = {**histograms, "within": {name: part.histograms.get("within", {}).get(name)
                                               for name, part in parts.items()}}
        histograms = {"edges": parts[a].histograms.get("edges"), **histograms}
    conventions = _conventions(families, metrics)
    return Report(inputs={name: part.inputs[name] for name, part in parts.items()}, settings=settings,
                  metrics=metrics, uncertainty={path: {"method": "exact"} for path in flatten(metrics)},
                  conventions=conventions,
                  timings={f"{name}.{k}": v for name, part in parts.items() for k, v in part.timings.items()},
                  vectors=found.get("vectors", {}), spectra={k: v for part in parts.values()
                                                             for k, v in part.spectra.items()},
                  histograms=histograms if "histograms" in families else {}, environment=first.environment,
                  embspace_version=first.embspace_version, created=first.created)


def _belongs(family_name: str, key: str) -> bool:
    """Whether a single-modality report key comes from ``family_name`` (the spectrum's several keys)."""
    spectral = {"rankme", "effective_rank", "effective_rank_centered", "participation_ratio", "alpha_req"}
    return family_name == "spectrum" and key in spectral


def _conventions(families: list[str], metrics: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key in metrics:
        if key.startswith("recall@"):
            out[key] = CONVENTIONS["recall"]
        elif key in CONVENTIONS:
            out[key] = CONVENTIONS[key]
        else:
            for fam in in_table_order([f for f in families if f not in NOT_GROUPED]):
                text = fam.convention(key)
                if text:
                    out[key] = text
                    break
    if "histograms" in families:
        out["histograms"] = (family("histograms").convention("histograms").replace(
            "matched = true pairs i = j, unmatched = cross-modal pairs i ≠ j",
            "matched = the relevant pairs of pair_ids, unmatched = every other cross-modal pair"))
    return out


def relevant_pair_sums(x: Rows, y: Rows, pairs: PairMap, alpha: float) -> dict[str, Any]:
    """Float64 sums over every relevant pair once: P, Σx̂·ŷ, Σ‖x̂ − ŷ‖^α, Σx̂, Σŷ, Σ‖x̂‖² + ‖ŷ‖²."""
    rows_a, rows_b = pairs.pairs()
    total = {"n": len(rows_a), "dots": 0.0, "distances": 0.0, "squares": 0.0,
             "x": torch.zeros(x.dim, dtype=torch.float64), "y": torch.zeros(y.dim, dtype=torch.float64)}
    for start in range(0, len(rows_a), PAIR_CHUNK):
        pa, pb = rows_a[start : start + PAIR_CHUNK], rows_b[start : start + PAIR_CHUNK]
        xs = _gather(x, pa)
        ys = _gather(y, pb)
        total["dots"] += float((xs * ys).sum())
        total["distances"] += float(np.power(np.linalg.norm(xs - ys, axis=1), alpha).sum())
        total["squares"] += float((xs * xs).sum() + (ys * ys).sum())
        total["x"] += torch.from_numpy(xs.sum(0))
        total["y"] += torch.from_numpy(ys.sum(0))
    return total


def _gather(rows: Rows, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (any order, repeats allowed) as float64."""
    unique, inverse = np.unique(index, return_inverse=True)
    return gather_rows(rows, unique)[inverse]


def first_moment_families(families: list[str], names: tuple[str, str], moments: dict[str, centroid.MomentSums],
                          pair_terms: dict[str, Any], rmg_floor: str = "source") -> dict[str, dict[str, Any]]:
    """gap (own-row means), alignment / matched cosine / gap_split (relevant pairs), RMG, cone (own rows)."""
    a, b = names
    out: dict[str, dict[str, Any]] = {}
    mean_x, mean_y = moments[a].mean, moments[b].mean
    p = pair_terms["n"]
    matched = pair_terms["dots"] / p
    if "gap" in families:
        delta = mean_x - mean_y
        gap = float(delta.norm())
        norms = float(mean_x.norm()) * float(mean_y.norm())
        out["gap"] = {"gap": gap, "centroid_cosine": float(mean_x @ mean_y) / norms if norms > 0 else float("nan")}
        out["vectors"] = {"gap_direction": (delta / gap if gap > 0 else torch.zeros_like(delta)).tolist()}
    if "alignment" in families:
        out["alignment"] = {"alignment": pair_terms["distances"] / p, "matched_cosine": matched}
    if "gap_split" in families:
        squared = (pair_terms["squares"] - 2 * pair_terms["dots"]) / p
        centroid_part = float((pair_terms["x"] / p - pair_terms["y"] / p).pow(2).sum())
        out["gap_split"] = {"gap_split": {"centroid": centroid_part, "residual": squared - centroid_part,
                                          "centroid_share": centroid_part / squared if squared > 0 else 0.0}}
    if "rmg" in families:
        out["rmg"] = {"rmg": relative_modality_gap(matched, moments[a].cone(), moments[b].cone(), rmg_floor)}
    return out


def query_statistics(x: Rows, y: Rows, pairs: PairMap, names: tuple[str, str], tile: int,
                     others: list[Any] | None = None) -> dict[str, tuple[np.ndarray, ...]]:
    """Per direction (``a->b``: the rows of A as queries; ``b->a``) and per query: (above, ties, level, margin) of
    its best relevant item (:mod:`embspace.metrics.ranking`), from the two exact passes of
    :mod:`embspace.kernels.grouped`; ``others`` (a TopK, a GroupedHistogram) ride on the second pass."""
    a, b = names
    item_x = torch.from_numpy(pairs.item_a).to(x.device)
    item_y = torch.from_numpy(pairs.item_b).to(x.device)
    best_x, best_y = best_relevant(x, y, item_x, item_y, tile)
    ranks = GroupedRanks(item_x, item_y, best_x, best_y)
    stream_pairs(x, y, [ranks, *(others or [])], tile=tile)
    return {
        f"{a}->{b}": (ranks.rows["above"].cpu().numpy(), ranks.rows["ties"].cpu().numpy(),
                      ranks.rows["level"].cpu().numpy(), (best_x - ranks.row_other).cpu().numpy()),
        f"{b}->{a}": (ranks.cols["above"].cpu().numpy(), ranks.cols["ties"].cpu().numpy(),
                      ranks.cols["level"].cpu().numpy(), (best_y - ranks.col_other).cpu().numpy()),
    }


def cross_families(families: list[str], names: tuple[str, str], rows: dict[str, Rows], pairs: PairMap,
                   settings: dict[str, Any], tile: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Retrieval, hubness and the cross histograms from the two exact passes of :mod:`embspace.kernels.grouped`."""
    a, b = names
    x, y = rows[a], rows[b]
    top = TopK(x.n, y.n, settings["hubness_k"], x.device) if "hubness" in families else None
    hist = (GroupedHistogram(torch.from_numpy(pairs.item_a).to(x.device), torch.from_numpy(pairs.item_b).to(x.device),
                             settings["histogram_bins"], x.device) if "histograms" in families else None)
    directions = query_statistics(x, y, pairs, names, tile, [r for r in (top, hist) if r is not None])
    there, back = f"{a}->{b}", f"{b}->{a}"
    out: dict[str, dict[str, Any]] = {}
    if "retrieval" in families:
        ks = settings["recall_ks"]
        metrics = {f"recall@{k}": {d: float((directions[d][0] < k).mean()) for d in (there, back)} for k in ks}
        metrics.update(deep_metrics(directions, ks))
        out["retrieval"] = metrics
    if top is not None:
        out["hubness"] = {"hubness": {there: skewness(k_occurrence(top.row_index, y.n)),
                                      back: skewness(k_occurrence(top.col_index, x.n))}}
    histograms: dict[str, Any] = {}
    if hist is not None:
        bins = settings["histogram_bins"]
        histograms = {**hist.counts(), "margin": {"edges": margin_edges(bins),
                                                  **{d: margin_histogram(v[3], bins) for d, v in directions.items()}}}
    return out, histograms
