"""The shard plan and the ring schedule: which rank multiplies which row blocks, each pair of items exactly once.

Rows are split into K contiguous shards of ⌊N/K⌋ or ⌈N/K⌉ rows (the first N mod K ranks take one more). Rank r
owns shard r; in a ring pass the shards travel rank r → r + 1, so at step s rank r holds shard (r − s) mod K:

- a *cross* problem (X against Y) needs every ordered shard pair (a, b): K steps, the Y shards travel K − 1 times;
- a *symmetric* problem (X against itself) needs each unordered pair once: step 0 is the upper triangle of the own
  shard, steps 1 … ⌈K/2⌉ − 1 the pairs (r, r − s), and for even K the step K/2, where ranks r and r + K/2 hold each
  other's shard, is split between them along the rows of the lower rank's shard: the lower rank multiplies the first
  ⌈n/2⌉ of its rows by the whole other shard, the upper rank its whole shard by the remaining rows of the lower one.
  Every rank multiplies as many pairs as the others, to within a row or column of a shard per step; the X shards
  travel ⌊K/2⌋ times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


def shard_bounds(n: int, world: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the K shards, balanced: sizes differ by at most one row."""
    base, extra = divmod(n, world)
    bounds, start = [], 0
    for rank in range(world):
        stop = start + base + (1 if rank < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def ring_steps(world: int, symmetric: bool) -> int:
    """How many shards each rank visits in one pass, its own included."""
    return world // 2 + 1 if symmetric else world


@dataclass(frozen=True)
class Visit:
    """Step ``step`` of a ring pass on one rank: the shard it holds and which part of the block it multiplies.

    ``split`` is None for the whole block, 0 on the lower and 1 on the upper rank of the split step (see the
    module docstring); ``own`` marks step 0, where the visiting shard is the rank's own (the diagonal block).
    """

    step: int
    shard: int
    split: int | None

    @property
    def own(self) -> bool:
        return self.step == 0

    def block(self, n_own: int, n_visiting: int) -> tuple[int, int, int, int]:
        """Rows [r0, r1) of the own shard and [c0, c1) of the visiting shard that this step multiplies."""
        if self.split == 0:
            return 0, -(-n_own // 2), 0, n_visiting
        if self.split == 1:
            return 0, n_own, -(-n_visiting // 2), n_visiting
        return 0, n_own, 0, n_visiting


def visits(rank: int, world: int, symmetric: bool) -> list[Visit]:
    """The ring schedule of one rank."""
    out = []
    for step in range(ring_steps(world, symmetric)):
        shard = (rank - step) % world
        shared = symmetric and step > 0 and world % 2 == 0 and step == world // 2
        out.append(Visit(step, shard, (0 if rank < shard else 1) if shared else None))
    return out


def block_tiles(n_rows: int, n_cols: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Tiles (r0, r1, c0, c1) of an n_rows × n_cols block, row-major."""
    for r0 in range(0, n_rows, tile):
        for c0 in range(0, n_cols, tile):
            yield r0, min(r0 + tile, n_rows), c0, min(c0 + tile, n_cols)
