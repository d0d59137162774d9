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

    The key is split off at the last colon only when what follows it holds no path separator and the whole
    ``PATH[:KEY]`` string is not itself an existing path (so ``C:\\x.npy`` and ``a:b.npy`` stay paths).
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not _NAME.match(name):
        raise InputError(repr(text), f"not an input spec; {SYNTAX}")
    if not rest:
        raise InputError(text, f"no path after '='; {SYNTAX}")
    path_text, key = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and "/" not in tail and "\\" not in tail and not exists(Path(rest)):
        if not tail:
            raise InputError(text, f"empty key after ':'; {SYNTAX}")
        if not head:
            raise InputError(text, f"no path before ':{tail}'; {SYNTAX}")
        path_text, key = head, tail
    return Spec(name, Path(path_text), key)


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
