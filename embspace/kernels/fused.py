"""Which backend runs the pairwise engine, and the fused (Triton) path of ``engine.stream_pairs``.

``backend`` is ``"auto"``, ``"torch"`` or ``"triton"``; when a call names none, the environment variable
``EMBSPACE_BACKEND`` decides, and without it ``"auto"``:

- ``"auto"``: the fused kernels of :mod:`embspace.kernels.triton` when the rows are on a CUDA device and Triton can
  be imported, for the reductions of the call that have a fused kernel (the others, if any, take a torch pass of
  their own: :func:`fusable_part`); the torch path otherwise.
- ``"torch"``: always the torch path (the reference; runs everywhere).
- ``"triton"``: the fused kernels, or an :class:`~embspace.errors.InputError` that says why they cannot run. On the
  CPU this needs Triton's interpreter (``TRITON_INTERPRET=1`` before the kernels are imported): slow, for tests.

If a kernel cannot be built for the device (Triton's compile or out-of-resources errors, raised at the first launch),
``"auto"`` warns in one line and runs the call on the torch path; a forced ``"triton"`` is an ``InputError``.

Precision: fp32 rows are multiplied in IEEE fp32 unless tf32 was asked for explicitly, by
:func:`embspace.kernels.backend.matmul_precision` ``("tf32")`` (what ``measure(precision="tf32")`` uses), which sets
:func:`use_tf32`; torch's global matmul flags are never read.

Exp-sums are launched on the rows centred about a point of their cone (:meth:`Rows.centred
<embspace.kernels.rows.Rows.centred>`, the same operands and exponent as the torch path's
:meth:`~embspace.kernels.pairwise.ExpSum.update_centred`), histograms on the unit rows, each in a launch of its own.
The fused path computes the same statistics and merges them into the same reduction objects, by the same rules
(``ExpSum.add``, ``+=`` of counts, ``keep_best`` of top-k candidates), so nothing downstream changes. Rows held
on the device (``ResidentRows``) go to the kernels whole; rows streamed from their source go block by block
(``tile`` rows at a time), each pair of blocks being one kernel launch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import torch

from embspace.errors import InputError
from embspace.kernels.backend import (
    FUSED_DTYPES,
    chosen_backend,
    record_pass,
    remember_choice,
    requested_backend,
    tf32_enabled,
)
from embspace.kernels.pairwise import (
    ExpSum,
    Histogram,
    RankCount,
    Reduction,
    TopK,
    count_tiles,
    distance_terms,
    keep_best,
    stream_torch,
)
from embspace.kernels.rows import CentredBlock, ResidentRows, Rows

if TYPE_CHECKING:
    from embspace.kernels.triton import PairResult, RowResult

def choose_backend(x: Rows, y: Rows | None, reductions: Sequence[Reduction], backend: str | None = None) -> str:
    """``"triton"`` or ``"torch"``: the path :func:`stream_pairs` takes for these rows and reductions."""
    name, where = requested_backend(backend)
    if name == "torch" or (name == "auto" and x.device.type != "cuda"):
        return "torch"
    reason = why_not_fused(x, y, reductions)
    if reason is None:
        remember_choice(name)  # stream_fused falls back to torch on a build error only when this was "auto"
        return "triton"
    if name == "triton":
        raise InputError(f"{where}=triton", reason)
    return "torch"


def fusable_part(x: Rows, y: Rows | None, reductions: Sequence[Reduction],
                 backend: str | None = None) -> list[Reduction]:
    """Under ``"auto"`` on a CUDA device where the kernels run: the reductions of a call that have a fused kernel,
    when others of the same call have none (those take a torch pass of their own: a top-k with k > ``MAX_TOPK``
    must not send the exp-sums that share its pass to torch). Empty otherwise."""
    if requested_backend(backend)[0] != "auto" or not _auto_runs_fused(x):
        return []
    part = [r for r in reductions if why_not_fused(x, y, [r]) is None]
    return part if 0 < len(part) < len(reductions) else []


def _auto_runs_fused(x: Rows) -> bool:
    """Whether ``"auto"`` may take the fused kernels for rows like ``x``: on CUDA, where they can run."""
    return x.device.type == "cuda" and why_not_on(x.device) is None


def resolve_backend(backend: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """``"triton"`` or ``"torch"``: the backend of a whole run on ``device`` with ``dtype`` tiles (what
    :func:`embspace.measure` records). ``"triton"`` means the fused kernels run the pairwise passes that have one;
    asking for ``"triton"`` where they cannot run at all is an :class:`~embspace.errors.InputError` saying why."""
    name, where = requested_backend(backend)
    if name == "torch" or (name == "auto" and device.type != "cuda"):
        return "torch"
    reason = why_not_on(device)
    if reason is None and dtype not in FUSED_DTYPES:
        reason = f"{str(dtype).removeprefix('torch.')} tiles have no fused kernel (fp16, bf16 and fp32 do)"
    if reason is None:
        return "triton"
    if name == "triton":
        raise InputError(f"{where}=triton", reason)
    return "torch"


def why_not_on(device: torch.device) -> str | None:
    """None when the fused kernels can run on ``device``; else the reason, in one line."""
    try:
        from embspace.kernels import triton as kernels
    except ImportError as error:
        return f"Triton cannot be imported ({error})"
    if device.type == "cuda" and kernels.INTERPRET:
        return "TRITON_INTERPRET=1 is set: the kernels would run in the (slow) interpreter"
    if device.type != "cuda" and not kernels.INTERPRET:
        return f"rows are on {device}: the fused kernels need CUDA (or TRITON_INTERPRET=1 set before import)"
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        major, minor = torch.cuda.get_device_capability(device)
        return f"compute capability {major}.{minor}: the fused kernels are built for 8.0 (Ampere) and newer"
    return None


def why_not_fused(x: Rows, y: Rows | None, reductions: Sequence[Reduction]) -> str | None:
    """None when the fused kernels can run this call; else the reason, in one line."""
    reason = why_not_on(x.device)
    if reason is not None:
        return reason
    from embspace.kernels import triton as kernels

    for rows in (x,) if y is None else (x, y):
        if rows.dtype not in FUSED_DTYPES:
            return f"{rows.source}: {rows.dtype} tiles have no fused kernel (fp16, bf16 and fp32 do)"
    if y is not None and y.device != x.device:
        return f"rows on {x.device} and {y.device}"
    symmetric = y is None
    for reduction in reductions:
        kind = type(reduction)
        if kind in (ExpSum, Histogram) and reduction.symmetric != symmetric:
            problem = "symmetric" if symmetric else "cross"
            return f"{kind.__name__}(symmetric={reduction.symmetric}) on a {problem} problem"
        if kind in (RankCount, TopK) and symmetric:
            return f"{kind.__name__} is fused for cross problems (X against Y) only"
        if kind is RankCount and x.n != y.n:
            return f"RankCount needs paired rows, got {x.n} and {y.n}"
        if kind is TopK and max(reduction.k_rows, reduction.k_cols) > kernels.MAX_TOPK:
            return f"TopK with k > {kernels.MAX_TOPK} has no fused kernel"
        if kind is Histogram and reduction.bins > kernels.MAX_BINS:
            return f"Histogram with more than {kernels.MAX_BINS} bins has no fused kernel"
        if kind not in (ExpSum, Histogram, RankCount, TopK):
            return f"{kind.__name__} has no fused kernel"
    return None


def _blocks(rows: Rows, tile: int) -> list[tuple[int, int]]:
    """Resident rows are one block; streamed rows come ``tile`` rows at a time."""
    if isinstance(rows, ResidentRows):
        return [(0, rows.n)]
    return [(start, min(start + tile, rows.n)) for start in range(0, rows.n, tile)]


def stream_fused(
    x: Rows,
    y: Rows | None,
    reductions: Sequence[Reduction],
    *,
    tile: int,
    progress: Callable[[int], None] | None = None,
    backend: str | None = None,
) -> None:
    """:func:`~embspace.kernels.engine.stream_pairs` through the fused kernels (same pairs, same reductions).

    ``backend`` (default: what :func:`choose_backend` was last asked for) decides what a kernel that cannot be built
    does: ``"auto"`` warns in one line and runs the whole call on the torch path, ``"triton"`` raises an
    :class:`~embspace.errors.InputError`. Builds happen at the first launch of each kernel variant, all of which
    come in the first two block pairs, whose results are merged only after both have run, so nothing has been
    added to the reductions when a build fails.
    """
    from embspace.kernels import triton as kernels

    backend = backend or chosen_backend()
    symmetric = y is None
    other = x if symmetric else y
    for reduction in reductions:  # the kernels read every d_i from the start
        if isinstance(reduction, RankCount):
            reduction.fill_matched(x, other, tile)
    col_blocks = _blocks(other, tile)
    has_sums = any(type(r) is ExpSum for r in reductions)
    pending: list[Callable[[], None]] = []  # merges (and progress) of the block pairs run so far, not yet applied
    launched = 0
    try:
        for r0, r1 in _blocks(x, tile):
            a = x.block(r0, r1)  # (R, D)
            a_c = x.centred(r0, r1) if has_sums else None
            for c0, c1 in col_blocks:
                if symmetric and c0 < r0:
                    continue
                on_diagonal = symmetric and c0 == r0
                b = a if on_diagonal else other.block(c0, c1)  # (C, D)
                if has_sums:  # the exp-sums' own operands: the rows centred (CentredBlock)
                    b_c = a_c if on_diagonal else other.centred(c0, c1)
                    pending += _exp_pass(a_c, b_c, reductions, diagonal=c0 - r0, triangle=on_diagonal)
                pending += _pair_pass(a, b, reductions, diagonal=c0 - r0, triangle=on_diagonal)
                if not symmetric:
                    pending += _row_pass(a, b, reductions, r0, c0)
                if progress is not None:
                    pending.append(partial(progress, count_tiles(r1 - r0, None if on_diagonal else c1 - c0, tile)))
                launched += 1
                if launched >= 2:  # the diagonal and an off-diagonal block pair have run: every variant is built
                    for merge in pending:
                        merge()
                    pending = []
    except kernels.BUILD_ERRORS as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if backend == "triton" or launched >= 2:
            raise InputError(f"backend={backend}", f"the fused kernels cannot be built for {x.device}: "
                                                   f"{reason}") from None
        warnings.warn(f"the fused kernels cannot be built for {x.device} ({reason}); using the torch path",
                      RuntimeWarning, stacklevel=3)
        stream_torch(x, y, reductions, tile=tile, progress=progress)
        return
    for merge in pending:
        merge()
    record_pass("triton")


def _exp_pass(a: CentredBlock, b: CentredBlock, reductions: Sequence[Reduction], *, diagonal: int,
              triangle: bool) -> list[Callable[[], None]]:
    """ExpSum reductions, one launch each on the centred rows (:meth:`ExpSum.update_centred`'s exponent, with the
    per-row terms of :func:`~embspace.kernels.pairwise.distance_terms`); returns the merges to run."""
    from embspace.kernels import triton as kernels

    merges = []
    q_a, q_b = distance_terms(a, b)
    for acc in (r for r in reductions if type(r) is ExpSum):
        result = kernels.pair_reduce(a.vectors, b.vectors, diagonal=diagonal, triangle=triangle, t=acc.t,
                                     exclude_equal=acc.exclude_diagonal, precision=_precision(a.vectors),
                                     a_terms=(a.scale, q_a), b_terms=(b.scale, q_b))
        merges.append(lambda acc=acc, result=result: acc.add(result.exp_shift, result.exp_total))
    return merges


def _pair_pass(a: torch.Tensor, b: torch.Tensor, reductions: Sequence[Reduction], *, diagonal: int,
               triangle: bool) -> list[Callable[[], None]]:
    """Histogram reductions, one launch each on the unit rows; returns the merges to run."""
    from embspace.kernels import triton as kernels

    precision = _precision(a)
    merges = []
    for hist in (r for r in reductions if type(r) is Histogram):
        result = kernels.pair_reduce(a, b, diagonal=diagonal, triangle=triangle, bins=hist.bins,
                                     precision=precision)
        merges.append(lambda hist=hist, result=result: _merge_pair(None, hist, result))
    return merges


def _precision(a: torch.Tensor) -> str | None:
    """``"tf32"`` for fp32 rows inside :func:`use_tf32` ``(True)``; otherwise the rows' own precision."""
    return "tf32" if tf32_enabled() and a.dtype == torch.float32 else None


def _merge_pair(acc: ExpSum | None, hist: Histogram | None, result: PairResult) -> None:
    if acc is not None:
        acc.add(result.exp_shift, result.exp_total)
    if hist is not None:
        counts = result.counts.to(hist.device)
        if hist.symmetric:
            hist.within += counts
        else:
            hist.unmatched += counts
            hist.matched += result.matched.to(hist.device)


def _row_pass(a: torch.Tensor, b: torch.Tensor, reductions: Sequence[Reduction], r0: int,
              c0: int) -> list[Callable[[], None]]:
    """RankCount and TopK reductions of a cross problem; returns the merges to run.

    A TopK needs the rows' top-k (A·Bᵀ) and the columns' (the same kernel on B·Aᵀ); a RankCount rides along,
    its column counts taken from the second launch. A RankCount without a TopK takes one launch, its column
    counts added with atomics.
    """
    from embspace.kernels import triton as kernels

    ranks = [r for r in reductions if type(r) is RankCount]
    tops = [r for r in reductions if type(r) is TopK]
    r1, c1 = r0 + a.shape[0], c0 + b.shape[0]
    precision = _precision(a)
    merges = []
    for number, top in enumerate(tops):
        rank = ranks[0] if number == 0 and ranks else None
        forward = kernels.row_reduce(a, b, diagonal=c0 - r0, k=top.k_rows, precision=precision,
                                     matched_rows=None if rank is None else rank.matched[r0:r1])
        backward = kernels.row_reduce(b, a, diagonal=r0 - c0, k=top.k_cols, precision=precision,
                                      matched_rows=None if rank is None else rank.matched[c0:c1])

        def merge_top(top=top, rank=rank, forward=forward, backward=backward) -> None:
            _merge_top(top.row_values, top.row_index, forward, slice(r0, r1), c0, dim=1)
            _merge_top(top.col_values, top.col_index, backward, slice(c0, c1), r0, dim=0)
            if rank is not None:
                rank.rows[r0:r1] += forward.rank_rows.to(rank.rows.device)
                rank.cols[c0:c1] += backward.rank_rows.to(rank.cols.device)
                rank.ties_counted = False  # the fused kernels count only the items above the partner

        merges.append(merge_top)
    for rank in ranks[1:] if tops else ranks:
        result = kernels.row_reduce(a, b, diagonal=c0 - r0, matched_rows=rank.matched[r0:r1],
                                    matched_cols=rank.matched[c0:c1], precision=precision)

        def merge_rank(rank=rank, result=result) -> None:
            rank.rows[r0:r1] += result.rank_rows.to(rank.rows.device)
            rank.cols[c0:c1] += result.rank_cols.to(rank.cols.device)
            rank.ties_counted = False  # the fused kernels count only the items above the partner

        merges.append(merge_rank)
    return merges


def _merge_top(values: torch.Tensor, index: torch.Tensor, found: RowResult, part: slice, offset: int,
               dim: int) -> None:
    """Merge a launch's (n, k) candidates into a TopK's running best along ``dim`` (1: rows, 0: columns)."""
    cand_values, cand_index = found.top_values, found.top_index  # (n, k)
    cand_index = torch.where(cand_index >= 0, cand_index + offset, -1)
    if dim == 0:
        cand_values, cand_index = cand_values.T, cand_index.T  # (k, n)
        values[:, part], index[:, part] = keep_best(values[:, part], index[:, part], cand_values.to(values.device),
                                                     cand_index.to(index.device), dim=0)
    else:
        values[part], index[part] = keep_best(values[part], index[part], cand_values.to(values.device),
                                               cand_index.to(index.device), dim=1)
