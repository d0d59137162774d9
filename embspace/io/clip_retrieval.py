"""clip-retrieval / LAION embedding folders::

    folder/img_emb/img_emb_{k}.npy    folder/text_emb/text_emb_{k}.npy    folder/metadata/metadata_{k}.parquet

Shards are ordered by the number k (``img_emb_10`` after ``img_emb_9``), each shard's row count must agree across
image, text and metadata (metadata is optional), and each side becomes one lazily read matrix over all shards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io.common import check_file, is_dir, listing, translated
from embspace.io.numpy_files import open_npy
from embspace.io.stored import as_matrix, concatenate

SIDES = ("img", "text")
SIDE_KEYS = {"img": "img", "image": "img", "text": "text", "txt": "text"}
"""Keys that pick one side of a folder (``laion/:img``)."""


def is_clip_retrieval_folder(path: Path) -> bool:
    """A directory holding ``img_emb/`` or ``text_emb/``."""
    return is_dir(path) and any(is_dir(path / f"{side}_emb") for side in SIDES)


def side_of(folder: Path, key: str) -> str:
    """``img`` or ``text`` for a key such as ``image`` or ``txt``; other keys are refused."""
    if key.lower() not in SIDE_KEYS:
        raise InputError(f"{folder}:{key}", "a clip-retrieval folder takes the key img or text")
    return SIDE_KEYS[key.lower()]


def _shards(directory: Path, stem: str, suffix: str) -> dict[int, Path]:
    """``{k: path}`` for files named ``{stem}_{k}{suffix}``; two names with the same k are refused."""
    pattern = re.compile(rf"^{re.escape(stem)}_(\d+){re.escape(suffix)}$")
    found: dict[int, Path] = {}
    if not is_dir(directory):
        return found
    for path in directory.iterdir():
        match = pattern.match(path.name)
        if match:
            k = int(match.group(1))
            if k in found:
                raise InputError(str(path), f"shard {k} appears twice (also {found[k].name})")
            found[k] = path
    return dict(sorted(found.items()))


def _open_shard(path: Path):  # -> Stored
    check_file(path)  # a directory, fifo or device named like a shard is refused before it is opened
    return open_npy(path)


def _metadata_rows(path: Path) -> int:
    check_file(path)
    with translated(str(path)):
        return pq.ParquetFile(path).metadata.num_rows


def open_folder(folder: Path, sides: Sequence[str] = SIDES) -> dict[str, Embeddings]:
    """The requested sides (``img``, ``text``) of a clip-retrieval folder, sources ``folder:img`` / ``folder:text``."""
    shards = {side: _shards(folder / f"{side}_emb", f"{side}_emb", ".npy") for side in sides}
    for side, found in shards.items():
        if not found:
            raise InputError(str(folder / f"{side}_emb"), f"no {side}_emb_<k>.npy shards found")
    numbers = sorted(set().union(*(found.keys() for found in shards.values())))
    for side, found in shards.items():
        missing = [k for k in numbers if k not in found]
        if missing:
            raise InputError(str(folder / f"{side}_emb"), f"shard {missing[0]} is missing "
                                                           f"({side}_emb_{missing[0]}.npy; shards present: "
                                                           f"{listing([str(k) for k in found])})")
    metadata = _shards(folder / "metadata", "metadata", ".parquet")
    stored = {side: [_open_shard(found[k]) for k in numbers] for side, found in shards.items()}
    for position, k in enumerate(numbers):
        counts = {found[k]: stored[side][position].shape[0] for side, found in shards.items()}
        if k in metadata:
            counts[metadata[k]] = _metadata_rows(metadata[k])
        if len(set(counts.values())) > 1:
            described = ", ".join(f"{path.parent.name}/{path.name} has {rows}" for path, rows in counts.items())
            raise InputError(f"{folder} shard {k}", f"row counts differ: {described}")
    return {side: as_matrix(concatenate(parts, f"{folder}:{side}")) for side, parts in stored.items()}
