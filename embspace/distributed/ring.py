"""One ring pass of the pairwise engine: the own shard against itself, then the shards that travel past.

Step 0 is the single-process engine (:func:`~embspace.kernels.engine.stream_pairs`) on the rank's own shard. The
other steps multiply two different shards, where no pair is a true pair or a self-pair: reductions that ignore
positions (sums of exponentials, histograms) get a cross-problem twin that counts every pair of the block, run by
the same engine (fused kernels where it uses them), and fold it into the original by its merge rule; reductions that
need positions (rank counts, top-k) are fed tile by tile by :func:`stream_block`. While a step computes, the next
shard is already on its way (as in ring attention); a small per-shard state (the column statistics of retrieval)
can travel with it, sent once the step is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from embspace.distributed.group import Group
from embspace.distributed.plan import Visit, block_tiles, visits
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import ExpSum, Histogram, Reduction, TileBuffer, feed_tile
from embspace.kernels.rows import ResidentRows, Rows

StateShapes = Callable[[int], list[tuple[tuple[int, ...], torch.dtype]]]
"""Shapes and dtypes of the travelling state of a shard of n rows."""


def stream_block(x: Rows, y: Rows, reductions: Sequence[Reduction], *, tile: int, col_offset: int = 0) -> None:
    """Feed every tile of X̂·Ŷᵀ (two different shards: ``diagonal`` is always False) to the reductions.

    ``col_offset`` is added to the column position the reductions see (for reductions laid out over the rows of
    both shards). Each tile goes through :func:`~embspace.kernels.pairwise.feed_tile`, as in ``stream_pairs``.
    """
    buffer = TileBuffer()
    for r0, r1, c0, c1 in block_tiles(x.n, y.n, tile):
        feed_tile(x.block(r0, r1), y.block(c0, c1), reductions, r0, col_offset + c0, diagonal=False, buffer=buffer)


def stream_between(x: Rows, y: Rows, reductions: Sequence[ExpSum | Histogram], *, tile: int) -> None:
    """Every pair of X̂·Ŷᵀ, two different shards, into position-free reductions (through their all-pairs twins)."""
    twins = [_twin(reduction) for reduction in reductions]
    stream_pairs(x, y, twins, tile=tile)
    for reduction, twin in zip(reductions, twins, strict=True):
        _fold(reduction, twin)


def _twin(reduction: Reduction) -> ExpSum | Histogram:
    """A cross-problem reduction that counts every pair of a block (true pairs included: a block of two different
    shards has none)."""
    if isinstance(reduction, ExpSum):
        return ExpSum(reduction.t, symmetric=False, exclude_diagonal=False)
    if isinstance(reduction, Histogram):
        counts = reduction.within if reduction.symmetric else reduction.unmatched
        return Histogram(reduction.bins, symmetric=False, device=counts.device)
    raise TypeError(f"{type(reduction).__name__} needs positions; feed it with stream_block")


def _fold(reduction: ExpSum | Histogram, twin: ExpSum | Histogram) -> None:
    """Add a twin's pairs: sums of exponentials merge with their shifts, histogram counts add."""
    if isinstance(reduction, ExpSum):
        reduction.merge(twin)
    elif reduction.symmetric:
        reduction.within += twin.matched + twin.unmatched
    else:
        reduction.unmatched += twin.matched + twin.unmatched


def ring_pass(
    group: Group,
    own: ResidentRows,
    sizes: Sequence[int],
    symmetric: bool,
    visit: Callable[[Visit, Rows, list[torch.Tensor]], None],
    *,
    state: list[torch.Tensor] | None = None,
    state_shapes: StateShapes | None = None,
    what: str = "a ring pass",
) -> list[torch.Tensor]:
    """Call ``visit(step, visiting_rows, state)`` for every step of this rank's schedule; return the final state.

    ``own`` is this rank's shard (resident), ``sizes[b]`` the row count of shard b. ``state`` belongs to the
    visiting shard: ``visit`` updates it in place, then it travels on with the shard; the state returned is that
    of shard (rank − steps + 1) mod K.
    """
    state = list(state or [])
    schedule = visits(group.rank, group.world, symmetric)
    data = own.data  # (n_b, D) rows of the visiting shard
    for index, step in enumerate(schedule):
        following = schedule[index + 1] if index + 1 < len(schedule) else None
        wait_rows = None
        if following is not None:
            incoming = torch.empty((sizes[following.shard], own.dim), dtype=data.dtype, device=data.device)
            wait_rows = group.ring_exchange([data], [incoming], f"{what}: sending shard {step.shard}", tag=0)
        visiting = ResidentRows(own.source, len(data), own.dim, own.device, own.dtype, max_rows=own.max_rows,
                                data=data)  # (n_b, D)
        visit(step, visiting, state)
        if following is not None and state:
            shapes = state_shapes(sizes[following.shard])
            templates = [torch.empty(shape, dtype=dtype, device=data.device) for shape, dtype in shapes]
            state = group.ring_exchange(state, templates, f"{what}: sending the state of shard {step.shard}",
                                        tag=1)()
        if wait_rows is not None:
            data = wait_rows()[0]
    return state


def rows_of(rows: ResidentRows, start: int, stop: int) -> ResidentRows:
    """Rows [start, stop) of a resident shard, without a copy."""
    return ResidentRows(rows.source, stop - start, rows.dim, rows.device, rows.dtype, max_rows=rows.max_rows,
                        data=rows.data[start:stop])
