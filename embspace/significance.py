"""What a paired bootstrap found: one :class:`MetricTest` per metric (the change, its interval, how it was
resampled) and the :class:`Significance` that holds them (:func:`embspace.compare.paired_bootstrap`,
:func:`embspace.item_bootstrap.item_bootstrap`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["METHODS", "MetricTest", "Significance"]


@dataclass
class MetricTest:
    """The paired bootstrap of one metric: the change, its interval, and how it was resampled.

    ``ci`` is the interval named by ``interval``: ``"bca"`` (bias-corrected and accelerated, Efron 1987; see
    :mod:`embspace.bootstrap`), ``"percentile"``, or ``"jackknife"`` (the normal interval of the delete-d jackknife
    over half-samples, for the metrics fitted to the rows: no bootstrap resamples, so no percentile interval, share
    or acceleration); ``percentile_ci`` is the percentile interval of the same resamples, ``below_share`` the share
    of resampled changes below the measured one (the bias correction z₀ = Φ⁻¹ of it) and ``acceleration`` the
    jackknife's a (NaN for the percentile interval).
    """

    path: str
    before: float
    after: float
    change: float  # after − before: the reports' values where they have the metric, else the data's
    ci: tuple[float, float]  # the interval of the change (``interval``)
    method: str  # "all pairs" or "subsample" (the dense N² metrics)
    resampled_change: float  # the change on the data the bootstrap resamples (all pairs, or the subsample)
    data_before: float = math.nan  # the metric recomputed from the given embeddings
    data_after: float = math.nan
    interval: str = "bca"  # "bca", "percentile" or "jackknife"
    percentile_ci: tuple[float, float] = (math.nan, math.nan)  # percentile interval of the same resamples
    below_share: float = math.nan  # share of resampled changes below resampled_change (ties half)
    acceleration: float = math.nan  # BCa's a from the jackknife of the change

    @property
    def significant(self) -> bool:
        """The interval excludes 0: the change exceeds the resampling noise."""
        return self.ci[0] > 0 or self.ci[1] < 0

    @property
    def one_sided(self) -> bool:
        """Fewer than 1 % of the resampled changes on one side of the measured change: the bootstrap distribution
        is shifted by more than its spread, beyond what the bias correction can repair."""
        spread = self.percentile_ci[0] != self.percentile_ci[1]
        return math.isfinite(self.below_share) and not 0.01 <= self.below_share <= 0.99 and spread

    def ci_text(self) -> str:
        return f"[{self.ci[0]:+.4f}, {self.ci[1]:+.4f}]"

    def verdict(self) -> str:
        if not self.significant:
            return "no"
        return "yes, up" if self.ci[0] > 0 else "yes, down"

    def to_dict(self) -> dict[str, Any]:
        out = {"before": self.before, "after": self.after, "change": self.change, "ci": list(self.ci),
               "interval": self.interval, "beyond_noise": self.significant, "resampled": self.method,
               "resampled_change": self.resampled_change}
        if self.interval != "jackknife":
            out.update(percentile_ci=list(self.percentile_ci), below_share=self.below_share)
        if self.interval == "bca":
            out["acceleration"] = self.acceleration
        return out


METHODS = {
    "bca": "paired bootstrap over pairs, BCa interval of after − before (Efron 1987: bias correction from the share "
           "of resampled changes below the measured one, acceleration from the leave-one-pair-out jackknife)",
    "percentile": "paired bootstrap over pairs, percentile interval of after − before",
}


@dataclass
class Significance:
    """What the paired bootstrap found, metric by metric, and how it was run (``interval``: "bca" or
    "percentile", described in ``to_dict()["method"]``)."""

    resamples: int
    seed: int
    confidence: float
    pairs: int
    subsample: int
    metrics: dict[str, MetricTest] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    not_tested: list[str] = field(default_factory=list)
    interval: str = "bca"

    def retrieval_losses(self) -> list[str]:
        """recall@k paths whose drop exceeds the noise."""
        return [p for p, m in self.metrics.items() if p.startswith("recall@") and m.significant and m.ci[1] < 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": METHODS[self.interval], "interval": self.interval,
            "resamples": self.resamples, "seed": self.seed, "confidence": self.confidence, "pairs": self.pairs,
            "subsample": {"pairs": self.subsample, "metrics": sorted(p for p, m in self.metrics.items()
                                                                     if m.method == "subsample")},
            "metrics": {p: m.to_dict() for p, m in self.metrics.items()},
            "retrieval_losses": self.retrieval_losses(), "not_tested": self.not_tested, "notes": self.notes,
        }
