"""What ``compare`` adds for labelled data: the label sets of the bootstrap, and the losses it flags.

Given the rows' labels and each side's class prompts (before and after fine-tuning the text tower gives different
prompt embeddings), the paired bootstrap of :func:`embspace.compare.paired_bootstrap` resamples zero-shot top-k and
the ECE at the given scale (:class:`embspace.families.zeroshot.ZeroShot`'s weighted form) with the same pair
weights before and after. A **zero-shot loss** is a zero_shot@k whose interval of the change lies below 0; a
**calibration loss** an ECE whose interval lies above 0 — flagged as a loss of retrieval is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from embspace.errors import InputError
from embspace.labels import RowShape, check_label_inputs
from embspace.metrics.zeroshot import DEFAULT_LOGIT_SCALE


def bootstrap_settings(settings: Mapping[str, Any], labels: Any, prompts: tuple[Any, Any] | None,
                       logit_scale: float | None, names: tuple[str, str], n: int, dims: tuple[int, int]
                       ) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The settings of the before and the after side, each with its checked :class:`~embspace.labels.LabelSet`
    (``settings["labels"]``) and the rows (all N)."""
    if labels is None:
        if prompts is not None and any(p is not None for p in prompts):
            raise InputError("compare", "prompts need labels too (one class per pair)")
        return settings, settings
    if prompts is None or any(p is None for p in prompts):
        raise InputError("compare", "zero-shot changes need the class prompts before and after (prompts_before=, "
                                    "prompts_after=): fine-tuning moves them too")
    shapes = {names[0]: RowShape(n, dims[0]), names[1]: RowShape(n, dims[1])}
    scale = DEFAULT_LOGIT_SCALE if logit_scale is None else logit_scale
    sides = []
    for side in prompts:
        label_set = check_label_inputs(labels, side, scale, shapes)
        sides.append({**settings, "labels": label_set, "rows": np.arange(n)})
    return sides[0], sides[1]


def label_losses(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, "ZERO-SHOT LOSS" / "CALIBRATION LOSS") of every zero-shot drop and ECE rise beyond the noise."""
    out = []
    for path, test in metrics.items():
        if path.startswith("zero_shot@") and test.significant and test.ci[1] < 0:
            out.append((path, "ZERO-SHOT LOSS"))
        elif path.startswith("ece.") and test.significant and test.ci[0] > 0:
            out.append((path, "CALIBRATION LOSS"))
    return out
