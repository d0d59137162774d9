"""Metric curves over training: one line per run and metric key, x = step (or epoch), y = the metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import (
    LINESTYLES,
    TrajectoryLike,
    as_trajectory,
    color,
    figure_of,
    labelled,
    metric_label,
    new_figure,
)
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
    Several runs are told apart by colour (keys then by line style) and named in the legend.

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
    if ax is not None:
        fig, grid = figure_of(ax), [ax] * len(panels)
    else:
        cols = min(ncols, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig = new_figure((4.6 * cols, 3.4 * rows))
        grid = list(fig.subplots(rows, cols, squeeze=False).flat)
        for extra in grid[len(panels):]:
            extra.set_visible(False)
    shared = ax is not None and len(panels) > 1
    offset = 0
    for axes, (name, paths) in zip(grid, panels, strict=False):
        offset += _draw(axes, name, paths, named, shared=shared, offset=offset)
    if shared:
        ax.set_title(", ".join(names))
        ax.set_ylabel("value")
    return fig


def _paths(name: str, trajectories: list[Trajectory]) -> list[str]:
    found: dict[str, None] = {}
    for trajectory in trajectories:
        found.update(dict.fromkeys(trajectory.paths_of(name)))
    if not found:
        available = sorted({p for t in trajectories for r in t.reports for p in r.flat()})
        raise InputError(name, f"no such metric in the reports; available: {', '.join(available)}")
    return list(found)


def _draw(ax: Axes, name: str, paths: list[str], runs: list[tuple[str, Trajectory]], *, shared: bool,
          offset: int) -> int:
    """Draw one metric's lines; returns how many keys it drew (colours of a shared Axes continue from there)."""
    several_runs = len(runs) > 1
    for r, (run, trajectory) in enumerate(runs):
        for k, path in enumerate(paths):
            key = path if shared or path == name else path.partition(".")[2]
            label = f"{run} · {key}" if several_runs and (len(paths) > 1 or shared) else (run if several_runs else key)
            style = LINESTYLES[(offset + k) % len(LINESTYLES)] if several_runs else "-"
            ax.plot(trajectory.steps, trajectory.values(path), marker="o", markersize=3.5, label=label,
                    color=color(r if several_runs else offset + k), linestyle=style)
    first = runs[0][1]
    ax.set_xlabel(first.unit)
    ax.set_ylabel(metric_label(name, first.reports[0].settings))
    ax.set_title(name)
    ax.grid(alpha=0.3)
    if len(ax.get_lines()) > 1:
        ax.legend(fontsize="small")
    return len(paths)
