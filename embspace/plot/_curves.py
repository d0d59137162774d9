"""Metric curves over training: one line per run and metric key, x = step (or epoch), y = the metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import (
    TrajectoryLike,
    as_trajectory,
    color,
    figure_of,
    labelled,
    metric_label,
    new_figure,
    style,
)
from embspace.plot._layout import place_legends
from embspace.trajectory import Trajectory

DEFAULT_METRICS = ("gap", "uniformity", "alignment")


def curves(
    runs: TrajectoryLike | Sequence[TrajectoryLike] | Mapping[str, TrajectoryLike],
    metrics: str | Sequence[str] = DEFAULT_METRICS,
    *,
    ax: Axes | None = None,
    ncols: int = 3,
) -> Figure:
    """Metrics along one or several training runs.

    Each name in ``metrics`` is a dotted path (``"uniformity.mean"``, ``"recall@1.image->text"``) drawn as one
    line per run, or a family (``"uniformity"``, ``"cone"``) drawn as one line per key (per modality, ``mean``,
    ``joint``, …). Without ``ax`` each metric gets its own panel; with ``ax`` every line goes into that one.
    Several runs are told apart by colour, their keys by a line style and marker that is the same in every
    panel; legends go where they cover no data (:mod:`embspace.plot._layout`).

    Args:
        runs: a :class:`~embspace.trajectory.Trajectory` (or the path of its JSON), a list of them, or
            ``{name: trajectory}``.
        metrics: one name or several.
        ax: draw into this Axes instead of a new figure.
        ncols: panels per row of a new figure.
    Returns:
        The figure drawn into.
    """
    named = [(label, as_trajectory(run)) for label, run in labelled(runs, "trajectory")]
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise InputError("metrics", "no metric to plot")
    panels = [(name, _paths(name, [t for _, t in named])) for name in names]
    shared = ax is not None and len(panels) > 1
    keys = list(dict.fromkeys(_key(name, path, shared) for name, paths in panels for path in paths))
    if ax is not None:
        fig, grid = figure_of(ax), [ax] * len(panels)
    else:
        rows, cols = grid_shape(len(panels), ncols)
        fig = new_figure((4.6 * cols, 3.4 * rows))
        grid = [fig.add_subplot(rows, cols, i + 1) for i in range(len(panels))]
    for axes, (name, paths) in zip(grid, panels, strict=True):
        _draw(axes, name, paths, named, keys, shared=shared)
    if shared:
        ax.set_title(", ".join(names))
        ax.set_ylabel("value")
    place_legends(fig, dict.fromkeys(grid))
    return fig


def grid_shape(panels: int, ncols: int) -> tuple[int, int]:
    """Rows and columns for ``panels`` panels, at most ``ncols`` a row, as few empty cells as that allows
    (4 panels: 2 × 2, not 2 × 3)."""
    rows = math.ceil(panels / max(1, min(ncols, panels)))
    return rows, math.ceil(panels / rows)


def _key(name: str, path: str, shared: bool) -> str:
    """The legend name of one line: its key in a family's panel, the whole path in a shared Axes."""
    return path if shared or path == name else path.partition(".")[2]


def _paths(name: str, trajectories: list[Trajectory]) -> list[str]:
    found: dict[str, None] = {}
    for trajectory in trajectories:
        found.update(dict.fromkeys(trajectory.paths_of(name)))
    if not found:
        available = sorted({p for t in trajectories for r in t.reports for p in r.flat()})
        raise InputError(name, f"no such metric in the reports; available: {', '.join(available)}")
    return list(found)


def _draw(ax: Axes, name: str, paths: list[str], runs: list[tuple[str, Trajectory]], keys: list[str], *,
          shared: bool) -> None:
    """Draw one metric's lines. One run: a colour per key of the figure and a (dash, marker) pair per line of the
    panel (so two keys that coincide both show). Several runs: a colour per run and a (dash, marker) pair per key.
    ``keys`` lists every key of the figure, so a key has the same colour (one run) or style (several) in every
    panel."""
    several_runs = len(runs) > 1
    for r, (run, trajectory) in enumerate(runs):
        for j, path in enumerate(paths):
            key = _key(name, path, shared)
            k = keys.index(key)
            label = f"{run} · {key}" if several_runs and (len(paths) > 1 or shared) else (run if several_runs else key)
            linestyle, marker = style(k if several_runs else j)  # one run: lines that coincide stay visible
            ax.plot(trajectory.steps, trajectory.values(path), marker=marker, markersize=3.5, label=label,
                    color=color(r if several_runs else k), linestyle=linestyle)
    first = runs[0][1]
    ax.set_xlabel(first.unit)
    ax.set_ylabel(metric_label(name, first.reports[0].settings))
    ax.set_title(name)
    ax.grid(alpha=0.3)
    if len(ax.get_lines()) > 1:
        ax.legend(fontsize="small")
