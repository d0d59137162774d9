"""Few-shot linear probe on the image modality (:mod:`embspace.metrics.probe`): k labelled rows per class,
scikit-learn logistic regression, accuracy on the rest, over several seeds.

The probed modality is the one named ``image`` when labelled, otherwise the first labelled modality (recorded in
``settings["probe"]["modality"]``). Metrics ``few_shot@k.mean`` and ``few_shot@k.std`` (over ``PROBE_SEEDS`` seeds
seed, seed + 1, …); every seed's accuracy, the classes used and the test rows in ``report.vectors["few_shot"]``.
Not bootstrapped: every resample would need refits.
"""

from __future__ import annotations

from typing import ClassVar

from embspace.families.base import Context, Family, Found, Need, Statistics
from embspace.families.labelled import label_set, labelled_rows, rows_need, rows_settings
from embspace.metrics.probe import PROBE_C, PROBE_KS, PROBE_SEEDS, few_shot_probe


def probed(context: Context) -> str | None:
    labels = label_set(context)
    if labels is None:
        return None
    return "image" if "image" in labels.labels else next(iter(labels.labels))


class FewShotProbe(Family):
    name = "probe"
    aliases = ("few_shot",)
    paired_only = False
    needs_labels = "labels="
    table_position = 62.0
    not_resampled = "few-shot probe (refits per resample)"
    conventions: ClassVar[dict[str, str]] = {}

    def convention(self, key: str) -> str | None:
        if not key.startswith("few_shot@"):
            return None
        k = key.removeprefix("few_shot@")
        return (f"{k} rows per class (classes with more than {k} rows) train LogisticRegression(C={PROBE_C:g}); "
                f"accuracy on the other rows; mean and std (ddof=1) over {PROBE_SEEDS} seeds")

    def needs(self, context: Context) -> list[Need]:
        modality = probed(context)
        return [rows_need(context, modality)] if modality is not None else []

    def finish(self, context: Context, stats: Statistics) -> Found:
        modality = probed(context)
        ks = tuple(context.options.get("probe_ks") or PROBE_KS)
        found = Found(settings={"probe": {**rows_settings(context), "modality": modality, "ks": list(ks),
                                          "seeds": PROBE_SEEDS, "C": PROBE_C}})
        if modality is None:
            return found
        _, x, y = labelled_rows(context, stats, modality)
        results = few_shot_probe(x, y, ks=ks, seeds=PROBE_SEEDS, first_seed=context.settings["seed"])
        for k, result in results.items():
            found.metrics[f"few_shot@{k}"] = {"mean": result["mean"], "std": result["std"]}
        found.vectors["few_shot"] = {str(k): r for k, r in results.items()}
        skipped = [k for k in ks if k not in results]
        if skipped:
            found.settings["probe"]["skipped_ks"] = {str(k): "fewer than two classes have k + 1 rows" for k in skipped}
        return found
