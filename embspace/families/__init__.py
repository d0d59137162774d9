"""The metric families: one module each, registered here in one line.

A family (:class:`~embspace.families.base.Family`) declares the statistics it needs, turns them into numbers,
names its conventions and, where :mod:`embspace.compare` bootstraps it, gives its form under pair weights.
:func:`embspace.measure`, the sharded run and the paired bootstrap are all driven from these declarations. To add a
family: write a module with a ``Family`` subclass and add one line to :data:`REGISTRY` (docs/families.md shows a
worked example).
"""

from __future__ import annotations

from collections.abc import Iterable

from embspace.errors import InputError
from embspace.families.alignment import Alignment
from embspace.families.base import Context, Family, Found, Need, PairPass, RowStat, Sampled, Statistics, Weighted
from embspace.families.classes import ClassStructure
from embspace.families.cone import Cone
from embspace.families.directions import DirectionsFamily
from embspace.families.gap import Gap
from embspace.families.gap_anatomy import GapAnatomy
from embspace.families.gap_split import GapSplit
from embspace.families.histograms import Histograms
from embspace.families.hubness import Hubness
from embspace.families.modality_bias import ModalityBias
from embspace.families.probe import FewShotProbe
from embspace.families.retrieval import Retrieval
from embspace.families.rmg import RelativeModalityGap
from embspace.families.separability import Separability
from embspace.families.spectrum import Spectrum
from embspace.families.structure import Structure
from embspace.families.uniformity import Uniformity
from embspace.families.zeroshot import ZeroShot

REGISTRY: tuple[Family, ...] = (
    Gap(),
    Alignment(),
    Cone(),
    RelativeModalityGap(),
    Uniformity(),
    Spectrum(),
    Retrieval(),
    Hubness(),
    Separability(),
    Histograms(),
    GapSplit(),
    ZeroShot(),  # the label families: computed only when labels are given
    ClassStructure(),
    FewShotProbe(),
    GapAnatomy(),
    ModalityBias(),
    Structure(),
    DirectionsFamily(),
)

FAMILIES = tuple(family.name for family in REGISTRY)
SINGLE_FAMILIES = tuple(family.name for family in REGISTRY if not family.paired_only)
PAIRED_FAMILIES = tuple(family.name for family in REGISTRY if family.paired_only)
ALIASES = {alias: family.name for family in REGISTRY for alias in family.aliases}
_BY_NAME = {family.name: family for family in REGISTRY}
LABEL_FAMILIES = tuple(family.name for family in REGISTRY if getattr(family, "needs_labels", ""))


def family(name: str) -> Family:
    """The registered family called ``name``."""
    return _BY_NAME[name]


def parse_metrics(metrics: str | Iterable[str] | None) -> list[str]:
    """``"uniformity,gap"`` or a list → the families to compute, in canonical order; None or "all" → every one."""
    if metrics is None:
        return list(FAMILIES)
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    if names == ["all"]:
        return list(FAMILIES)
    chosen = set()
    for name in names:
        resolved = ALIASES.get(name, name)
        if resolved not in _BY_NAME:
            raise InputError("metrics", f"unknown metric {name!r}; choose from {', '.join(FAMILIES)} (or all)")
        chosen.add(resolved)
    return [f for f in FAMILIES if f in chosen]


def in_table_order(names: Iterable[str]) -> list[Family]:
    """The families called ``names``, in the order of the metric table."""
    return sorted((_BY_NAME[name] for name in names), key=lambda f: f.table_position)


__all__ = ["ALIASES", "FAMILIES", "LABEL_FAMILIES", "PAIRED_FAMILIES", "REGISTRY", "SINGLE_FAMILIES", "Context",
           "Family", "Found", "Need", "PairPass", "RowStat", "Sampled", "Statistics", "Weighted", "family",
           "in_table_order", "parse_metrics"]
