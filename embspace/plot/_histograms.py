"""Similarity histograms from ``report.histograms``: true pairs vs other cross-modal pairs vs within-modality pairs.

Each histogram is drawn as a step line over the bins of cosine similarity in [−1, 1], as a density (counts divided
by the total and the bin width) so that N matched pairs and N(N−1) unmatched ones share an axis. With a modality
gap the matched and unmatched curves of the cross pairs sit far below the within-modality ones; good retrieval
separates matched (right) from unmatched (left).

Each histogram gets its own bin width by default: its Freedman–Diaconis width 2·IQR·n^(−1/3) (Freedman & Diaconis,
*Z. Wahrscheinlichkeitstheorie* 1981), rounded down to a whole number of the report's stored bins, so a few hundred
matched pairs spread over 0.2 are not squeezed into five bins while millions of unmatched pairs keep the stored
0.01. ``coarsen=`` sets one merge factor for all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import ReportLike, as_report, axes_of, color
from embspace.plot._layout import place_legends
from embspace.report import Report

KINDS = ("matched", "unmatched", "within")


def histograms(
    report: ReportLike,
    *,
    kinds: Sequence[str] = KINDS,
    density: bool = True,
    coarsen: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The similarity histograms of one report.

    Args:
        report: a report or the path of its JSON (measured with the ``histograms`` family).
        kinds: which to draw: ``matched`` (i = j), ``unmatched`` (i ≠ j), ``within`` (i < j, per modality).
        density: normalise each histogram to unit area; else raw counts per bin.
        coarsen: merge this many adjacent stored bins (a divisor of their number) in every histogram; default:
            per histogram, the widest divisor within its Freedman–Diaconis bin width (:func:`auto_factor`).
            1 draws the stored bins.
        ax: draw into this Axes instead of a new figure.
    """
    fig, ax = axes_of(ax)
    where = "report" if isinstance(report, Report) else os.fspath(report)
    draw(ax, as_report(report), kinds=kinds, density=density, coarsen=coarsen, where=where)
    ax.set_title("cosine similarity of pairs")
    place_legends(fig, [ax])
    return fig


def draw(ax: Axes, report: Report, *, kinds: Sequence[str] = KINDS, density: bool = True, prefix: str = "",
         linestyle: str = "-", coarsen: int | None = None, where: str = "report") -> tuple[float, float]:
    """Draw a report's histograms as ``Axes.stairs`` (one StepPatch per histogram) with labels and axis titles;
    the x range is that of the non-empty bins, which is returned."""
    hist = report.histograms
    if not hist:
        raise InputError(prefix.removesuffix(": ") or where,
                         "the report has no histograms; measure it with the 'histograms' metrics (part of 'all')")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InputError("kinds", f"unknown histogram kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    edges = np.asarray(hist["edges"], dtype=float)
    names = report.modalities
    series: list[tuple[str, list[int], str]] = []
    if "matched" in kinds and "matched" in hist:
        series.append((f"matched pairs (i = j, {names[0]}–{names[1]})", hist["matched"], "#2ca02c"))
    if "unmatched" in kinds and "unmatched" in hist:
        series.append((f"unmatched pairs (i ≠ j, {names[0]}–{names[1]})", hist["unmatched"], "#d62728"))
    if "within" in kinds:
        series += [(f"within {m} (i < j)", counts, color(names.index(m) if m in names else i))
                   for i, (m, counts) in enumerate(hist.get("within", {}).items())]
    bins = len(edges) - 1
    if coarsen is not None and (coarsen < 1 or bins % coarsen):
        raise InputError("coarsen", f"must divide the {bins} bins, got {coarsen}")
    merged = []
    for label, counts, c in series:
        factor = coarsen if coarsen is not None else auto_factor(edges, counts)
        stairs_edges = edges[::factor]
        counts = np.asarray(counts, dtype=np.int64).reshape(-1, factor).sum(1)
        ax.stairs(normalised(counts, stairs_edges) if density else np.asarray(counts, dtype=float), stairs_edges,
                  label=f"{prefix}{label}", color=c, linestyle=linestyle, linewidth=1.4)
        merged.append(counts.repeat(factor))
    ax.set_xlabel("cosine similarity x̂·ŷ")
    ax.set_ylabel("density" if density else "pairs per bin")
    span = _occupied(edges, merged, 1)
    ax.set_xlim(*span)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return span


def _occupied(edges: np.ndarray, series: list[Sequence[int]], factor: int) -> tuple[float, float]:
    """The x range of the non-empty bins (coarsened edges), padded by a tenth of it, within [−1, 1]."""
    counts = np.sum([np.asarray(c, dtype=np.int64).reshape(-1, factor).sum(1) for c in series], axis=0) \
        if series else np.zeros(len(edges) - 1)
    filled = np.flatnonzero(counts)
    if not len(filled):
        return float(edges[0]), float(edges[-1])
    low, high = edges[filled[0]], edges[filled[-1] + 1]
    pad = 0.1 * (high - low)
    return float(max(edges[0], low - pad)), float(min(edges[-1], high + pad))


def auto_factor(edges: np.ndarray, counts: Sequence[int]) -> int:
    """How many stored bins to merge for one histogram: the Freedman–Diaconis width h = 2·IQR·n^(−1/3)
    (Freedman & Diaconis 1981), the IQR read from the stored counts (quantiles interpolated within bins), rounded
    down to a divisor of the stored bins — so a narrow peak (CLIP's matched pairs, 500 of them within ~0.2) keeps
    the stored resolution and only a broad, sparse histogram is merged."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    bins = len(counts)
    if n < 2:
        return 1
    cumulative = np.concatenate([[0.0], np.cumsum(counts)]) / n
    q1, q3 = np.interp([0.25, 0.75], cumulative, edges)  # cumulative is non-decreasing: a valid inverse CDF
    width = 2 * (q3 - q1) * n ** (-1 / 3)
    stored = float(edges[1] - edges[0])
    fits = [f for f in range(1, bins + 1) if bins % f == 0 and f * stored <= width]
    return max(fits, default=1)


def normalised(counts: Sequence[int], edges: np.ndarray) -> np.ndarray:
    """Counts → density (unit area), as ``numpy.histogram(density=True)`` computes it."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total > 0 else counts
