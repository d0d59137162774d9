"""Command-line input specs: ``NAME=PATH[:KEY]``."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from embspace.errors import InputError
from embspace.io.common import exists

SYNTAX = "expected NAME=PATH[:KEY], e.g. image=coco.npz:img, text=dumps/emb.pt:text_features or pairs=features_clip.npy"
KEY_HELP = ("A KEY may hold ':' (image=emb.parquet:clip:vit-b32 reads the column 'clip:vit-b32'); write \\: for a "
            "colon that is part of the key where the file does not exist yet.")
_NAME = re.compile(r"^[\w.+\-]+$")


@dataclass(frozen=True)
class Spec:
    """One parsed input: the modality ``name``, the file or folder ``path`` and an optional ``key`` inside it."""

    name: str
    path: Path
    key: str | None = None

    @property
    def source(self) -> str:
        """The spec's location as the user would write it (``coco.npz:img``)."""
        return f"{self.path}:{self.key}" if self.key is not None else str(self.path)


def parse_spec(text: str) -> Spec:
    """Parse ``NAME=PATH[:KEY]``.

    The whole ``PATH[:KEY]`` that is an existing path is a path (so ``C:\\x.npy`` and ``a:b.npy`` stay paths).
    Otherwise the path ends at the first ``:`` before which an existing file or folder is named, and the rest is
    the key, colons included (``emb.parquet:clip:vit-b32`` reads the column ``clip:vit-b32``). Where nothing
    exists yet the key is split off at the last ``:`` whose tail holds no path separator. In a key, ``\\:`` is a
    literal colon (``emb.parquet:clip\\:vit`` is the column ``clip:vit`` wherever the colon falls).
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not _NAME.match(name):
        raise InputError(repr(text), f"not an input spec; {SYNTAX}")
    if not rest:
        raise InputError(text, f"no path after '='; {SYNTAX}")
    if exists(Path(rest)):
        return Spec(name, Path(rest))
    colons = [i for i, char in enumerate(rest) if char == ":" and (i == 0 or rest[i - 1] != "\\")]
    for i in colons:  # the first colon that ends an existing path: the key is the rest, colons and all
        if i and i + 1 < len(rest) and exists(Path(rest[:i])):
            return Spec(name, Path(rest[:i]), _unescape(rest[i + 1 :]))
    if colons:
        head, tail = rest[: colons[-1]], rest[colons[-1] + 1 :]
        if "/" not in tail and "\\" not in tail.replace("\\:", ""):
            if not tail:
                raise InputError(text, f"empty key after ':'; {SYNTAX}")
            if not head:
                raise InputError(text, f"no path before ':{tail}'; {SYNTAX}")
            return Spec(name, Path(head), _unescape(tail))
    return Spec(name, Path(rest))


def _unescape(key: str) -> str:
    """A key as written in a spec, ``\\:`` standing for ``:``."""
    return key.replace("\\:", ":")

def spec_paths(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files and folders that command-line inputs name — ``NAME=PATH[:KEY]`` specs or plain paths (reports) —
    for the output checks of :func:`embspace.io.atomic.resolve_output`: every reading of an item is listed (the
    spec's path, the text after ``=`` whole, the item itself), since listing one that is not read costs nothing."""
    paths: list[Path] = []
    for item in items:
        text = os.fspath(item)
        paths.append(Path(text))
        _, sep, rest = text.partition("=")
        if sep and rest:
            paths.append(Path(rest))
            with contextlib.suppress(InputError):
                paths.append(parse_spec(text).path)
    return paths
