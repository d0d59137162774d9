"""Readers: open embedding dumps lazily, name them, validate them.

Formats: ``.npy`` (memory-mapped; a (2, N, D) stack splits into two modalities), ``.npz``, ``.pt`` / ``.pth``
(``weights_only``), ``.safetensors``, ``.parquet``, Arrow IPC ``.arrow`` / ``.feather``, and clip-retrieval
folders (``img_emb/``, ``text_emb/``, ``metadata/``). Pickles are refused. Every problem is an
:class:`~embspace.errors.InputError` whose one-line message names the file (and key, row or shard).
Writes are atomic (:mod:`embspace.io.atomic`); :func:`content_hash` identifies the rows a report was measured on.
"""

from embspace.io.atomic import atomic_write_bytes, atomic_write_text
from embspace.io.digest import content_hash
from embspace.io.load import load
from embspace.io.open import SUPPORTED_SUFFIXES, open_matrix, open_pairs
from embspace.io.spec import Spec, parse_spec
from embspace.io.validate import validate

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Spec",
    "atomic_write_bytes",
    "atomic_write_text",
    "content_hash",
    "load",
    "open_matrix",
    "open_pairs",
    "parse_spec",
    "validate",
]
