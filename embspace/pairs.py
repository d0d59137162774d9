"""Many-to-many pairs: which rows of two modalities belong together, from a ``pair_ids`` mapping.

Two forms (API ``pair_ids=``, CLI ``--pair-ids``):

- **row mapping**: one integer per row of one modality (the one with as many rows as the mapping; the second
  modality when both have as many), giving the row of the other modality it belongs to — for MSCOCO, each
  caption row's image row (``--pair-ids coco.parquet:image_row``);
- **shared item ids**: one integer id per row of *each* modality (``pair_ids={"image": ids_a, "text": ids_b}``;
  CLI ``--pair-ids image=imgs.npy --pair-ids text=coco.parquet:image_id``); rows with equal ids belong together.

Either is an array, a ``.npy`` file, a column of a ``.npz`` / ``.parquet`` file (``PATH:KEY``, the readers'
spelling) or a column of a clip-retrieval folder's metadata (``laion/:image_id``). Both become item ids per row
(:class:`PairMap`): a row-mapping's target rows are their own items. Row i of A and row j of B are a **relevant
pair** when their items are equal. Every row of either modality must have at least one relevant partner: an image
without a caption (or an id that only one modality has) is refused, naming the row, since its recall is undefined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embspace.errors import InputError
from embspace.io.spec import parse_spec


@dataclass(frozen=True)
class PairMap:
    """Item ids per row of both modalities (int64, 0 … n_items − 1) and where they came from."""

    item_a: np.ndarray  # (N_a,)
    item_b: np.ndarray  # (N_b,)
    source: str

    @property
    def n_items(self) -> int:
        return int(max(self.item_a.max(), self.item_b.max())) + 1

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every relevant (row of A, row of B), sorted by row of B then row of A: Σ_items m_a·m_b pairs."""
        order_a = np.argsort(self.item_a, kind="stable")
        sorted_items = self.item_a[order_a]
        lo = np.searchsorted(sorted_items, self.item_b, side="left")
        hi = np.searchsorted(sorted_items, self.item_b, side="right")
        counts = hi - lo
        rows_b = np.repeat(np.arange(len(self.item_b)), counts)
        starts = np.repeat(lo, counts)
        offsets = np.arange(len(rows_b)) - np.repeat(np.cumsum(counts) - counts, counts)
        return order_a[starts + offsets], rows_b

    def describe(self) -> dict[str, Any]:
        """What a report records of the mapping."""
        a, _ = self.pairs()
        per_a = np.bincount(self.item_a, minlength=self.n_items)
        per_b = np.bincount(self.item_b, minlength=self.n_items)
        return {"source": self.source, "items": self.n_items, "pairs": len(a),
                "rows_per_item": {"a_max": int(per_a.max()), "b_min": int(per_b.min()), "b_max": int(per_b.max()),
                                  "b_mean": float(per_b.mean())}}


def read_ids(given: Any, where: str) -> np.ndarray:
    """An integer vector from an array / list / tensor, or from ``PATH[:KEY]`` (.npy, .npz, .parquet, a
    clip-retrieval folder's metadata column)."""
    if isinstance(given, torch.Tensor):
        given = given.detach().cpu().numpy()
    if isinstance(given, str | Path):
        return _integers(_read_file(str(given)), str(given))
    try:
        return _integers(np.asarray(given), where)
    except (TypeError, ValueError) as error:
        raise InputError(where, f"cannot read as an integer array: {error}") from None


def _read_file(text: str) -> np.ndarray:
    spec = parse_spec(f"ids={text}")
    path, key = spec.path, spec.key
    if not path.exists():
        raise InputError(text, "no such file or folder")
    try:
        if path.is_dir():
            return _metadata_column(path, key, text)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if key is None:
                    if len(archive.files) != 1:
                        raise InputError(text, f"name a key: {', '.join(archive.files)}")
                    key = archive.files[0]
                if key not in archive.files:
                    raise InputError(text, f"no key {key!r}; keys: {', '.join(archive.files)}")
                return archive[key]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            names = pq.ParquetFile(path).schema_arrow.names
            if key is None or key not in names:
                raise InputError(text, f"name an id column (PATH:COLUMN); columns: {', '.join(names)}")
            return pq.read_table(path, columns=[key]).column(key).to_numpy()
    except InputError:
        raise
    except (OSError, ValueError) as error:
        raise InputError(text, f"cannot read: {error}") from None
    raise InputError(text, "pair ids are read from .npy, .npz:KEY, .parquet:COLUMN or a clip-retrieval folder:COLUMN")


def _metadata_column(folder: Path, key: str | None, text: str) -> np.ndarray:
    import re

    import pyarrow.parquet as pq

    shards = sorted((folder / "metadata").glob("metadata_*.parquet"),
                    key=lambda p: int(m.group(1)) if (m := re.search(r"(\d+)$", p.stem)) else -1)
    if not shards or key is None:
        raise InputError(text, "a clip-retrieval folder gives pair ids from a metadata column (FOLDER:COLUMN)")
    parts = []
    for shard in shards:
        names = pq.ParquetFile(shard).schema_arrow.names
        if key not in names:
            raise InputError(f"{shard}", f"no column {key!r}; columns: {', '.join(names)}")
        parts.append(pq.read_table(shard, columns=[key]).column(key).to_numpy())
    return np.concatenate(parts)


def _integers(values: np.ndarray, where: str) -> np.ndarray:
    if values.ndim != 1:
        raise InputError(where, f"pair ids must be a 1-D integer array, got shape {values.shape}")
    if values.dtype.kind == "f" and len(values) and np.isfinite(values).all() and (values == np.round(values)).all():
        values = values.astype(np.int64)  # integral floats (a parquet column with nulls reads as float)
    if values.dtype.kind not in "iu":
        raise InputError(where, f"pair ids must be integers, got dtype {values.dtype}")
    return values.astype(np.int64)


def pair_map(given: Any, names: tuple[str, str], sizes: tuple[int, int]) -> PairMap:
    """The :class:`PairMap` of ``pair_ids`` for modalities ``names`` with ``sizes`` rows."""
    if isinstance(given, Mapping):
        return _shared_ids(given, names, sizes)
    where = given if isinstance(given, str | Path) else "pair_ids"
    ids = read_ids(given, str(where))
    (a, b), (n_a, n_b) = names, sizes
    if len(ids) == n_b:
        mapped, target, n_target = "b", a, n_a
    elif len(ids) == n_a:
        mapped, target, n_target = "a", b, n_b
    else:
        raise InputError(str(where), f"has {len(ids)} ids; a row mapping needs one per row of {b} ({n_b}) or of "
                                     f"{a} ({n_a})")
    _in_range(ids, n_target, str(where), target)
    covered = np.bincount(ids, minlength=n_target)
    if (covered == 0).any():
        row = int(np.flatnonzero(covered == 0)[0])
        raise InputError(str(where), f"{target} row {row} has no partner ({int((covered == 0).sum())} rows of "
                                     f"{target} have none); every row needs at least one")
    own = np.arange(n_target, dtype=np.int64)
    item_a, item_b = (own, ids) if mapped == "b" else (ids, own)
    return PairMap(item_a, item_b, str(where))


def _in_range(ids: np.ndarray, n: int, where: str, target: str) -> None:
    bad = np.flatnonzero((ids < 0) | (ids >= n))
    if len(bad):
        row = int(bad[0])
        raise InputError(where, f"row {row}: id {int(ids[row])} is not a row of {target} (0 … {n - 1}); "
                                f"{len(bad)} ids out of range")


def _shared_ids(given: Mapping[str, Any], names: tuple[str, str], sizes: tuple[int, int]) -> PairMap:
    if set(given) != set(names):
        raise InputError("pair_ids", f"shared item ids need one array per modality ({', '.join(names)}), got "
                                     f"{', '.join(map(str, given)) or 'none'}")
    ids = {}
    for name, n in zip(names, sizes, strict=True):
        where = f"{name}={given[name]}" if isinstance(given[name], str | Path) else f"pair_ids[{name}]"
        values = read_ids(given[name], where)
        if len(values) != n:
            raise InputError(where, f"has {len(values)} ids for the {n} rows of {name}")
        ids[name] = (values, where)
    (va, wa), (vb, wb) = ids[names[0]], ids[names[1]]
    for (values, where), (other, _), name in (((va, wa), (vb, wb), names[0]), ((vb, wb), (va, wa), names[1])):
        alone = np.flatnonzero(~np.isin(values, other))
        if len(alone):
            row = int(alone[0])
            raise InputError(where, f"{name} row {row}: id {int(values[row])} has no row in the other modality "
                                    f"({len(alone)} rows without a partner)")
    _, inverse = np.unique(np.concatenate([va, vb]), return_inverse=True)
    return PairMap(inverse[: len(va)].astype(np.int64), inverse[len(va) :].astype(np.int64),
                   f"{wa}, {wb}")
