"""Class structure of each labelled modality (:mod:`embspace.metrics.classes`): between/within variance ratio,
class-centroid cosine, k-means agreement with the labels, and the per-class gap between two labelled modalities.

Metrics: ``class_variance_ratio.<m>`` (B / W, trace form), ``class_centroid_cosine.<m>`` (mean over c ≠ c' of
cos(μ_c, μ_c')), ``kmeans_v_measure.<m>`` and ``kmeans_ami.<m>`` (KMeans, k = classes present, n_init = 10,
random_state = seed), and with two labelled modalities ``class_gap.mean / median / max`` over the classes present
in both (when both have one dimension). ``report.vectors`` holds ``class_variance.<m>`` (B, W),
``class_centroid_cosine.<m>`` (the classes and the C×C matrix) and ``class_gap`` (class → gap). Not bootstrapped:
k-means needs a refit per resample.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embspace.families.base import Context, Family, Found, Need, Statistics
from embspace.families.labelled import label_set, labelled_rows, rows_need, rows_settings
from embspace.metrics import classes
from embspace.metrics.classes import KMEANS_N_INIT


class ClassStructure(Family):
    name = "classes"
    aliases = ("class_structure",)
    paired_only = False
    needs_labels = "labels="
    table_position = 61.0
    not_resampled = "class structure (k-means needs a refit per resample)"
    conventions: ClassVar[dict[str, str]] = {
        "class_variance_ratio": "B/W with B = (1/N)Σ_c n_c‖μ_c − μ‖², W = (1/N)Σ_c Σ_{i∈c}‖x̂_i − μ_c‖² (trace "
                                "form of Fisher's criterion; unit rows, means not renormalised)",
        "class_centroid_cosine": "mean over classes c ≠ c' of cos(μ_c, μ_c'); the matrix in vectors",
        "class_gap": "‖μ_c(first) − μ_c(second)‖ per class present in both modalities, summarised; per class in "
                     "vectors",
        "kmeans_v_measure": f"V-measure of KMeans(k = classes present, n_init={KMEANS_N_INIT}, random_state=seed) "
                            "clusters against the labels (scikit-learn)",
        "kmeans_ami": "adjusted mutual information of the same clusters and the labels (scikit-learn)",
    }

    def needs(self, context: Context) -> list[Need]:
        labels = label_set(context)
        return [rows_need(context, m) for m in labels.labels] if labels is not None else []

    def finish(self, context: Context, stats: Statistics) -> Found:
        labels = label_set(context)
        found = Found(settings={"classes": {**rows_settings(context), "kmeans_n_init": KMEANS_N_INIT}})
        if labels is None:
            return found
        seen = {}
        for m in labels.labels:
            _, x, y = labelled_rows(context, stats, m)
            seen[m] = (x, y)
            ratio = classes.variance_ratio(x, y)
            found.metrics.setdefault("class_variance_ratio", {})[m] = ratio["ratio"]
            found.vectors[f"class_variance.{m}"] = {"between": ratio["between"], "within": ratio["within"]}
            present, matrix, mean = classes.centroid_cosines(x, y)
            found.metrics.setdefault("class_centroid_cosine", {})[m] = mean
            found.vectors[f"class_centroid_cosine.{m}"] = {"classes": present.tolist(), "matrix": matrix.tolist()}
            agreement = classes.kmeans_agreement(x, y, seed=context.settings["seed"])
            found.metrics.setdefault("kmeans_v_measure", {})[m] = agreement["v_measure"]
            found.metrics.setdefault("kmeans_ami", {})[m] = agreement["ami"]
        if len(seen) == 2 and len({rows.shape[1] for rows, _ in seen.values()}) == 1:  # one space: a gap
            (x, xl), (y, yl) = seen.values()
            gaps = classes.class_gaps(x, xl, y, yl)
            if gaps:
                values = np.array(list(gaps.values()))
                found.metrics["class_gap"] = {"mean": float(values.mean()), "median": float(np.median(values)),
                                              "max": float(values.max())}
                found.vectors["class_gap"] = {str(c): g for c, g in gaps.items()}
        return found
