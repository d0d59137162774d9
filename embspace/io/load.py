"""Resolve command-line specs (``image=coco.npz:img``, ``pairs=features_clip.npy``) into named modalities."""

from __future__ import annotations

from collections.abc import Sequence

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io.clip_retrieval import is_clip_retrieval_folder
from embspace.io.open import PLANE_KEYS, open_matrix, open_pairs, open_stored
from embspace.io.spec import Spec, parse_spec
from embspace.io.stored import as_matrix, as_pair

DEFAULT_PAIR_NAMES = ("image", "text")
PAIRS = "pairs"


def load(specs: Sequence[str], names: Sequence[str] | None = None) -> dict[str, Embeddings]:
    """Named modalities, in the order given.

    A spec whose path is a (2, N, D) stack or a clip-retrieval folder (or any ``pairs=PATH``) expands to two
    modalities named by ``names`` (default ``image``, ``text``); a folder or ``.npy`` stack with the key
    ``img`` / ``text`` gives the one side under the spec's own name. A name used twice is refused.
    """
    pair_names = tuple(names) if names is not None else DEFAULT_PAIR_NAMES
    out: dict[str, Embeddings] = {}
    for text in specs:
        spec = parse_spec(text)
        for name, embeddings in _resolve(spec, pair_names).items():
            if name in out:
                raise InputError(text, f"the modality name '{name}' is used twice ({out[name].source} and "
                                       f"{embeddings.source}); give each input its own NAME=")
            out[name] = embeddings
    return out


def _resolve(spec: Spec, pair_names: tuple[str, ...]) -> dict[str, Embeddings]:
    path, key = spec.path, spec.key
    if is_clip_retrieval_folder(path):
        return open_pairs(path, pair_names) if key is None else {spec.name: open_matrix(path, key)}
    if path.suffix.lower() == ".npy" and key in PLANE_KEYS:
        return {spec.name: open_matrix(path, key)}
    stored = open_stored(path, key, ndim=3 if spec.name == PAIRS else None)
    if stored.is_stack or spec.name == PAIRS:
        if len(pair_names) != 2 or pair_names[0] == pair_names[1]:
            raise InputError(spec.source, f"pairs need two different names, got {list(pair_names)}")
        return as_pair(stored, pair_names)
    return {spec.name: as_matrix(stored)}
