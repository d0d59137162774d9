"""Linear separability of two modalities (Fahim et al. 2024): the held-out accuracy of a logistic regression
telling A rows (label 0) from B rows (label 1), 80/20 split by pair (:mod:`embspace.metrics.separability`).

0.5 means the modalities are indistinguishable to a linear probe, 1.0 that a hyperplane separates them. The probe
uses at most ``MAX_PAIRS`` seeded pairs, fewer (down to 1,000) when a quarter of the memory budget is smaller.
Not bootstrapped: each resample would need a refit.
"""

from __future__ import annotations

from typing import ClassVar

from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics
from embspace.metrics import separability

PROBE_C = 1.0


def probe_size(context: Context) -> int:
    """Pairs the probe may use: at most MAX_PAIRS, fewer (down to 1,000) when a quarter of the budget is smaller."""
    budget = context.settings["memory"]["budget"]
    return min(separability.MAX_PAIRS, max(budget // 4 // (48 * context.dim), 1000))


class Separability(Family):
    name = "separability"
    aliases = ("linear_separability",)
    paired_only = True
    table_position = 50.0
    conventions: ClassVar[dict[str, str]] = {
        "linear_separability": "held-out accuracy of an L2 logistic regression (C = 1) telling the modalities "
                               "apart, 80/20 split by pair (Fahim et al. 2024)"}
    not_resampled = "linear_separability"

    def needs(self, context: Context) -> list[Need]:
        index = separability.probe_pairs(context.n, seed=context.settings["seed"], max_pairs=probe_size(context))
        return [RowStat("probe_rows", label="separability", options={"index": index})]

    def finish(self, context: Context, stats: Statistics) -> Found:
        index, xs, ys, where = stats.row("probe_rows")
        result = separability.fit_probe(index, xs, ys, seed=context.settings["seed"], n=context.n, c=PROBE_C)
        settings = {"pairs_used": result["pairs_used"], "test_pairs": result["test_pairs"], "C": PROBE_C}
        if where:
            settings["computed_on"] = where
        return Found(metrics={"linear_separability": result["accuracy"]}, settings={"separability": settings})
