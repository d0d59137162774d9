"""What the label families share: the checked labels of a run and the rows they are computed on.

The labels, prompts and logit scale (:class:`embspace.labels.LabelSet`) reach a family through
``context.options["labels"]``; without them the label families are not computed (:func:`embspace.measure` leaves
them out, and refuses them by name when asked for). The families compute on the rows gathered as float64 arrays:
all N rows up to ``MAX_ROWS`` (fewer when a quarter of the memory budget is smaller), otherwise a seeded subset
(``numpy.random.default_rng(seed).choice``, the same rows for every modality, so pairs stay pairs), recorded in
``settings["labels"]["rows_used"]``.
"""

from __future__ import annotations

import numpy as np

from embspace.families.base import Context, RowStat, Statistics
from embspace.labels import LabelSet

MAX_ROWS = 100_000


def label_set(context: Context) -> LabelSet | None:
    return context.options.get("labels")


def rows_index(context: Context) -> np.ndarray:
    """The sorted rows the label families use."""
    budget = context.settings["memory"]["budget"]
    most = min(MAX_ROWS, max(budget // 4 // (8 * max(context.dim, 1) * max(len(context.names), 1)), 1000))
    if context.n <= most:
        return np.arange(context.n)
    return np.sort(np.random.default_rng(context.settings["seed"]).choice(context.n, size=most, replace=False))


def rows_need(context: Context, modality: str) -> RowStat:
    return RowStat("label_rows", modality, label="labels", options={"index": rows_index(context)})


def labelled_rows(context: Context, stats: Statistics, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row indices, float64 unit rows (n, D), labels (n,)) of one labelled modality."""
    index, rows = stats.row("label_rows", modality)
    labels = label_set(context)
    assert labels is not None
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return index, unit, np.asarray(labels.labels[modality])[index]


def rows_settings(context: Context) -> dict:
    index = rows_index(context)
    return {"rows_used": len(index), "rows_total": context.n,
            "rows_rule": "all rows" if len(index) == context.n else
            f"seeded subset of {len(index)} rows (numpy default_rng({context.settings['seed']}).choice)"}
