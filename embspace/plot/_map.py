"""A 2-D map of both modalities: PCA (default) or UMAP of the unit rows, coloured by modality.

Rows are L2-normalised first (every metric is defined on the sphere). PCA is fitted on the union of both
modalities, centred on their joint mean, so the gap shows as two separated clouds; thin grey lines join a random
subset of true pairs, and the arrow goes from the first modality's centroid to the second's — the gap direction
(exactly its projection under PCA; the centroids of the embedded points under UMAP), its head under a third of its
drawn length. The legend sits below the axes (beside a given Axes), off the points. Large inputs are subsampled (the
same rows of both modalities, so pairs stay pairs).

The input is checked as :func:`embspace.measure` checks it (:func:`embspace.io.validate`): two modalities need the
same number of rows (row i of each is one pair) and the same dimension, and a row holding NaN / Inf or zero norm is
refused in one line naming the file and row — or, with ``drop_invalid``, dropped together with its partner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerPatch
from matplotlib.patches import FancyArrowPatch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io.validate import validate
from embspace.plot._common import axes_of, color
from embspace.plot._layout import place_legends, renderer_of

METHODS = ("pca", "umap")
HEAD = 18.0  # the arrow head's size in points, for a long arrow
HEAD_SHARE = 0.3  # at most this share of the arrow's drawn length


def embedding_map(
    modalities: Mapping[str, Any] | Sequence[Any],
    *,
    method: str = "pca",
    max_points: int = 2000,
    pairs: int = 100,
    seed: int = 0,
    drop_invalid: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Scatter both modalities in 2-D, with matched-pair lines and the gap arrow.

    Args:
        modalities: ``{name: rows}`` (arrays, tensors or :class:`~embspace.embeddings.Embeddings`, as
            :func:`embspace.load` returns them), or two arrays ``(image, text)``; one modality is drawn alone.
        method: ``"pca"`` (numpy SVD) or ``"umap"`` (needs ``umap-learn``: ``pip install 'embspace[umap]'``).
        max_points: at most this many rows per modality are drawn (a seeded random subset).
        pairs: how many true pairs to join by a line (0 for none).
        seed: the subsample's and UMAP's seed.
        drop_invalid: drop rows with NaN / Inf or zero norm (with their partners) instead of refusing them.
        ax: draw into this Axes instead of a new figure.

    Raises:
        InputError: unpaired row counts or dimensions, NaN / Inf or zero-norm rows (without ``drop_invalid``), a
            matrix that is not 2-D, fewer than 2 rows.
    """
    if method not in METHODS:
        raise InputError("--method", f"unknown map method {method!r}; choose {' or '.join(METHODS)}")
    named = dict(modalities) if isinstance(modalities, Mapping) else {
        name: rows for name, rows in zip(("image", "text"), modalities, strict=False)}
    if not 1 <= len(named) <= 2:
        raise InputError("map", f"takes one modality or two paired ones, got {len(named)}")
    checked = validate({name: _embeddings(name, data) for name, data in named.items()}, paired=len(named) == 2,
                       same_dim=len(named) == 2, drop_invalid=drop_invalid)
    n = next(iter(checked.values())).n
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    points = {name: _unit(data.take(keep).to_tensor(torch.float64).numpy()) for name, data in checked.items()}
    union = np.concatenate(list(points.values()))  # (k·M, D)
    coords, axis_names = (_pca(union) if method == "pca" else _umap(union, seed))
    split = np.cumsum([len(p) for p in points.values()])[:-1]
    flat = dict(zip(points, np.split(coords, split), strict=True))  # name → (M, 2)

    own = ax is None
    fig, ax = axes_of(ax, (6.0, 6.0))
    names = list(flat)
    if len(names) == 2 and pairs > 0:
        chosen = rng.choice(len(keep), size=min(pairs, len(keep)), replace=False)
        segments = np.stack([flat[names[0]][chosen], flat[names[1]][chosen]], axis=1)  # (P, 2, 2)
        ax.add_collection(LineCollection(segments, colors="0.55", linewidths=0.5, alpha=0.5,
                                         label=f"true pairs ({len(chosen)} of {n})"))
    for i, name in enumerate(names):
        dropped = checked[name].dropped
        note = f"; {dropped} invalid row{'s' if dropped != 1 else ''} dropped" if dropped else ""
        ax.scatter(flat[name][:, 0], flat[name][:, 1], s=7, alpha=0.6, color=color(i),
                   label=f"{name} ({len(keep)}{note})", linewidths=0)
    arrow = None
    if len(names) == 2:
        start, end = flat[names[0]].mean(0), flat[names[1]].mean(0)
        length = float(np.hypot(*(end - start)))
        arrow = FancyArrowPatch(tuple(start), tuple(end), arrowstyle="-|>", mutation_scale=HEAD, color="black",
                                linewidth=2, zorder=3, shrinkA=0, shrinkB=0,
                                label=f"gap direction ({names[0]} → {names[1]} centroid; {length:.3g} in this plane)")
        ax.add_patch(arrow)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    if method == "pca":
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{' and '.join(names)} embeddings ({method.upper()} of unit rows)")
    keys = {"fontsize": "small", "markerscale": 2,
            "handler_map": {FancyArrowPatch: HandlerPatch(patch_func=_arrow_key)}}
    if own:  # the clouds fill the axes, no corner is free: the legend goes below them
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, **keys)
    else:
        ax.legend(**keys)
        place_legends(fig, [ax], outside=[ax])
    if arrow is not None:
        fit_head(arrow, ax, renderer_of(fig))
    return fig


def fit_head(arrow: FancyArrowPatch, ax: Axes, renderer) -> None:
    """Shrink the arrow head to at most ``HEAD_SHARE`` of the drawn arrow, so a short gap stays an arrow (not a
    black blob): the head's size is ``mutation_scale`` points, the length is measured after the layout."""
    start, end = (ax.transData.transform(p) for p in arrow._posA_posB)
    length = float(np.hypot(*(end - start))) * 72 / renderer.dpi  # points
    arrow.set_mutation_scale(max(1.0, min(HEAD, HEAD_SHARE * length)))
    arrow.set_linewidth(min(2.0, max(0.6, length / 15)))


def _arrow_key(legend, orig_handle, xdescent, ydescent, width, height, fontsize) -> FancyArrowPatch:
    """The legend key of the gap arrow: a small arrow, not the filled box matplotlib draws for a patch."""
    return FancyArrowPatch((-xdescent, height / 2 - ydescent), (width - xdescent, height / 2 - ydescent),
                           arrowstyle="-|>", mutation_scale=0.8 * fontsize, color="black", linewidth=1.5,
                           shrinkA=0, shrinkB=0)


def _embeddings(name: str, data: Any) -> Embeddings:
    """Rows as :class:`Embeddings` (read lazily from disk when they already are), shape and dtype checked."""
    if isinstance(data, Embeddings):
        return data
    return Embeddings.from_array(data, f"<{name}: {type(data).__name__}>")


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to norm 1 (no row is zero: validated)."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pca(x: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Projection on the two leading principal axes of the (centred) rows, with their share of the variance."""
    centred = x - x.mean(0)
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)  # (D,), (D, D), ascending; cheaper than an SVD
    eigenvalues, vt = np.clip(eigenvalues[::-1], 0, None), vectors[:, ::-1].T
    share = eigenvalues / max(float(eigenvalues.sum()), 1e-300)
    coords = centred @ vt[:2].T  # (N, 2)
    if coords.shape[1] < 2:
        coords = np.column_stack([coords, np.zeros(len(coords))])
        share = np.append(share, 0.0)
    return coords, (f"PC 1 ({100 * share[0]:.0f}% of variance)", f"PC 2 ({100 * share[1]:.0f}% of variance)")


def _umap(x: np.ndarray, seed: int) -> tuple[np.ndarray, tuple[str, str]]:
    try:
        import umap
    except ImportError:
        raise ImportError("method='umap' needs umap-learn, which is not installed: pip install 'embspace[umap]'"
                          ) from None
    coords = umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(x)
    return np.asarray(coords, dtype=float), ("UMAP 1", "UMAP 2")
