"""Maxima of fixed blocks of a tile's lines, shared by the reductions that need only a tile's large entries.

Each row of a tile S (R×C) is cut into blocks of :data:`BLOCK` consecutive columns, and each column into blocks of
:data:`BLOCK` consecutive rows. A block whose maximum is below a line's threshold t holds no entry ≥ t, so a
reduction that needs only the entries ≥ t of each line — the top-k (entries that may enter the k best), the rank
counts (entries at or above the partner's similarity), the best other similarity (the maximum itself) — reads the
maxima, R·C/BLOCK numbers, and then only the blocks that reach t. The maxima are computed once per tile and
direction, on first use, and shared by every reduction of the tile (a lock per direction: a tile's work items run
on several threads). Comparisons are exact: every test is ``≥`` on values of the tile itself.
"""

from __future__ import annotations

import math
import threading

import torch

BLOCK = 32  # entries per block


class TileBlocks:
    """The block maxima of one tile, along its rows (``dim=1``) and its columns (``dim=0``).

    A *line* is a row (dim 1) or a column (dim 0); ``L`` lines of ``size`` entries each, of which the first
    ``full = blocks·BLOCK`` are in whole blocks and the rest are the line's *tail* (read directly).
    """

    def __init__(self, sim: torch.Tensor) -> None:
        self.sim = sim
        self._maxima: dict[int, torch.Tensor] = {}
        self._locks = {0: threading.Lock(), 1: threading.Lock()}

    def size(self, dim: int) -> int:
        return self.sim.shape[dim]

    def blocks(self, dim: int) -> int:
        return self.sim.shape[dim] // BLOCK

    def grid(self, dim: int) -> torch.Tensor:
        """The whole blocks as a view: rows (L, blocks, BLOCK), columns (blocks, BLOCK, L)."""
        full = self.blocks(dim) * BLOCK
        if dim == 1:
            return self.sim[:, :full].unflatten(1, (self.blocks(dim), BLOCK))
        return self.sim[:full].unflatten(0, (self.blocks(dim), BLOCK))

    def tail(self, dim: int) -> torch.Tensor:
        """(L, size − full): each line's entries after its last whole block (a view)."""
        full = self.blocks(dim) * BLOCK
        return self.sim[:, full:] if dim == 1 else self.sim[full:].T

    def maxima(self, dim: int) -> torch.Tensor:
        """(L, blocks) the maximum of every block of every line (for columns a transposed view)."""
        with self._locks[dim]:
            if dim not in self._maxima:
                grid = self.grid(dim)
                self._maxima[dim] = grid.amax(2) if dim == 1 else grid.amax(1)
        found = self._maxima[dim]
        return found if dim == 1 else found.T

    def line_max(self, dim: int) -> torch.Tensor:
        """(L,) the largest entry of every line."""
        best = self.maxima(dim).amax(1) if self.blocks(dim) else None
        tail = self.tail(dim)
        if tail.shape[1]:
            tail_max = tail.amax(1)
            best = tail_max if best is None else torch.maximum(best, tail_max)
        if best is None:
            return torch.full((self.sim.shape[1 - dim],), -math.inf, dtype=self.sim.dtype, device=self.sim.device)
        return best

    def reaching(self, dim: int, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(line, block) of the blocks whose maximum is ≥ ``bound`` (L,) of their line, ordered by line then block
        for rows, by block then line for columns."""
        maxima = self.maxima(dim)
        if dim == 1:
            return (maxima >= bound[:, None]).nonzero(as_tuple=True)
        block, line = torch.ge(maxima.T, bound[None, :]).nonzero(as_tuple=True)
        return line, block

    def read(self, dim: int, line: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        """(P, BLOCK) the entries of the blocks (line, block)."""
        grid, size = self.grid(dim), self.size(dim)
        if dim == 1:
            if self.sim.stride() == (size, 1) and size % BLOCK == 0:  # whole contiguous blocks: a cheap row gather
                return self.sim.view(-1, BLOCK).index_select(0, line * self.blocks(dim) + block)
            return grid[line, block]
        return grid[block, :, line]

    def fraction(self, count: int, dim: int) -> float:
        """The share of all whole blocks of the tile that ``count`` blocks are."""
        total = self.blocks(dim) * self.sim.shape[1 - dim]
        return count / total if total else 1.0

    def kth_bound(self, dim: int, k: int) -> torch.Tensor:
        """(L,) a value that k entries of each line reach: the smallest of the maxima of k disjoint groups of blocks
        (each group's maximum is an entry, and the k are distinct); −inf for lines of fewer than k blocks."""
        blocks = self.blocks(dim)
        if blocks < k or k < 1:
            return torch.full((self.sim.shape[1 - dim],), -math.inf, dtype=self.sim.dtype, device=self.sim.device)
        group = blocks // k
        return self.maxima(dim)[:, : k * group].unflatten(1, (k, group)).amax(2).amin(1)

    def candidates(self, dim: int, bound: torch.Tensor,
                   most: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(line, position, value)`` of every entry ≥ ``bound`` (L,) of its line, ordered by line then position;
        None when more than the share ``most`` of the tile's whole blocks reach their bound."""
        size = self.size(dim)
        full = self.blocks(dim) * BLOCK
        line, block = self.reaching(dim, bound)
        if self.fraction(len(line), dim) > most:
            return None
        read = self.read(dim, line, block)  # (P, BLOCK)
        which, offset = (read >= bound[line, None]).nonzero(as_tuple=True)  # (M,) each
        lines, positions, values = line[which], block[which] * BLOCK + offset, read[which, offset]
        tail = self.tail(dim)
        if tail.shape[1]:
            tail_line, tail_offset = (tail >= bound[:, None]).nonzero(as_tuple=True)
            lines, positions = torch.cat([lines, tail_line]), torch.cat([positions, tail_offset + full])
            values = torch.cat([values, tail[tail_line, tail_offset]])
        if tail.shape[1] or dim == 0:  # by line, then position
            order = torch.argsort(lines * size + positions)
            lines, positions, values = lines[order], positions[order], values[order]
        return lines, positions, values

    def counts_at_least(self, dim: int, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(#{entries > bound}, #{entries == bound}) of every line (L,) int64, from the blocks that reach the bound;
        None when more than a quarter of the blocks do (then a direct pass over the tile is cheaper)."""
        lines = self.sim.shape[1 - dim]
        line, block = self.reaching(dim, bound)
        if self.fraction(len(line), dim) > 0.25:
            return None
        read = self.read(dim, line, block)  # (P, BLOCK)
        level = bound[line, None]
        above = torch.zeros(lines, dtype=torch.int64, device=self.sim.device)
        ties = torch.zeros_like(above)
        above.index_add_(0, line, (read > level).sum(1))
        ties.index_add_(0, line, (read == level).sum(1))
        tail = self.tail(dim)
        if tail.shape[1]:
            above += (tail > bound[:, None]).sum(1)
            ties += (tail == bound[:, None]).sum(1)
        return above, ties
