"""Class labels and class prompts of a measurement: read, checked, and handed to the label families.

``labels``: one integer class per row (N,), for every modality at once or per modality (a mapping name → labels);
``prompts``: one embedding per class (C, D), row c the class c's prompt through the text tower ("a photo of a
{class}"); ``logit_scale``: the softmax scale of the zero-shot logits (CLIP's learned one, ≈ 100). Bad input is an
:class:`~embspace.errors.InputError` naming the source, the key and the row: labels of the wrong length, not
integers, negative, a class with no prompt, prompts of a dimension no labelled modality has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embspace.errors import InputError


@dataclass(frozen=True)
class LabelArray:
    """Integer labels and where they came from (file:key), for messages."""

    values: Any
    source: str


@dataclass(frozen=True)
class LabelSet:
    """Checked labels (modality → (N,) int64), prompts ((C, D) float64, or None) and the logit scale."""

    labels: Mapping[str, np.ndarray]
    prompts: np.ndarray | None
    logit_scale: float
    sources: Mapping[str, str]

    @property
    def classes(self) -> int:
        """C: the prompts' rows, else one more than the largest label."""
        if self.prompts is not None:
            return int(self.prompts.shape[0])
        return int(max(int(v.max()) for v in self.labels.values())) + 1

    def zero_shot_modalities(self, dims: Mapping[str, int]) -> list[str]:
        """The labelled modalities whose dimension is the prompts' (zero-shot scores them)."""
        if self.prompts is None:
            return []
        return [m for m in self.labels if dims[m] == self.prompts.shape[1]]

    def settings(self, dims: Mapping[str, int]) -> dict[str, Any]:
        return {"labelled": list(self.labels), "sources": dict(self.sources), "classes": self.classes,
                "prompts": self.prompts is not None, "logit_scale": self.logit_scale,
                "zero_shot_on": self.zero_shot_modalities(dims)}


@dataclass(frozen=True)
class RowShape:
    """What :func:`check_label_inputs` reads of a modality: its rows and dimension (no rows dropped)."""

    n: int
    dim: int
    dropped: int = 0


def read_labels(spec: str) -> LabelArray:
    """``PATH[:KEY]`` of an integer array: .npy, .npz (KEY: the array), .parquet / .arrow (KEY: the column), or a
    text file with one integer per line."""
    path_text, _, key = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path, source = Path(path_text), spec
    if not path.is_file():
        raise InputError(source, "no such labels file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return LabelArray(np.load(path, allow_pickle=False), source)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if not key:
                    if len(npz.files) != 1:
                        raise InputError(source, f"name the array of labels: one of {', '.join(npz.files)}")
                    key = npz.files[0]
                if key not in npz.files:
                    raise InputError(source, f"has no array {key!r}; arrays: {', '.join(npz.files)}")
                return LabelArray(npz[key], source)
        if suffix in (".parquet", ".arrow", ".feather"):
            import pyarrow.feather as feather
            import pyarrow.parquet as pq

            table = pq.read_table(path) if suffix == ".parquet" else feather.read_table(path)
            if not key:
                raise InputError(source, f"name the column of labels: one of {', '.join(table.column_names)}")
            if key not in table.column_names:
                raise InputError(source, f"has no column {key!r}; columns: {', '.join(table.column_names)}")
            return LabelArray(table.column(key).to_numpy(zero_copy_only=False), source)
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        try:
            return LabelArray(np.array([int(line) for line in lines], dtype=np.int64), source)
        except ValueError:
            bad = next(i for i, line in enumerate(lines) if not line.lstrip("-").isdigit())
            raise InputError(source, f"row {bad}: {lines[bad][:40]!r} is not an integer class") from None
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(source, f"cannot read labels: {exc}") from None


def check_label_inputs(labels: Any, prompts: Any, logit_scale: float, embeddings: Mapping[str, Any]
                       ) -> LabelSet | None:
    """The labels, prompts and logit scale checked against the modalities (name → Embeddings); None without
    labels. Prompts without labels are refused (nothing to score)."""
    if not (isinstance(logit_scale, int | float) and not isinstance(logit_scale, bool)
            and math.isfinite(logit_scale) and logit_scale > 0):
        raise InputError("logit_scale", f"must be a finite number > 0, got {logit_scale!r}")
    if labels is None:
        if prompts is not None:
            raise InputError("prompts", "zero-shot needs labels too: give labels= (one class per row)")
        return None
    names = list(embeddings)
    given = dict(labels) if isinstance(labels, Mapping) else {name: labels for name in names}
    unknown = [m for m in given if m not in embeddings]
    if unknown:
        raise InputError("labels", f"no modality {unknown[0]!r} to label; modalities: {', '.join(names)}")
    checked, sources = {}, {}
    for name, value in given.items():
        source = value.source if isinstance(value, LabelArray) else ("labels" if not isinstance(labels, Mapping)
                                                                     else f"labels[{name}]")
        emb = embeddings[name]
        if getattr(emb, "dropped", 0):
            raise InputError(source, f"{emb.dropped} rows of {name} were dropped as invalid; labels cannot follow "
                                     "them (fix the rows, or drop them and their labels yourself)")
        checked[name] = _integers(value.values if isinstance(value, LabelArray) else value, source, name, emb.n)
        sources[name] = source
    table = None
    if prompts is not None:
        table = _prompts(prompts)
        source = getattr(prompts, "source", "prompts")
        dims = {name: embeddings[name].dim for name in checked}
        if table.shape[1] not in dims.values():
            have = ", ".join(f"{m} {d}" for m, d in dims.items())
            raise InputError(source, f"prompts have dimension {table.shape[1]}, but the labelled modalities have "
                                     f"{have}")
        for name, values in checked.items():
            bad = np.flatnonzero(values >= table.shape[0])
            if bad.size:
                raise InputError(sources[name], f"row {bad[0]} has class {values[bad[0]]}, which has no prompt "
                                                f"({source} has {table.shape[0]} classes, 0…{table.shape[0] - 1})")
        sources["prompts"] = source
    return LabelSet(checked, table, float(logit_scale), sources)


def _integers(values: Any, source: str, name: str, n: int) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    if array.ndim != 1 or len(array) != n:
        raise InputError(source, f"expected {n} labels (one per row of {name}), got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        integral = np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and (array == np.round(
            array)).all()
        if not integral:
            bad = _first_non_integer(array)
            raise InputError(source, f"labels must be integer classes ({array.dtype} given; row {bad}: "
                                     f"{str(array[bad])[:40]!r})")
    array = array.astype(np.int64)
    negative = np.flatnonzero(array < 0)
    if negative.size:
        raise InputError(source, f"row {negative[0]} has class {array[negative[0]]}; classes are 0, 1, 2, …")
    return array


def _first_non_integer(array: np.ndarray) -> int:
    if np.issubdtype(array.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(np.nan_to_num(array))))
        return int(bad[0]) if bad.size else 0
    return 0


def _prompts(prompts: Any) -> np.ndarray:
    from embspace.embeddings import Embeddings

    source = prompts.source if isinstance(prompts, Embeddings) else "prompts"
    if isinstance(prompts, Embeddings):
        array = prompts.to_tensor(torch.float64).numpy()
    else:
        array = np.asarray(prompts.detach().cpu() if isinstance(prompts, torch.Tensor) else prompts)
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
            raise InputError(source, f"prompts must be numbers, got {array.dtype}")
        array = array.astype(np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(source, f"expected one prompt embedding per class, (classes, dim), got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array).all(1))
    if bad.size:
        raise InputError(source, f"row {bad[0]} holds NaN or Inf")
    zero = np.flatnonzero(np.linalg.norm(array, axis=1) == 0)
    if zero.size:
        raise InputError(source, f"row {zero[0]} is all zeros (a prompt needs a direction)")
    return array / np.linalg.norm(array, axis=1, keepdims=True)

