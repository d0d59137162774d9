"""The gap profile: the share of ‖Δ‖² per embedding dimension, sorted, and its cumulative sum.

Δ = mean(x̂) − mean(ŷ); s_d = Δ_d²/‖Δ‖² (``report.vectors["gap_shares"]``, from the ``gap_anatomy`` family, or
the squared ``gap_direction``). Bars: the shares of the largest dimensions; line: the cumulative share, with the
number of dimensions that carry 90 % of ‖Δ‖² marked (Schrodi et al. 2024 find the CLIP gap in a few dimensions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.metrics.gap_anatomy import SHARE, dimensions_for
from embspace.plot._common import ReportLike, as_report, axes_of, color, labelled


def shares_of(report) -> np.ndarray:
    """The per-dimension shares of ‖Δ‖² a report holds (gap_shares, else the squared gap direction)."""
    vectors = report.vectors or {}
    if "gap_shares" in vectors:
        return np.asarray(vectors["gap_shares"], dtype=float)
    if "gap_direction" in vectors:
        return np.asarray(vectors["gap_direction"], dtype=float) ** 2
    raise InputError("report", "the report has no gap profile; measure it with the 'gap_anatomy' (or 'gap') metrics")


def gap_profile(reports: ReportLike | Sequence[ReportLike] | Mapping[str, ReportLike], *, top: int | None = None,
                ax: Axes | None = None) -> Figure:
    """Sorted per-dimension shares of ‖Δ‖² (bars, the first report only) and their cumulative sums (one line per
    report) over the ``top`` largest dimensions, with dims_90 marked.

    Args:
        reports: a report (or its JSON path), several, or ``{label: report}``.
        top: how many of the largest dimensions to draw (default: 50, or past the first report's dims_90).
        ax: draw into this Axes instead of a new figure.
    """
    fig, ax = axes_of(ax)
    named = [(label, as_report(r)) for label, r in labelled(reports, "report")]
    if top is None:
        top = max(50, dimensions_for(shares_of(named[0][1]), SHARE) + 10)
    for i, (label, report) in enumerate(named):
        shares = np.sort(shares_of(report))[::-1]
        shown = shares[: min(top, len(shares))]
        k = np.arange(1, len(shown) + 1)
        if i == 0:
            ax.bar(k, shown, color=color(0), alpha=0.35, label="share of ‖Δ‖² per dimension")
        cumulative = np.cumsum(shown)
        needed = dimensions_for(shares, SHARE)
        ax.plot(k, cumulative, color=color(i), marker=".", label=f"{label}: cumulative ({needed} dims carry "
                                                                   f"{SHARE:.0%})")
        if 0 < needed <= len(shown):
            ax.axvline(needed, color=color(i), linestyle=":", linewidth=1)
    ax.axhline(SHARE, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("embedding dimensions, largest share first")
    ax.set_ylabel("share of ‖Δ‖²")
    ax.set_ylim(0, 1.02)
    ax.set_title("where the modality gap lives")
    ax.legend(loc="center right", fontsize="small")
    return fig
