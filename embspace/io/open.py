"""Open one file (or clip-retrieval folder) by its extension: :func:`open_matrix` and :func:`open_pairs`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io.arrow_files import open_arrow, open_parquet
from embspace.io.clip_retrieval import is_clip_retrieval_folder, open_folder, side_of
from embspace.io.common import PICKLE_SUFFIXES, check_file
from embspace.io.numpy_files import FileIdentity, open_npy, open_npz
from embspace.io.safetensors_files import open_safetensors
from embspace.io.stored import Stored, as_matrix, as_pair, plane
from embspace.io.torch_files import open_pt

PathLike = str | os.PathLike[str]
Reader = Callable[..., Stored]

_READERS: dict[str, tuple[Reader, bool]] = {
    # suffix: (reader, whether it can pick the one 3-D array among several)
    ".npy": (open_npy, False),
    ".npz": (open_npz, True),
    ".pt": (open_pt, True),
    ".pth": (open_pt, True),
    ".safetensors": (open_safetensors, True),
    ".parquet": (open_parquet, False),
    ".arrow": (open_arrow, False),
    ".feather": (open_arrow, False),
}
SUPPORTED_SUFFIXES = tuple(_READERS)
PLANE_KEYS = {"0": 0, "1": 1, "img": 0, "image": 0, "text": 1, "txt": 1}
"""Keys that pick one plane of a (2, N, D) ``.npy`` stack (``features_clip.npy:img``)."""


def open_stored(path: PathLike, key: str | None = None, *, ndim: int | None = None) -> Stored:
    """The array at ``key`` in a file, unread; ``ndim`` prefers the only array of that rank when no key is given."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise InputError(str(path), "pickle files are refused: unpickling can run arbitrary code; save the "
                                    "embeddings with numpy.save, safetensors or torch.save of tensors instead")
    check_file(path)
    if suffix not in _READERS:
        raise InputError(str(path), f"unsupported file type '{suffix or path.name}' (supported: "
                                    f"{', '.join(SUPPORTED_SUFFIXES)}, or a clip-retrieval folder)")
    reader, ranked = _READERS[suffix]
    identity = FileIdentity(path, str(path))
    stored = reader(path, key, ndim=ndim) if ranked else reader(path, key)
    return watched(stored, identity)


def watched(stored: Stored, identity: FileIdentity) -> Stored:
    """``stored`` whose every read first checks that its file is still the one opened (inode and size): a file
    truncated or replaced by another process is named in one line instead of read half (or, memory-mapped, killing
    the process with SIGBUS)."""
    read = stored.read

    def checked(plane: int | None, start: int, stop: int):
        identity.check()
        return read(plane, start, stop)

    return dataclasses.replace(stored, read=checked)


def open_matrix(path: PathLike, key: str | None = None) -> Embeddings:
    """One N×D matrix, read lazily.

    ``path`` is a file of any supported format (``key`` names the array, tensor or column inside it), one side
    of a clip-retrieval folder (key ``img`` or ``text``), or one plane of a (2, N, D) ``.npy`` stack (key
    ``0``/``img`` or ``1``/``text``).
    """
    path = Path(path)
    if is_clip_retrieval_folder(path):
        if key is None:
            raise InputError(str(path), "is a clip-retrieval folder with image and text embeddings; pick one "
                                        "side with :img or :text, or read both with open_pairs (pairs=PATH)")
        side = side_of(path, key)
        return open_folder(path, (side,))[side]
    if path.suffix.lower() == ".npy" and key in PLANE_KEYS:
        stored = open_stored(path)
        if stored.is_stack:
            return plane(stored, PLANE_KEYS[key])
    return as_matrix(open_stored(path, key))


def open_pairs(path: PathLike, names: Sequence[str] = ("image", "text"), *, key: str | None = None
               ) -> dict[str, Embeddings]:
    """Two paired modalities: a (2, N, D) stack split into ``file[0]`` / ``file[1]``, or the image and text
    sides of a clip-retrieval folder. ``names`` name them in that order."""
    path = Path(path)
    names = tuple(names)
    if len(names) != 2 or names[0] == names[1]:
        raise InputError(str(path), f"pairs need two different names, got {list(names)}")
    if is_clip_retrieval_folder(path):
        if key is not None:
            raise InputError(f"{path}:{key}", "open_pairs reads both sides of a clip-retrieval folder; "
                                              "a key picks one side (open_matrix)")
        sides = open_folder(path)
        return {names[0]: sides["img"], names[1]: sides["text"]}
    return as_pair(open_stored(path, key, ndim=3), names)
