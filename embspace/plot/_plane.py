"""The uniformity–alignment plane (Wang & Isola 2020, their Figure 1): x = alignment, y = uniformity.

Both axes are losses — lower alignment means true pairs lie closer, lower uniformity means the points spread more
evenly over the sphere — so the good corner is the bottom left. A report is one point; a trajectory is a path of
points in step order, with arrows from each step to the next and its first and last steps written beside them —
away from the path, inside the axes, on no point or arrow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from embspace.errors import InputError
from embspace.plot._common import ReportLike, TrajectoryLike, as_report, as_trajectory, axes_of, color, labelled
from embspace.plot._layout import free_offset, place_legends, renderer_of
from embspace.report import Report
from embspace.trajectory import Trajectory

Item = ReportLike | TrajectoryLike


def plane(
    items: Item | Sequence[Item] | Mapping[str, Item],
    *,
    uniformity: str = "mean",
    ax: Axes | None = None,
    arrows: bool = True,
) -> Figure:
    """Reports and trajectories in the uniformity–alignment plane.

    Args:
        items: reports and/or trajectories (objects or paths to their JSON), one, a list, or ``{label: item}``.
        uniformity: which uniformity is the y value: a modality name, ``"mean"``, ``"joint"`` or ``"cross"``.
        ax: draw into this Axes instead of a new figure.
        arrows: join a trajectory's points by arrows in step order.
    Returns:
        The figure: one marker line per item (its legend entry is the label), arrows as patches.
    """
    fig, ax = axes_of(ax, (6.0, 4.8))
    settings: dict[str, Any] = {}
    labels: list[tuple[Any, np.ndarray, np.ndarray, int]] = []  # (text, x, y, index of the labelled point)
    for i, (label, item) in enumerate(labelled(items, "report or trajectory")):
        if not isinstance(item, Report | Trajectory):
            item = _read(item)
        reports = item.reports if isinstance(item, Trajectory) else [item]
        x = np.array([_value(r, "alignment", label) for r in reports])
        y = np.array([_value(r, f"uniformity.{uniformity}", label) for r in reports])
        settings = settings or reports[0].settings
        path = isinstance(item, Trajectory) and len(reports) > 1
        ax.plot(x, y, marker="o", markersize=5, linestyle="none" if (arrows or not path) else "-",
                color=color(i), label=label)
        if path:
            if arrows:
                for start, end in zip(zip(x[:-1], y[:-1], strict=True), zip(x[1:], y[1:], strict=True), strict=True):
                    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color=color(i),
                                                 shrinkA=3, shrinkB=3, linewidth=1.2))
            for j in (0, len(reports) - 1):
                text = ax.annotate(f"{item.unit} {item.steps[j]}", (x[j], y[j]), textcoords="offset points",
                                   xytext=(5, 5), fontsize="small", color=color(i))
                labels.append((text, x, y, j))
    ax.set_xlabel(f"alignment (α={settings.get('alpha', 2):g}) — lower: pairs closer")
    ax.set_ylabel(f"uniformity [{uniformity}] (t={settings.get('t', 2):g}) — lower: more uniform")
    ax.set_title("uniformity–alignment plane (Wang & Isola 2020)")
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    ax.legend(fontsize="small")
    _place_labels(fig, ax, labels)
    place_legends(fig, [ax])
    return fig


def _place_labels(fig: Figure, ax: Axes, labels: list[tuple[Any, np.ndarray, np.ndarray, int]]) -> None:
    """Each step label beside its point, away from the path (the side opposite its neighbour first), inside the
    axes and off every point, arrow and other label; the margins grow until the labels fit."""
    if not labels:
        return
    for _ in range(4):
        renderer = renderer_of(fig)
        placed = True
        for text, x, y, j in labels:
            to_display = ax.transData.transform
            here = to_display((x[j], y[j]))
            neighbour = to_display((x[1], y[1]) if j == 0 else (x[j - 1], y[j - 1]))
            away = here - neighbour
            angle = np.arctan2(away[1], away[0]) if np.hypot(*away) > 0 else np.pi / 4
            turns = angle + np.deg2rad([0, 45, -45, 90, -90, 135, -135, 180])
            directions = list(zip(np.cos(turns), np.sin(turns), strict=True))
            placed &= free_offset(ax, renderer, text, directions, distance=8.0)
        if placed:
            return
        margin_x, margin_y = ax.margins()
        ax.margins(margin_x * 1.6 + 0.02, margin_y * 1.6 + 0.02)


def _read(path: Any) -> Report | Trajectory:
    """A report or a trajectory JSON, told apart by its schema."""
    try:
        return as_report(path)
    except InputError as exc:
        if "embspace.trajectory/" not in str(exc):
            raise
        return as_trajectory(path)


def _value(report: Report, path: str, label: str) -> float:
    value = report.flat().get(path)
    if not isinstance(value, int | float):
        available = [p for p in report.flat() if p.startswith("uniformity.")] or ["none"]
        raise InputError(label, f"the report has no {path!r} (needs two paired modalities measured with "
                                f"alignment and uniformity; uniformity keys: {', '.join(available)})")
    return float(value)
