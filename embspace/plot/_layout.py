"""Keeping legends and labels off the data: placement computed from what is drawn, in display coordinates.

matplotlib's ``loc="best"`` counts line vertices and whole patch bounding boxes, so a histogram step line (one
patch spanning the x range) or a dense scatter gives every location the same badness and the legend lands on the
first one — over the data. Here the data are sampled along their drawn paths (every few pixels, markers and bars as
boxes, texts by their extents) after the figure's layout has run, and a legend goes to

1. the first standard location inside the axes that covers no sample;
2. else the top of the axes, after raising the y limit so that the data end below the legend (a legend at most
   ``HEADROOM`` of the axes tall, a y axis that is not fixed by an aspect ratio);
3. else outside the axes, to the right (the constrained layout makes room for it).

The figure's layout is run again after every move and the inside legends re-checked, since a legend moved outside
shrinks the axes around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import Collection, LineCollection
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox

LOCATIONS = ("upper right", "upper left", "lower left", "lower right", "center right", "center left",
             "upper center", "lower center")
HEADROOM = 0.4  # the tallest legend (fraction of the axes height) put above the data instead of outside
STEP_PX = 2.0  # spacing of the samples along drawn paths, in pixels
PAD_PX = 2.0  # a legend or label keeps this far from the data


def renderer_of(fig: Figure):
    """The figure's renderer, its layout (constrained or tight) run so that axes positions are final."""
    root = fig
    engine = root.get_layout_engine() if hasattr(root, "get_layout_engine") else None
    if engine is not None:
        engine.execute(root)
    return root._get_renderer()


def path_points(vertices: np.ndarray, closed: bool = False) -> np.ndarray:
    """Points every ``STEP_PX`` along a polyline given in display coordinates (its vertices included)."""
    vertices = vertices[np.isfinite(vertices).all(1)]
    if closed and len(vertices) > 2:
        vertices = np.vstack([vertices, vertices[:1]])
    if len(vertices) < 2:
        return vertices.reshape(-1, 2)
    step = np.diff(vertices, axis=0)  # (S, 2)
    count = np.maximum((np.hypot(step[:, 0], step[:, 1]) // STEP_PX).astype(np.int64), 1)  # samples per segment
    segment = np.repeat(np.arange(len(step)), count)
    t = (np.arange(len(segment)) - np.repeat(np.cumsum(count) - count, count)) / count[segment]
    return np.vstack([vertices[segment] + t[:, None] * step[segment], vertices[-1:]])  # (P, 2)


def obstacles(ax: Axes, renderer, skip: Iterable[object] = ()) -> tuple[np.ndarray, list[Bbox]]:
    """What the data cover in display coordinates: (P, 2) sample points and a list of boxes."""
    skipped = set(map(id, skip))
    points: list[np.ndarray] = [np.empty((0, 2))]
    boxes: list[Bbox] = []
    for line in ax.get_lines():
        if id(line) in skipped or not line.get_visible():
            continue
        xy = line.get_transform().transform(line.get_path().vertices)
        if line.get_linestyle() not in ("None", "none", "", " "):
            points.append(path_points(xy))
        if line.get_marker() not in ("None", "none", "", " ", None):
            half = renderer.points_to_pixels(line.get_markersize()) / 2
            boxes += [Bbox([[x - half, y - half], [x + half, y + half]]) for x, y in xy[np.isfinite(xy).all(1)]]
    for patch in ax.patches:
        if id(patch) in skipped or not patch.get_visible():
            continue
        if isinstance(patch, Rectangle):  # a bar: all of it
            boxes.append(patch.get_window_extent(renderer))
        else:  # step lines, arrows: along their outline
            for poly in patch.get_path().to_polygons(patch.get_transform(), closed_only=False):
                points.append(path_points(np.asarray(poly)))
    for collection in ax.collections:
        if id(collection) in skipped or not collection.get_visible():
            continue
        points.append(collection_points(collection))
    for text in ax.texts:
        if id(text) not in skipped and text.get_visible() and text.get_text():
            boxes.append(text.get_window_extent(renderer))
    return np.vstack(points), boxes


def collection_points(collection: Collection) -> np.ndarray:
    """Scatter offsets, or points along the segments of a LineCollection, in display coordinates."""
    if isinstance(collection, LineCollection):
        transform = collection.get_transform()
        return np.vstack([np.empty((0, 2))] + [path_points(transform.transform(np.asarray(s)))
                                               for s in collection.get_segments() if len(s)])
    offsets = np.asarray(collection.get_offsets(), dtype=float).reshape(-1, 2)
    return collection.get_offset_transform().transform(offsets) if len(offsets) else offsets


def covers(box: Bbox, points: np.ndarray, boxes: Sequence[Bbox], pad: float = PAD_PX) -> bool:
    """Whether ``box`` (grown by ``pad`` pixels) contains a point or overlaps a box."""
    grown = box.padded(pad)
    if len(points):
        inside = ((points[:, 0] >= grown.x0) & (points[:, 0] <= grown.x1)
                  & (points[:, 1] >= grown.y0) & (points[:, 1] <= grown.y1))
        if inside.any():
            return True
    return any(grown.overlaps(b) for b in boxes)


def set_loc(legend: Legend, loc: str) -> None:
    if hasattr(legend, "set_loc"):
        legend.set_loc(loc)
    else:  # matplotlib < 3.8
        legend._set_loc(Legend.codes[loc])


def legend_is_clear(ax: Axes, legend: Legend, renderer) -> bool:
    points, boxes = obstacles(ax, renderer)
    return not covers(legend.get_window_extent(renderer), points, boxes)


def _inside(ax: Axes, legend: Legend, renderer) -> bool:
    """Try the inside locations; True when one covers no data (the legend is left there)."""
    legend.set_bbox_to_anchor(None)
    points, boxes = obstacles(ax, renderer)
    for loc in LOCATIONS:
        set_loc(legend, loc)
        if not covers(legend.get_window_extent(renderer), points, boxes):
            return True
    return False


def _headroom(ax: Axes, legend: Legend, renderer) -> bool:
    """Raise the top of the y axis so the data end below the legend, which goes to the top; True if that clears it."""
    if ax.get_aspect() != "auto" or ax.get_yscale() not in ("linear", "log") or ax.yaxis_inverted():
        return False
    set_loc(legend, "upper right")
    height = legend.get_window_extent(renderer).height / max(ax.get_window_extent(renderer).height, 1.0)
    if height > HEADROOM:
        return False
    low, high = ax.get_ylim()
    top = ax.dataLim.y1 if np.isfinite(ax.dataLim.y1) and ax.dataLim.y1 > low else high  # the data's highest y
    share = 1 - height - 0.06  # of the axes height left to the data, below the legend and a small gap
    if ax.get_yscale() == "log":
        ax.set_ylim(low, 10 ** (np.log10(low) + (np.log10(top) - np.log10(low)) / share))
    else:
        ax.set_ylim(low, low + (top - low) / share)
    points, boxes = obstacles(ax, renderer)
    for loc in ("upper right", "upper left", "upper center"):
        set_loc(legend, loc)
        if not covers(legend.get_window_extent(renderer), points, boxes):
            return True
    return False


def _outside(ax: Axes, legend: Legend) -> None:
    set_loc(legend, "upper left")
    legend.set_bbox_to_anchor((1.02, 1.0), transform=ax.transAxes)


def place_legends(fig: Figure, axes: Iterable[Axes], *, outside: Sequence[Axes] = ()) -> None:
    """Put the legend of each of ``axes`` where it covers no data (see the module docstring); the legends of
    ``outside`` go outside at once (a cloud of points has no free corner)."""
    axes = [ax for ax in dict.fromkeys(axes) if ax.get_legend() is not None]
    if not axes:
        return
    renderer = renderer_of(fig)
    out: set[int] = set()
    for ax in axes:
        legend = ax.get_legend()
        if ax in outside or not (_inside(ax, legend, renderer) or _headroom(ax, legend, renderer)):
            _outside(ax, legend)
            out.add(id(ax))
            renderer = renderer_of(fig)
    for _ in range(3):  # a legend moved outside shrinks the axes: check the inside ones again
        bad = [ax for ax in axes if id(ax) not in out and not legend_is_clear(ax, ax.get_legend(), renderer)]
        if not bad:
            break
        for ax in bad:
            if not _inside(ax, ax.get_legend(), renderer):
                _outside(ax, ax.get_legend())
                out.add(id(ax))
            renderer = renderer_of(fig)


def free_offset(ax: Axes, renderer, text: Text, directions: Sequence[tuple[float, float]],
                distance: float = 7.0) -> bool:
    """Move an offset-points annotation to the first of ``directions`` (unit vectors, in points) where it lies
    inside the axes and covers no data; True when one was found (else it stays at the first direction)."""
    axes_box = ax.get_window_extent(renderer)
    points, boxes = obstacles(ax, renderer, skip=[text])
    for dx, dy in directions:
        _put(text, dx, dy, distance)
        box = text.get_window_extent(renderer)
        inside = (box.x0 >= axes_box.x0 and box.x1 <= axes_box.x1 and box.y0 >= axes_box.y0
                  and box.y1 <= axes_box.y1)
        if inside and not covers(box, points, boxes, pad=1.0):
            return True
    _put(text, *directions[0], distance)
    return False


def _put(text: Text, dx: float, dy: float, distance: float) -> None:
    """An offset-points annotation ``distance`` points from its point towards (dx, dy), aligned to lean away."""
    text.set_position((distance * dx, distance * dy))
    text.set_horizontalalignment("left" if dx > 0.3 else "right" if dx < -0.3 else "center")
    text.set_verticalalignment("bottom" if dy > 0.3 else "top" if dy < -0.3 else "center")
