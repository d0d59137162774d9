"""The sufficient statistics of two spaces over the same rows, in one streamed O(N·D_A·D_B) pass.

For row-normalised a_i ∈ R^{D_A} and b_i ∈ R^{D_B} (i = 1…N, each shifted by a fixed centre of its own space,
which changes none of the quantities built from these sums but keeps their float64 cancellations small), with row
weights w_i (1 for the exact statistics; bootstrap counts for a resample, which is then the same as stacking w_i
copies of row i):

    n = Σ w_i,  s_a = Σ w_i a_i,  G_ab = Σ w_i a_i b_iᵀ  (D_A × D_B),  G_aa, G_bb,
    ν_a = Σ w_i ‖a_i‖²,  q_ab = Σ w_i ‖a_i‖²‖b_i‖²,  q_aa = Σ w_i ‖a_i‖⁴,
    u_ab = Σ w_i ‖a_i‖² b_i  (D_B),  u_ba = Σ w_i ‖b_i‖² a_i  (D_A),  u_aa = Σ w_i ‖a_i‖² a_i  (D_A)

(and the same for b). Memory is O(D_A² + D_B² + D_A·D_B) whatever N; the sums of two row ranges add
(:meth:`SpaceSums.merge`). :mod:`embspace.spaces.cka` and :mod:`embspace.spaces.procrustes` read them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.rows import Rows, as_embeddings, normalize_block

CHUNK_ROWS = 8192  # rows read at a time: a float64 chunk of 8192 × 1024 is 64 MiB
CENTRE_ROWS = 4096  # the centre each space is shifted by: the mean of its first 4096 unit rows


@dataclass
class SpaceSums:
    """Weighted sums over the rows of two spaces A and B (see the module docstring); float64 tensors."""

    n: float
    s_a: torch.Tensor  # (D_A,)
    s_b: torch.Tensor  # (D_B,)
    g_ab: torch.Tensor  # (D_A, D_B)
    g_aa: torch.Tensor  # (D_A, D_A)
    g_bb: torch.Tensor  # (D_B, D_B)
    nu_a: float
    nu_b: float
    q_ab: float
    q_aa: float
    q_bb: float
    u_ab: torch.Tensor  # (D_B,) Σ w‖a‖² b
    u_ba: torch.Tensor  # (D_A,) Σ w‖b‖² a
    u_aa: torch.Tensor  # (D_A,) Σ w‖a‖² a
    u_bb: torch.Tensor  # (D_B,) Σ w‖b‖² b

    @staticmethod
    def zeros(dim_a: int, dim_b: int) -> SpaceSums:
        z = lambda *shape: torch.zeros(shape, dtype=torch.float64)  # noqa: E731
        return SpaceSums(0.0, z(dim_a), z(dim_b), z(dim_a, dim_b), z(dim_a, dim_a), z(dim_b, dim_b), 0.0, 0.0, 0.0,
                         0.0, 0.0, z(dim_b), z(dim_a), z(dim_a), z(dim_b))

    @staticmethod
    def of_block(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None = None) -> SpaceSums:
        """The sums of one block of rows: ``a`` (R, D_A), ``b`` (R, D_B) float64, weights ``w`` (R,) or None."""
        w = torch.ones(len(a), dtype=torch.float64) if w is None else w.double()
        na, nb = a.pow(2).sum(1), b.pow(2).sum(1)  # (R,) ‖a_i‖², ‖b_i‖²
        wa, wb = a * w[:, None], b * w[:, None]  # (R, D) weighted rows
        return SpaceSums(float(w.sum()), wa.sum(0), wb.sum(0), wa.T @ b, wa.T @ a, wb.T @ b,
                         float(w @ na), float(w @ nb), float(w @ (na * nb)), float(w @ na.pow(2)),
                         float(w @ nb.pow(2)), wb.T @ na, wa.T @ nb, wa.T @ na,
                         wb.T @ nb)

    def merge(self, other: SpaceSums) -> SpaceSums:
        """Add the sums of other rows (another block, shard or process); returns self."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


def unit_rows(raw: torch.Tensor, source: str, start: int) -> torch.Tensor:
    """Rows normalised in float64 (the same scale-safe normalisation as every metric)."""
    return normalize_block(raw, source, start, False, torch.float64)


def space_centre(emb: Embeddings) -> torch.Tensor:
    """The float64 mean of the first :data:`CENTRE_ROWS` unit rows of a space (any fixed point works)."""
    count = min(emb.n, CENTRE_ROWS)
    return unit_rows(emb.read(0, count), emb.source, 0).mean(0) if count else torch.zeros(emb.dim, dtype=torch.float64)


def stream_sums(a: Embeddings | np.ndarray | torch.Tensor, b: Embeddings | np.ndarray | torch.Tensor, *,
                chunk_rows: int = CHUNK_ROWS, centres: tuple[torch.Tensor, torch.Tensor] | None = None,
                progress=None) -> tuple[SpaceSums, torch.Tensor, torch.Tensor]:
    """One pass over the rows of two spaces (read ``chunk_rows`` at a time, normalised and centred in float64).

    ``centres``: the points each space is shifted by (default: :func:`space_centre`; sums of several row ranges
    add only about the same centres). Returns ``(sums, centre_a, centre_b)``. The spaces need the same number of
    rows, not the same dimension.
    """
    ea, eb = as_embeddings(a, "<space A>"), as_embeddings(b, "<space B>")
    if ea.n != eb.n:
        raise InputError(eb.source, f"has {eb.n} rows but {ea.source} has {ea.n}: two spaces are compared row by row")
    if ea.n < 4:
        raise InputError(ea.source, f"has {ea.n} rows; comparing two spaces needs at least 4 (unbiased HSIC: n − 3)")
    ca, cb = centres if centres is not None else (space_centre(ea), space_centre(eb))
    return _accumulate(ea, eb, chunk_rows, ca, cb, progress), ca, cb


def _accumulate(ea: Embeddings, eb: Embeddings, chunk_rows: int, ca: torch.Tensor, cb: torch.Tensor,
                progress=None) -> SpaceSums:
    """The sums of two spaces' rows of equal count about the centres ``ca``, ``cb`` (no row-count minimum)."""
    sums = SpaceSums.zeros(ea.dim, eb.dim)
    for start in range(0, ea.n, chunk_rows):
        stop = min(start + chunk_rows, ea.n)
        ua = unit_rows(ea.read(start, stop), ea.source, start) - ca  # (R, D_A)
        ub = unit_rows(eb.read(start, stop), eb.source, start) - cb  # (R, D_B)
        sums.merge(SpaceSums.of_block(ua, ub))
        if progress is not None:
            progress(stop - start)
    return sums


def sums_of_rows(x: Rows, y: Rows, centres: tuple[torch.Tensor, torch.Tensor] | None = None) -> SpaceSums:
    """:func:`stream_sums` of two prepared :class:`~embspace.kernels.rows.Rows` (read from their source and
    normalised in float64 where they keep it, else from their normalised blocks)."""
    sources = [getattr(r, "embeddings", None) for r in (x, y)]
    if all(isinstance(e, Embeddings) for e in sources):
        ca, cb = centres if centres is not None else (space_centre(sources[0]), space_centre(sources[1]))
        return _accumulate(sources[0], sources[1], CHUNK_ROWS, ca, cb)
    ua, ub = (r.block(0, r.n).double().cpu() for r in (x, y))  # (n, D): a shard may hold 0 or 1 rows
    if centres is None:
        centres = tuple(u[:CENTRE_ROWS].mean(0) if len(u) else torch.zeros(u.shape[1], dtype=torch.float64)
                        for u in (ua, ub))
    return SpaceSums.of_block(ua - centres[0], ub - centres[1])
