"""How numbers and metric names are written in tables, pages and figure labels (no dependencies within embspace,
so that every view can use it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_value", "interval_text", "metric_label"]


def format_value(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, int) or (abs(value) >= 100 and float(value).is_integer()):
        return f"{value:d}" if isinstance(value, int) else f"{value:.0f}"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def interval_text(uncertainty: dict[str, Any]) -> str:
    """``[-1.8012, -1.7988]  n=1,000,000`` (the 95 % interval and the sample size) for a sampled number,
    ``exact`` otherwise: the interval column of the CLI table and of :meth:`Report.table`."""
    if uncertainty.get("method") != "sampled" or "ci" not in uncertainty:
        return "exact"
    low, high = uncertainty["ci"]
    samples = uncertainty.get("samples")
    size = f"  n={samples:,}" if isinstance(samples, int) else ""
    return f"[{low:.4f}, {high:.4f}]{size}"


def metric_label(path: str, settings: Mapping[str, Any] | None = None) -> str:
    """An axis label for a metric family or dotted path, with its convention's parameters."""
    settings = settings or {}
    family, _, key = path.partition(".")
    t, alpha = settings.get("t", 2.0), settings.get("alpha", 2.0)
    names = {
        "gap": "modality gap ‖mean x̂ − mean ŷ‖",
        "centroid_cosine": "cosine of the centroids",
        "alignment": f"alignment (α={alpha:g}), mean ‖x̂ᵢ − ŷᵢ‖^α",
        "matched_cosine": "mean cosine of true pairs",
        "rmg": "relative modality gap",
        "uniformity": f"uniformity (t={t:g})",
        "cone": "cone: mean cosine within a modality",
        "rankme": "RankMe",
        "effective_rank": "effective rank",
        "effective_rank_centered": "effective rank (centred)",
        "participation_ratio": "participation ratio",
        "alpha_req": "α-ReQ (eigenvalue decay)",
        "linear_separability": "linear separability (accuracy)",
        "hubness": f"hubness (k={settings.get('hubness_k', 10)}), skewness",
    }
    label = names.get(family, family)
    if family.startswith("recall@"):
        label = f"{family} (fraction)"
    return f"{label} [{key}]" if key else label
