"""Variance along given directions, and the gap's share in them: a family that needs the directions as input.

A user names subspaces of the embedding space — ``{"core": (k, D) array, "spurious": (k', D) array}`` — and the
family reports, per modality m and subspace S (basis Q, the rows orthonormalised), from the streamed D×D Gram
matrix of the unit rows (the statistic the spectrum family uses, computed once):

* ``direction_variance["m/S"]`` = tr(Q Σ_m Qᵀ), Σ_m the population covariance of modality m's unit rows;
* ``direction_share["m/S"]`` = that variance over tr Σ_m: the share of the modality's variance along S;
* with two modalities, ``gap_direction_share["S"]`` = ‖QΔ‖² / ‖Δ‖², Δ = mean(X̂) − mean(Ŷ) (not renormalised).

On data from :mod:`embspace.data.synthetic` the directions are known; on real dumps they are the user's estimates:
class-mean differences (:func:`embspace.metrics.directions.class_mean_directions`) for a class subspace, the mean
differences of an attribute (a background, a style) for a spurious one, a probe's weights. The within-class
variances and zero-shot accuracy need labels, so they are in the Python API
(:func:`embspace.metrics.directions.subspace_variance` with ``labels``), not in this family. Xue et al. (ICLR 2024,
arXiv 2310.04971) motivate the diagnostic: multimodal contrastive learning keeps the variance along core features
that over-represented spurious features would otherwise overshadow.

The family runs only when directions are given: ``measure(..., directions={...})`` or ``embspace measure …
--directions FILE.npz`` (one array per subspace, named by its key). Without them, ``metrics="all"`` leaves it out
and ``metrics="directions"`` is an error. Not bootstrapped by ``compare``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embspace.errors import InputError
from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics
from embspace.metrics.directions import from_moments, orthonormal_basis

NAME = "directions"
_SUBSPACE = re.compile(r"^[A-Za-z0-9_-]+$")

Directions = Mapping[str, Any]


def load_directions(path: str | Path) -> dict[str, np.ndarray]:
    """The subspaces of an ``.npz`` file: one (k, D) or (D,) array per key, the key naming the subspace."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: np.asarray(npz[key]) for key in npz.files}
    except FileNotFoundError:
        raise InputError(str(path), "no such directions file") from None
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read the directions (an .npz of (k, D) arrays): {exc}") from None
    if not arrays:
        raise InputError(str(path), "holds no arrays; give one (k, D) array of directions per subspace")
    return arrays


def check_directions(directions: Directions | str | Path, dim: int) -> tuple[str, dict[str, np.ndarray]]:
    """(where they came from, subspace name → orthonormal basis (r, D)), validated against the dimension ``dim``."""
    source = "directions"
    if isinstance(directions, str | Path):
        source, directions = str(directions), load_directions(directions)
    if not isinstance(directions, Mapping) or not directions:
        raise InputError("directions", "expected a mapping of subspace name → (k, D) array of directions")
    bases = {}
    for name, value in directions.items():
        where = f"{source}:{name}"
        if not isinstance(name, str) or not _SUBSPACE.match(name):
            raise InputError(where, "a subspace name is letters, digits, '_' or '-'")
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise InputError(where, f"expected real numbers, got {array.dtype}")
        basis = orthonormal_basis(array, where)
        if basis.shape[1] != dim:
            raise InputError(where, f"directions of dimension {basis.shape[1]}, but the embeddings have {dim}")
        bases[name] = basis
    return source, bases


def select(families: list[str], metrics: str | Iterable[str] | None, directions: object) -> list[str]:
    """The families of a run: without directions this family is left out of "all" and refused when named."""
    if directions is not None or NAME not in families:
        return families
    if metrics is None or metrics == "all" or (not isinstance(metrics, str) and list(metrics) == ["all"]):
        return [f for f in families if f != NAME]
    raise InputError("directions", "the directions family needs the directions: pass directions={name: (k, D) "
                                   "array} (on the command line --directions FILE.npz)")


class DirectionsFamily(Family):
    name = NAME
    paired_only = False
    table_position = 70.0
    conventions: ClassVar[dict[str, str]] = {
        "direction_variance": "tr(QΣQᵀ): variance of the unit rows (population covariance Σ) along each given "
                              "subspace, Q its orthonormalised basis; key modality/subspace",
        "direction_share": "tr(QΣQᵀ) / tr Σ: share of the modality's variance along each given subspace",
        "gap_direction_share": "‖QΔ‖² / ‖Δ‖², Δ = mean(X̂) − mean(Ŷ) not renormalised: share of the squared gap in "
                               "each given subspace (Liang et al. 2022's gap; Xue et al. 2024's directions)",
    }
    not_resampled = "direction_variance, direction_share, gap_direction_share"

    def needs(self, context: Context) -> list[Need]:
        given = context.options.get("directions")
        if given is None:
            return []
        check_directions(given, context.dim)  # refused before any pass
        return [RowStat("gram", m, label="spectrum") for m in context.names]

    def finish(self, context: Context, stats: Statistics) -> Found:
        given = context.options.get("directions")
        if given is None:
            return Found()
        source, bases = check_directions(given, context.dim)
        grams = {m: stats.row("gram", m) for m in context.names}
        variance, share = {}, {}
        for m, g in grams.items():
            for name, basis in bases.items():
                v, total = from_moments(g.gram.numpy(), g.total.numpy(), g.n, basis)
                variance[f"{m}/{name}"] = v
                share[f"{m}/{name}"] = v / total if total > 0 else 0.0
        metrics: dict[str, Any] = {"direction_variance": variance, "direction_share": share}
        if context.paired:
            a, b = (grams[m] for m in context.names)
            delta = (a.total / a.n - b.total / b.n).numpy()  # (D,)
            squared = float(delta @ delta)
            metrics["gap_direction_share"] = {name: float(((basis @ delta) ** 2).sum() / squared) if squared > 0
                                              else 0.0 for name, basis in bases.items()}
        ranks = {name: int(basis.shape[0]) for name, basis in bases.items()}
        return Found(metrics=metrics, settings={"directions": {"source": source, "rank": ranks}})
