"""Singular-value spectrum per modality (log–log), with RankMe and the effective rank marked.

σ_k are the singular values of the row-normalised matrix (``report.spectra``; uncentred by default, as RankMe
uses them). A flat spectrum spreads the variance over many dimensions; a steep drop means few dimensions carry it.
The vertical lines sit at RankMe (dashed) and the effective rank (dotted) of each modality: both are "how many
dimensions are used" (Garrido et al. 2023; Roy & Vetterli 2007).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import ReportLike, as_report, axes_of, color, labelled


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
        marks: vertical lines at RankMe and the effective rank.
        ax: draw into this Axes instead of a new figure.
    """
    fig, ax = axes_of(ax)
    named = [(label, as_report(r)) for label, r in labelled(reports, "report")]
    key = "singular_values_centered" if centered else "singular_values"
    rank_key = "effective_rank_centered" if centered else "effective_rank"
    line = 0
    for label, report in named:
        if not report.spectra:
            raise InputError(label, "the report has no spectra; measure it with the 'spectrum' metrics")
        for modality, spectra in report.spectra.items():
            sigma = np.asarray(spectra[key], dtype=float)
            k = np.arange(1, len(sigma) + 1)
            keep = sigma > 0
            if normalize and keep.any():
                sigma = sigma / sigma[0]
            name = f"{label} · {modality}" if len(named) > 1 else modality
            c = color(line)
            ax.plot(k[keep], sigma[keep], color=c, label=name)
            if marks:
                flat = report.flat()
                for metric, style in (("rankme", "--"), (rank_key, ":")):
                    value = flat.get(f"{metric}.{modality}")
                    if isinstance(value, int | float) and value > 0 and not (metric == "rankme" and centered):
                        ax.axvline(value, color=c, linestyle=style, linewidth=1,
                                   label=f"{name} {'RankMe' if metric == 'rankme' else 'effective rank'} = {value:.1f}")
            line += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index k")
    what = "centred" if centered else "uncentred"
    ax.set_ylabel(f"σ_k / σ_1 ({what})" if normalize else f"singular value σ_k ({what}, unit rows)")
    ax.set_title("singular-value spectrum")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return fig
