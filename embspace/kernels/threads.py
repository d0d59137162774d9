"""Threads of the CPU pairwise pass, fast whether or not the machine is shared with other processes.

A tile's product is one large GEMM: it is the only step that uses torch's threads. The reductions of a tile run
single-threaded, as coarse work items (the row side and the column side of each reduction) spread over a pool of
as many worker threads; no reduction opens a parallel region of its own. Many small parallel regions (one per
cache-sized chunk of a tile) are what make a multi-threaded pass slow when another process holds a core: every
region waits at its barrier for the thread that was descheduled, tens of thousands of times per pass. The GEMM
keeps every thread: it has few barriers, and it stays faster with two threads than with one even when other
processes keep the cores busy (measured in ``benchmarks/retrieval_cpu.py``).

``$EMBSPACE_THREADS=fixed`` runs every step multi-threaded as torch would (no pool), for comparison.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch


def set_threads(count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def fixed_threads() -> bool:
    """True when ``$EMBSPACE_THREADS`` asks for torch's own threading throughout."""
    return os.environ.get("EMBSPACE_THREADS", "pool") == "fixed"


@contextmanager
def tile_threads(fixed: bool | None = None) -> Iterator[TilePool]:
    """A pass's thread policy: yields a :class:`TilePool`; torch's thread count is restored afterwards."""
    before = torch.get_num_threads()
    pool = TilePool(before, fixed_threads() if fixed is None else fixed)
    try:
        yield pool
    finally:
        pool.close()
        set_threads(before)


class TilePool:
    """Runs a tile's product with torch's threads and its reductions' work items single-threaded, in parallel."""

    def __init__(self, threads: int, fixed: bool) -> None:
        self.threads, self.fixed = max(threads, 1), fixed or threads <= 1
        self._workers: ThreadPoolExecutor | None = None

    def product(self, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` (a GEMM) with every thread."""
        set_threads(self.threads)
        try:
            return make()
        finally:
            if not self.fixed:
                set_threads(1)

    def run(self, items: Sequence[Callable[[], None]]) -> None:
        """Every work item, on up to :attr:`threads` single-threaded workers (or one after the other here when the
        pool is off); returns when all are done, re-raising the first error."""
        if self.fixed or len(items) <= 1:
            for item in items:
                item()
            return
        if self._workers is None:
            self._workers = ThreadPoolExecutor(self.threads, thread_name_prefix="embspace-tile",
                                               initializer=set_threads, initargs=(1,))
        for future in [self._workers.submit(item) for item in items]:
            future.result()

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown()
            self._workers = None
