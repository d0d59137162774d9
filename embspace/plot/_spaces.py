"""How much structure a space kept: CKA and mutual-kNN of several before/after comparisons
(:func:`embspace.compare_spaces` results, or the ``spaces`` part of ``embspace compare --json``), with intervals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embspace.errors import InputError
from embspace.plot._common import axes_of, color

SHOWN = (("cka_unbiased", "CKA (unbiased)", "-", "o"), ("mutual_knn", "mutual k-NN", "--", "s"))


def _as_dict(item: Any, label: str) -> dict[str, Any]:
    data = item.to_dict() if hasattr(item, "to_dict") else item
    if isinstance(data, Mapping) and "spaces" in data:  # a whole `embspace compare --json` file
        data = data["spaces"]
    if not isinstance(data, Mapping) or "modalities" not in data:
        raise InputError(label, "is not a space comparison (compare_spaces(...) or the 'spaces' of compare --json)")
    return dict(data)


def space_structure(comparisons: Mapping[str, Any], *, ax: Axes | None = None,
                    title: str | None = None) -> Figure:
    """CKA (unbiased) and mutual-kNN of each comparison (x: its label, in the given order), one colour per modality,
    with their intervals as error bars. Returns the figure."""
    items = [(label, _as_dict(item, label)) for label, item in comparisons.items()]
    if not items:
        raise InputError("comparisons", "is empty")
    fig, ax = axes_of(ax, figsize=(6.4, 4.0))
    modalities = list(dict.fromkeys(name for _, data in items for name in data["modalities"]))
    x = list(range(len(items)))
    for m, modality in enumerate(modalities):
        for metric, name, line, marker in SHOWN:
            values, low, high = [], [], []
            for _, data in items:
                entry = data["modalities"].get(modality, {})
                value = entry.get(metric, float("nan"))
                ci = entry.get("intervals", {}).get(metric, [value, value])
                values.append(value)
                low.append(value - ci[0])
                high.append(ci[1] - value)
            ax.errorbar(x, values, yerr=[low, high], color=color(m), linestyle=line, marker=marker, capsize=3,
                        label=f"{modality}: {name}")
    k = items[0][1].get("k")
    ax.set_xticks(x, [label for label, _ in items])
    ax.set_ylabel(f"kept structure (k = {k})" if k else "kept structure")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return fig
