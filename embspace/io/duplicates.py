"""Exactly duplicated rows of one modality (repeated captions are common and make ties in retrieval).

``duplicate_rows(embeddings)`` = N − #distinct rows, rows compared by their stored bytes (so −0.0 and 0.0 differ,
and two NaN rows with the same bits are equal). Each row is reduced to a 128-bit key (two independent
multiply–xor hashes over its 64-bit words, FNV-1a style), and the keys are counted with ``numpy.unique``: one
O(N·D) streamed pass and 16 bytes per row, never the rows themselves. Two different rows share a key with
probability about N²/2¹²⁹.
"""

from __future__ import annotations

import numpy as np
import torch

from embspace.embeddings import Embeddings

CHUNK_ROWS = 65_536
_PRIMES = (np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15))
_SEEDS = (np.uint64(0xCBF29CE484222325), np.uint64(0x84222325CBF29CE4))


KEY_ROWS = 2048  # rows hashed at a time: their words, transposed, stay in the cache


def row_keys(block: torch.Tensor) -> np.ndarray:
    """(rows, 2) uint64 keys of the rows' stored bytes: per row, h ← ((h ⊕ word)·prime) ⊕ (… ≫ 29) over its 64-bit
    words (zero-padded), from two seeds and primes. Rows are hashed :data:`KEY_ROWS` at a time, their words
    transposed so that each step reads consecutive memory."""
    raw = block.detach().cpu().contiguous().view(torch.uint8).numpy().reshape(len(block), -1)  # (R, bytes)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((len(raw), pad), dtype=np.uint8)], axis=1)
    words = np.ascontiguousarray(raw).view(np.uint64)  # (R, W)
    keys = np.empty((len(block), 2), dtype=np.uint64)
    seeds = np.array(_SEEDS, dtype=np.uint64)[:, None]  # (2, 1)
    primes = np.array(_PRIMES, dtype=np.uint64)[:, None]  # (2, 1)
    shift = np.uint64(29)
    for start in range(0, len(block), KEY_ROWS):
        columns = np.ascontiguousarray(words[start : start + KEY_ROWS].T)  # (W, r)
        h = np.repeat(seeds, columns.shape[1], axis=1)  # (2, r): both keys of every row
        shifted = np.empty_like(h)
        for word in columns:  # uint64 arithmetic wraps modulo 2^64
            np.bitwise_xor(h, word, out=h)
            np.multiply(h, primes, out=h)
            np.right_shift(h, shift, out=shifted)
            np.bitwise_xor(h, shifted, out=h)
        keys[start : start + KEY_ROWS] = h.T
    return keys


def duplicate_rows(embeddings: Embeddings, chunk_rows: int = CHUNK_ROWS) -> int:
    """N − the number of distinct rows (by stored bytes)."""
    return count_duplicates([row_keys(block) for _, block in embeddings.chunks(chunk_rows)], embeddings.n)


def count_duplicates(keys: list[np.ndarray], n: int) -> int:
    """N − the number of distinct keys among the (rows, 2) key blocks of all N rows."""
    return int(n - len(np.unique(np.concatenate(keys), axis=0)))
