"""Reliability diagram of zero-shot probabilities: accuracy against confidence per bin, before and after.

Reads ``report.vectors["reliability.<modality>"]`` (the ``zeroshot`` family: 15 equal-width bins of top-label
confidence on the evaluation half of the calibration split, at the given logit scale and after temperature
scaling). Each report draws one line at the given scale (solid) and one temperature-scaled (dashed), a point per
non-empty bin at (mean confidence, accuracy) with an area proportional to its rows; the diagonal is perfect
calibration, and the legend gives each line's ECE (Guo et al. 2017, Fig. 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import ReportLike, as_report, axes_of, color, labelled

KINDS = {"at_scale": ("given scale", "-"), "temperature_scaled": ("temperature-scaled", "--")}


def reliability(
    reports: ReportLike | Sequence[ReportLike] | Mapping[str, ReportLike],
    *,
    modality: str | None = None,
    temperature: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Accuracy against mean confidence per bin, one line per report (and per scaling).

    Args:
        reports: a report with zero-shot metrics (or its JSON path), several, or ``{"before": …, "after": …}``.
        modality: the scored modality (default: the first the report scored, usually the image).
        temperature: also draw the temperature-scaled probabilities (dashed).
        ax: draw into this Axes instead of a new figure.
    """
    fig, ax = axes_of(ax, figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="perfect calibration")
    names: list[str] = []
    for i, (label, item) in enumerate(labelled(reports, "report")):
        report = as_report(item)
        tables = {k.removeprefix("reliability."): v for k, v in report.vectors.items()
                  if k.startswith("reliability.")}
        if not tables:
            raise InputError(label, "the report has no reliability tables; measure it with labels= and prompts= "
                                    "(the zeroshot metrics)")
        name = modality or next(iter(tables))
        if name not in tables:
            raise InputError(label, f"no reliability table of {name!r}; the report scored {', '.join(tables)}")
        names.append(name)
        for kind, (what, line) in KINDS.items():
            if kind == "temperature_scaled" and not temperature:
                continue
            table = tables[name][kind]
            count = np.asarray(table["count"], dtype=float)
            used = count > 0
            conf, acc = np.asarray(table["confidence"])[used], np.asarray(table["accuracy"])[used]
            ax.plot(conf, acc, ls=line, color=color(i), lw=1.5,
                    label=f"{label}, {what}: ECE {table['ece']:.3f}")
            ax.scatter(conf, acc, s=8 + 200 * count[used] / count.sum(), color=color(i), alpha=0.6, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (mean top-label probability in the bin)")
    ax.set_ylabel("accuracy in the bin")
    shown = ", ".join(dict.fromkeys(names))
    ax.set_title(f"zero-shot reliability of {shown} (evaluation half of the calibration split)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return fig
