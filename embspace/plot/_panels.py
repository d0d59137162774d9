"""Before and after, side by side: key metrics as paired bars, and both reports' similarity histograms.

Left, one pair of horizontal bars per number (before hatched, after solid) with the values written at their ends;
right, the matched and unmatched histograms of both reports (before dashed, after solid). Typical use: a model
before and after fine-tuning to close the gap (``embspace compare`` gives the same numbers as a table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot import _histograms
from embspace.plot._common import ReportLike, as_report, figure_of, new_figure
from embspace.plot._layout import place_legends
from embspace.report import Report

KEY_METRICS = ("gap", "alignment", "uniformity.mean", "uniformity.joint", "cone", "rmg", "recall@1")


def before_after(
    before: ReportLike,
    after: ReportLike,
    *,
    metrics: Sequence[str] = KEY_METRICS,
    labels: tuple[str, str] = ("before", "after"),
    coarsen: int | None = None,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Two reports compared: bars of key metrics and, when both have them, their similarity histograms.

    Args:
        before, after: reports or paths to their JSON.
        metrics: dotted paths or families (``"cone"`` → one bar pair per modality) to show, if present in both.
        labels: the two reports' names in the legend.
        coarsen: merge this many stored histogram bins (see :func:`~embspace.plot.histograms`); default: per
            histogram, from its Freedman–Diaconis width.
        ax: one Axes (bars only) or two (bars, histograms) to draw into; default a new figure.
    """
    old, new = as_report(before), as_report(after)
    paths = _shared_paths(old, new, metrics)
    with_histograms = bool(old.histograms and new.histograms)
    if ax is None:
        fig = new_figure((11.0, max(3.6, 0.42 * len(paths) + 1.6)) if with_histograms else (6.0, 0.42 * len(paths)
                                                                                               + 1.6))
        axes = list(fig.subplots(1, 2 if with_histograms else 1, squeeze=False).flat)
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        fig = figure_of(axes[0])
    _bars(axes[0], old, new, paths, labels)
    if len(axes) > 1:
        if not with_histograms:
            raise InputError("before_after", "histograms need both reports measured with the 'histograms' metrics")
        spans = [_histograms.draw(axes[1], report, kinds=("matched", "unmatched"), prefix=f"{label}: ",
                                  linestyle=style, coarsen=coarsen)
                 for report, label, style in ((old, labels[0], "--"), (new, labels[1], "-"))]
        axes[1].set_xlim(min(s[0] for s in spans), max(s[1] for s in spans))
        axes[1].set_title("cosine similarity of cross-modal pairs")
    fig.suptitle(f"{labels[0]} vs {labels[1]}")
    place_legends(fig, axes[:2])
    return fig


def _shared_paths(old: Report, new: Report, metrics: Sequence[str]) -> list[str]:
    a, b = old.flat(), new.flat()
    paths = [p for m in metrics for p in a if (p == m or p.partition(".")[0] == m) and p in b
             and isinstance(a[p], int | float) and isinstance(b[p], int | float)]
    if not paths:
        raise InputError("before_after", f"the reports share none of the metrics {', '.join(metrics)}")
    return list(dict.fromkeys(paths))


def _bars(ax: Axes, old: Report, new: Report, paths: list[str], labels: tuple[str, str]) -> None:
    y = np.arange(len(paths))[::-1].astype(float)  # first metric on top
    height = 0.38
    a, b = old.flat(), new.flat()
    for offset, values, label, style in ((height / 2, [a[p] for p in paths], labels[0], {"hatch": "//", "alpha": 0.5}),
                                         (-height / 2, [b[p] for p in paths], labels[1], {})):
        bars = ax.barh(y + offset, values, height=height, color="#1f77b4", label=label, edgecolor="#1f77b4", **style)
        ax.bar_label(bars, fmt="%.3f", fontsize="x-small", padding=2)
    ax.set_yticks(y, paths)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_xlabel(f"value (uniformity t={old.settings.get('t', 2):g}, alignment α={old.settings.get('alpha', 2):g})")
    ax.set_title("key metrics")
    ax.margins(x=0.2)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize="small")
