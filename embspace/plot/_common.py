"""What every figure shares: a headless Figure that shows itself in Jupyter, inputs read from disk, axis labels.

No pyplot anywhere: figures are :class:`matplotlib.figure.Figure` objects, so nothing depends on a global current
figure or on the backend, and a figure can be saved with ``fig.savefig("x.png")`` in a script or shown inline.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.formatting import metric_label  # noqa: F401  (used by the figures)
from embspace.report import Report, parse_json, read_json_text
from embspace.trajectory import FILE_NAME as TRAJECTORY_FILE
from embspace.trajectory import Trajectory

ReportLike = Union[Report, str, os.PathLike]  # noqa: UP007
TrajectoryLike = Union[Trajectory, str, os.PathLike]  # noqa: UP007

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
LINESTYLES = ("-", "--", ":", "-.", (0, (6, 1.5, 1, 1.5, 1, 1.5)), (0, (1, 3)), (0, (9, 3)), (0, (4, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
"""Line styles and markers of the keys of several runs: eight distinct (dash, marker) pairs before they repeat."""


class EmbspaceFigure(Figure):
    """A matplotlib Figure that renders itself as PNG in Jupyter, with or without pyplot's inline backend."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def new_figure(figsize: tuple[float, float] = (6.4, 4.4)) -> Figure:
    return EmbspaceFigure(figsize=figsize, layout="constrained")


def axes_of(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.4)) -> tuple[Figure, Axes]:
    """The given Axes and its figure, or a new figure with one Axes."""
    if ax is not None:
        return figure_of(ax), ax
    fig = new_figure(figsize)
    return fig, fig.add_subplot()


def figure_of(ax: Axes) -> Figure:
    """The top-level figure an Axes belongs to (also inside a SubFigure)."""
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        fig = ax.figure
        while hasattr(fig, "figure") and fig.figure is not fig and fig.figure is not None:
            fig = fig.figure
        return fig


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def style(i: int) -> tuple[str | tuple, str]:
    """The i-th (line style, marker) pair; pairs repeat only after ``len(LINESTYLES) * len(MARKERS)``."""
    return LINESTYLES[i % len(LINESTYLES)], MARKERS[(i + i // len(LINESTYLES)) % len(MARKERS)]


def as_report(item: ReportLike) -> Report:
    return item if isinstance(item, Report) else Report.from_json(item)


def as_trajectory(item: TrajectoryLike) -> Trajectory:
    if isinstance(item, Trajectory):
        return item
    if str(item).lstrip().startswith("{"):  # JSON text
        return Trajectory.from_json(item)
    data, path = read_json(item)
    return Trajectory.from_dict(data, str(path), path.parent)


def read_json(item: str | os.PathLike) -> tuple[Any, Path]:
    """The parsed JSON of a report or trajectory file (a folder means its ``trajectory.json``) and its path, read as
    :meth:`Report.from_json <embspace.report.Report.from_json>` reads: a regular file only (a fifo or device is
    refused, not waited on), invalid JSON or JSON nested too deeply for the parser refused in one line."""
    path = Path(item)
    if path.is_dir():
        path = path / TRAJECTORY_FILE
    return parse_json(read_json_text(path), str(path)), path


def labelled(items: Any, kind: str) -> list[tuple[str, Any]]:
    """``x``, ``[x, …]`` or ``{label: x}`` → [(label, x), …]; labels from a trajectory's name or a report's source."""
    if isinstance(items, Mapping):
        return [(str(k), v) for k, v in items.items()]
    if isinstance(items, Report | Trajectory | str | os.PathLike):
        items = [items]
    if not isinstance(items, Sequence) or not items:
        raise InputError(kind, f"expected one or more {kind}s, got {type(items).__name__}")
    return [(default_label(item, i), item) for i, item in enumerate(items)]


def default_label(item: Any, i: int) -> str:
    if isinstance(item, Trajectory):
        return item.name or f"run {i + 1}"
    if isinstance(item, Report):
        return item._title() or f"report {i + 1}"
    return os.path.basename(os.fspath(item)).removesuffix(".json") or f"#{i + 1}"


def present(paths: Sequence[str], available: Sequence[str], where: str) -> None:
    """Refuse metric paths that no report has, naming what is there."""
    missing = [p for p in paths if p not in available]
    if missing:
        raise InputError(where, f"no metric {missing[0]!r} in the reports; available: {', '.join(available)}")
