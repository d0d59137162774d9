"""The gap between every pair of three or more modalities (video–text–audio dumps, say): :func:`gap_matrix`.

:func:`embspace.measure` takes one modality or two paired ones; ``gap_matrix`` measures every pair of ≥ 2 paired
modalities (row i of each is one item) with the same families and options, and lays each figure out as a matrix:
entry [a, b] of ``matrix("gap")`` is the gap between modalities a and b (symmetric metrics are mirrored; a
directional one such as ``modality_bias.<name>`` or ``gap_subspace.<name>`` reads the entry's own modality a).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> three = {name: rng.normal(size=(50, 8)) + shift for name, shift in (("video", 1), ("text", 0), ("audio", -1))}
>>> gaps = gap_matrix(three, metrics="gap,gap_split", device="cpu")
>>> gaps.matrix("gap").shape
(3, 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from embspace.errors import InputError

PAIR_METRICS = "gap,alignment,gap_split,gap_anatomy,rmg,modality_bias"


@dataclass
class GapMatrix:
    """Every pairwise report of several modalities (``reports[(a, b)]`` for a before b in ``names``)."""

    names: tuple[str, ...]
    reports: dict[tuple[str, str], Any] = field(default_factory=dict)

    def report(self, a: str, b: str) -> Any:
        """The report of the pair (a, b), in either order."""
        return self.reports[(a, b)] if (a, b) in self.reports else self.reports[(b, a)]

    def matrix(self, path: str) -> np.ndarray:
        """(M, M) float64 of one report path (``"gap"``, ``"gap_split.centroid_share"``); NaN on the diagonal.
        ``path`` may hold ``{a}`` for the row's modality: ``matrix("modality_bias.{a}")``."""
        m = len(self.names)
        out = np.full((m, m), np.nan)
        for i, a in enumerate(self.names):
            for j, b in enumerate(self.names):
                if i != j:
                    value = self.report(a, b)[path.format(a=a, b=b)]
                    out[i, j] = np.nan if value is None else float(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: the names and each pair's metrics."""
        return {"names": list(self.names),
                "pairs": {f"{a}|{b}": report.to_dict()["metrics"] for (a, b), report in self.reports.items()}}


def gap_matrix(modalities: Mapping[str, Any], *, metrics: str | Iterable[str] = PAIR_METRICS,
               **options: Any) -> GapMatrix:
    """Measure every pair of the paired ``modalities`` (name → N×D array, tensor or Embeddings; at least two) with
    :func:`embspace.measure` (``metrics`` and ``options`` as there)."""
    from embspace.measure import measure

    names = tuple(modalities)
    if len(names) < 2:
        raise InputError("modalities", f"a gap matrix needs at least two paired modalities, got {len(names)}")
    result = GapMatrix(names)
    for a, b in combinations(names, 2):
        result.reports[(a, b)] = measure({a: modalities[a], b: modalities[b]}, metrics=metrics, **options)
    return result
