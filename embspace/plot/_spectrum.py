"""Singular-value spectrum per modality (log–log), with RankMe and the effective rank marked.

σ_k are the singular values of the row-normalised matrix (``report.spectra``; uncentred by default, as RankMe
uses them). A flat spectrum spreads the variance over many dimensions; a steep drop means few dimensions carry it.
Each line carries a circle at k = RankMe and a cross at k = the effective rank of its modality, and names both values
in its legend entry: both are "how many dimensions are used" (Garrido et al. 2023; Roy & Vetterli 2007). They differ
only by RankMe's ε = 1e-7, so the two marks usually sit on one another, on the line they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from embspace.errors import InputError
from embspace.plot._common import ReportLike, as_report, axes_of, color, labelled
from embspace.plot._layout import place_legends

RANKS = {  # metric → (legend name, marker, size): a circle at RankMe, a cross at the effective rank
    "rankme": ("RankMe", "o", 9),
    "effective_rank": ("effective rank", "x", 6),
    "effective_rank_centered": ("effective rank (centred)", "x", 6),
}


def spectrum(
    reports: ReportLike | Sequence[ReportLike] | Mapping[str, ReportLike],
    *,
    centered: bool = False,
    normalize: bool = False,
    marks: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """σ_k against k on log–log axes, one line per modality (and per report when several are given).

    Args:
        reports: a report (or its JSON path), several, or ``{label: report}``.
        centered: the spectrum of the mean-centred matrix (then the centred effective rank is marked).
        normalize: divide by σ_1 so spectra of different sizes compare.
        marks: mark RankMe and the effective rank on each line (and give their values in the legend).
        ax: draw into this Axes instead of a new figure.
    """
    fig, ax = axes_of(ax)
    named = [(label, as_report(r)) for label, r in labelled(reports, "report")]
    key = "singular_values_centered" if centered else "singular_values"
    rank_key = "effective_rank_centered" if centered else "effective_rank"
    marked: set[str] = set()
    line = 0
    for label, report in named:
        if not report.spectra:
            raise InputError(label, "the report has no spectra; measure it with the 'spectrum' metrics")
        flat = report.flat()
        for modality, spectra in report.spectra.items():
            sigma = np.asarray(spectra[key], dtype=float)
            k = np.arange(1, len(sigma) + 1)
            keep = sigma > 0
            if normalize and keep.any():
                sigma = sigma / sigma[0]
            name = f"{label} · {modality}" if len(named) > 1 else modality
            c = color(line)
            ranks = [(metric, flat.get(f"{metric}.{modality}")) for metric in ((rank_key,) if centered
                                                                                else ("rankme", rank_key))]
            ranks = [(m, float(v)) for m, v in ranks if marks and isinstance(v, int | float) and v > 0]
            numbers = ", ".join(f"{RANKS[m][0]} {v:.1f}" for m, v in ranks)
            ax.plot(k[keep], sigma[keep], color=c, label=f"{name} ({numbers})" if numbers else name)
            for metric, value in ranks:  # a marker on the spectrum at k = the rank
                at = float(np.exp(np.interp(np.log(value), np.log(k[keep]), np.log(sigma[keep]))))
                _, marker, size = RANKS[metric]
                ax.plot([value], [at], linestyle="none", marker=marker, markersize=size, markerfacecolor="none",
                        markeredgecolor=c, markeredgewidth=1.4, label="_nolegend_")
                marked.add(metric)
            line += 1
    handles, names = ax.get_legend_handles_labels()
    for metric in sorted(marked, key=list(RANKS).index):  # one legend entry per kind of mark, drawn nowhere else
        title, marker, size = RANKS[metric]
        handles.append(Line2D([], [], linestyle="none", marker=marker, markersize=size, markerfacecolor="none",
                              markeredgecolor="0.3", markeredgewidth=1.4))
        names.append(f"{title} (marked on each line)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index k")
    what = "centred" if centered else "uncentred"
    ax.set_ylabel(f"σ_k / σ_1 ({what})" if normalize else f"singular value σ_k ({what}, unit rows)")
    ax.set_title("singular-value spectrum")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles, names, fontsize="small")
    place_legends(fig, [ax])
    return fig
