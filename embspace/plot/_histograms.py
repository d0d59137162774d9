"""Similarity histograms from ``report.histograms``: true pairs vs other cross-modal pairs vs within-modality pairs.

Each histogram is drawn as a step line over the bins of cosine similarity in [−1, 1], as a density (counts divided
by the total and the bin width) so that N matched pairs and N(N−1) unmatched ones share an axis. With a modality
gap the matched and unmatched curves of the cross pairs sit far below the within-modality ones; good retrieval
separates matched (right) from unmatched (left).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import ReportLike, as_report, axes_of, color
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
        coarsen: merge this many adjacent bins (a divisor of the stored bins); default: few enough bins that the
            smallest histogram has about 2√n of them. 1 draws the stored bins.
        ax: draw into this Axes instead of a new figure.
    """
    fig, ax = axes_of(ax)
    where = "report" if isinstance(report, Report) else os.fspath(report)
    draw(ax, as_report(report), kinds=kinds, density=density, coarsen=coarsen, where=where)
    ax.set_title("cosine similarity of pairs")
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
    factor = coarsen if coarsen is not None else auto_factor(len(edges) - 1, [sum(c) for _, c, _ in series])
    if factor < 1 or (len(edges) - 1) % factor:
        raise InputError("coarsen", f"must divide the {len(edges) - 1} bins, got {factor}")
    edges = edges[::factor]
    for label, counts, c in series:
        counts = np.asarray(counts, dtype=np.int64).reshape(-1, factor).sum(1)
        ax.stairs(normalised(counts, edges) if density else np.asarray(counts, dtype=float), edges,
                  label=f"{prefix}{label}", color=c, linestyle=linestyle, linewidth=1.4)
    ax.set_xlabel("cosine similarity x̂·ŷ")
    ax.set_ylabel("density" if density else "pairs per bin")
    span = _occupied(edges, [c for _, c, _ in series], factor)
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


def auto_factor(bins: int, totals: Sequence[int]) -> int:
    """The smallest divisor f of ``bins`` leaving at most max(20, 2√n) bins, n the smallest nonzero total."""
    counted = [t for t in totals if t > 0]
    if not counted:
        return 1
    target = max(20, int(2 * np.sqrt(min(counted))))
    return next(f for f in range(1, bins + 1) if bins % f == 0 and bins // f <= target)


def normalised(counts: Sequence[int], edges: np.ndarray) -> np.ndarray:
    """Counts → density (unit area), as ``numpy.histogram(density=True)`` computes it."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / (total * np.diff(edges)) if total > 0 else counts
