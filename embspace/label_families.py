"""Which label families a run computes: left out without labels (or prompts), refused by name when asked for."""

from __future__ import annotations

from typing import Any

from embspace.errors import InputError
from embspace.families import LABEL_FAMILIES, family
from embspace.labels import LabelSet


def with_label_families(families: list[str], metrics: Any, label_set: LabelSet | None, *,
                        sharded: bool = False) -> list[str]:
    """``families`` without the label families the inputs cannot feed: without labels (or, for zero-shot,
    without prompts) they are left out when every family was asked for, and refused by name when asked for."""
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics or [])
    asked = bool(names) and names != ["all"]
    if label_set is not None and sharded:
        raise InputError("labels", "the label families run in one process; measure labelled dumps without torchrun")
    kept = []
    for name in families:
        if name in LABEL_FAMILIES:
            missing = (label_set is None) or (name == "zeroshot" and label_set.prompts is None)
            if missing:
                if asked:
                    raise InputError("metrics", f"{name} needs {family(name).needs_labels} (one class per row"
                                                f"{', one embedding per class' if name == 'zeroshot' else ''})")
                continue
        kept.append(name)
    return kept
