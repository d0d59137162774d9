"""A sampled run leaves out the families that need exact N² top-k passes, and says why."""

from __future__ import annotations

import numpy as np

import embspace


def test_a_sampled_run_leaves_out_modality_bias_and_mutual_knn_with_the_reason():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    y = x + 0.5 * rng.normal(size=(300, 8))
    sampled = embspace.measure(image=x, text=y, estimate="sampled", pairs=2000, queries=100)
    exact = embspace.measure(image=x, text=y)
    assert sampled.settings["estimate"]["method"] == "sampled"
    assert "modality_bias" in exact.metrics and "mutual_knn" in exact.metrics
    assert "modality_bias" not in sampled.metrics and "mutual_knn" not in sampled.metrics
    assert "samples" in sampled.settings["modality_bias"]["left_out"]
    assert "samples" in sampled.settings["structure"]["left_out"]["mutual_knn"]
    # the O(N·D²) structure numbers stay, and are the exact run's
    assert sampled.metrics["cka"] == exact.metrics["cka"]
    assert sampled.metrics["procrustes"] == exact.metrics["procrustes"]
