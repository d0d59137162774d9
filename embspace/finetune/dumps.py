"""Training-free baselines on whole dumps, streamed over row chunks and written atomically as a (2, N, D) ``.npy``.

* gap shift (Liang et al. 2022): x̂′ = normalise(x̂ − λΔ), ŷ′ = normalise(ŷ + λΔ), Δ = mean(X̂) − mean(Ŷ);
* centring: x̂′ = normalise(x̂ − mean(X̂)), ŷ′ = normalise(ŷ − mean(Ŷ)).

The same formulas as :func:`~embspace.finetune.shift.shift_gap` and :func:`~embspace.finetune.shift.center_modalities`,
in two passes over the rows (the means in float64, then the shifted chunks), so memory is O(chunk·D) whatever N is.
The output is written atomically (:func:`embspace.io.atomic.atomic_npy`: an anonymous file filled through a memory
map, fsynced, then named and renamed over the target): a reader never sees a half-written array, and an error or a
kill while writing leaves nothing behind.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from embspace.defaults import SHIFT_LAM
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.finetune.shift import shift_gap
from embspace.io.atomic import atomic_npy
from embspace.kernels.dense import normalize

CHUNK_ROWS = 65_536

__all__ = ["CHUNK_ROWS", "atomic_npy", "shift_dump", "unit_mean"]


def unit_mean(embeddings: Embeddings, chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """mean(X̂) in float64, streamed: (D,)."""
    total = torch.zeros(embeddings.dim, dtype=torch.float64)
    for _, block in embeddings.chunks(chunk_rows):
        total += normalize(block.double()).sum(0)
    return total / embeddings.n


def shift_dump(
    x: Embeddings,
    y: Embeddings,
    out: str | os.PathLike[str],
    *,
    lam: float = SHIFT_LAM,
    center: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, object]:
    """Write the gap-shifted (or, with ``center``, the mean-centred) pairs to ``out`` as a (2, N, D) float32 stack.

    Returns what was done: ``{"method": "shift" | "center", "lam": λ or None, "gap_vector_norm": ‖Δ‖, "n", "dim"}``.
    Both modalities must have the same shape (a stack holds pairs).
    """
    if x.shape != y.shape:
        raise InputError(f"{x.source} / {y.source}", f"a (2, N, D) stack needs two equal shapes, got {x.shape} and "
                                                     f"{y.shape}")
    mean_x, mean_y = unit_mean(x, chunk_rows), unit_mean(y, chunk_rows)
    delta = mean_x - mean_y  # (D,) float64
    with atomic_npy(out, (2, x.n, x.dim), np.dtype(np.float32)) as stack:
        for start, xb in x.chunks(chunk_rows):
            yb = y.read(start, start + len(xb))
            if center:
                xs = normalize(normalize(xb.double()) - mean_x)
                ys = normalize(normalize(yb.double()) - mean_y)
            else:
                xs, ys = shift_gap(xb.double(), yb.double(), lam, direction=delta)
            stack[0, start : start + len(xb)] = xs.float().numpy()
            stack[1, start : start + len(xb)] = ys.float().numpy()
    return {"method": "center" if center else "shift", "lam": None if center else lam,
            "gap_vector_norm": float(delta.norm()), "n": x.n, "dim": x.dim}
