"""Content hashes of inputs: which data a report was measured on, whatever file or array held it.

``content_hash(embeddings)`` is ``"blake2b-256:" + hexdigest`` of, in order: the text ``"{dtype} {n} {dim}\\n"``
(dtype as torch names it: ``float16``, ``bfloat16``, ``float32``, ``float64``) and the bytes of every row as
stored, row after row, little-endian, C order — streamed in chunks, never the whole matrix at once. The same rows
give the same hash from a ``.npy``, a parquet file or a numpy array; a change of dtype, shape or any bit does not.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import torch

from embspace.embeddings import Embeddings

ALGORITHM = "blake2b-256"
CHUNK_ROWS = 65_536


def content_hash(embeddings: Embeddings, chunk_rows: int = CHUNK_ROWS) -> str:
    """``"blake2b-256:<hex>"`` of the dtype, shape and row bytes of ``embeddings`` (see the module docstring)."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(header(embeddings))
    for _, block in embeddings.chunks(chunk_rows):  # block: (rows, D) in the stored dtype
        digest.update(little_endian_bytes(block))
    return f"{ALGORITHM}:{digest.hexdigest()}"


def header(embeddings: Embeddings) -> bytes:
    """What the hash reads before the rows: ``"{dtype} {n} {dim}\\n"``."""
    return f"{embeddings.dtype_name} {embeddings.n} {embeddings.dim}\n".encode()


def little_endian_bytes(block: torch.Tensor) -> np.ndarray:
    """The bytes of a block of stored rows as the hash reads them (little-endian, C order)."""
    raw = block.detach().cpu().contiguous().view(torch.uint8)  # (rows, D · itemsize): bf16 has no numpy dtype
    if sys.byteorder == "big" and block.element_size() > 1:
        raw = raw.reshape(-1, block.element_size()).flip(1).contiguous()
    return raw.numpy()  # a contiguous uint8 buffer, hashed without another copy
