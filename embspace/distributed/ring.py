"""One ring pass of the pairwise engine: the own shard against itself, then the shards that travel past.

Step 0 is the single-process engine (:func:`~embspace.kernels.pairwise.stream_pairs`) on the rank's own shard;
the other steps feed the tiles of X_own·Y_visitingᵀ (two different shards, so no tile is diagonal) to the same
reductions. While a step computes, the next shard is already on its way (as in ring attention); a small
per-shard state (e.g. the column statistics of retrieval) can travel with it, sent once the step is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from embspace.distributed.group import Group
from embspace.distributed.plan import Visit, block_tiles, visits
from embspace.kernels.pairwise import Reduction, tile_product
from embspace.kernels.rows import ResidentRows, Rows

StateShapes = Callable[[int], list[tuple[tuple[int, ...], torch.dtype]]]
"""Shapes and dtypes of the travelling state of a shard of n rows."""


def stream_block(x: Rows, y: Rows, reductions: Sequence[Reduction], *, tile: int, parity: int | None = None,
                 col_offset: int = 0) -> None:
    """Feed every tile of X̂·Ŷᵀ (two different shards: ``diagonal`` is always False) to the reductions.

    Tiles are chosen by :func:`~embspace.distributed.plan.block_tiles`; ``col_offset`` is added to the column
    position the reductions see (for reductions laid out over the rows of both shards). The lone-ExpSum fused
    path is used exactly as :func:`~embspace.kernels.pairwise.stream_pairs` uses it.
    """
    fused = reductions[0] if len(reductions) == 1 and hasattr(reductions[0], "update_blocks") else None
    for r0, r1, c0, c1 in block_tiles(x.n, y.n, tile, parity):
        rows, cols = x.block(r0, r1), y.block(c0, c1)
        if fused is not None:
            fused.update_blocks(rows, cols, r0, col_offset + c0, diagonal=False)
            continue
        sim = tile_product(rows, cols)  # (R, C)
        for reduction in reductions:
            reduction.update(sim, r0, col_offset + c0, diagonal=False)


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
        visiting = ResidentRows(own.source, len(data), own.dim, own.device, own.dtype, max_rows=own.max_rows, data=data)
        visit(step, visiting, state)
        if following is not None and state:
            shapes = state_shapes(sizes[following.shard])
            templates = [torch.empty(shape, dtype=dtype, device=data.device) for shape, dtype in shapes]
            state = group.ring_exchange(state, templates, f"{what}: sending the state of shard {step.shard}",
                                        tag=1)()
        if wait_rows is not None:
            data = wait_rows()[0]
    return state
