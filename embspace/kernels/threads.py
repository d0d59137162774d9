"""Threads of the CPU pairwise pass, fast whether or not the machine is shared with other processes.

A tile's product is one large GEMM: it is the only step that uses torch's threads. The reductions of a tile run
single-threaded, as coarse work items (the row side and the column side of each reduction) spread over a pool of
as many worker threads; no reduction opens a parallel region of its own. Many small parallel regions (one per
cache-sized chunk of a tile) are what make a multi-threaded pass slow when another process holds a core: every
region waits at its barrier for the thread that was descheduled, tens of thousands of times per pass. The GEMM
keeps every thread: it has few barriers, and it stays faster with two threads than with one even when other
processes keep the cores busy (measured in ``benchmarks/retrieval_cpu.py``).

``$EMBSPACE_THREADS=fixed`` runs every step multi-threaded as torch would (no pool), for comparison.

numpy and scipy bring a BLAS of their own (OpenBLAS) with its own threads; a loop of small LAPACK calls between
torch operations holds it to one thread (:func:`single_threaded_scipy_blas`).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

import torch

from embspace.kernels.budget import TILE_BYTES_PER_PAIR
from embspace.kernels.rows import available_memory

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController


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


@cache
def _blas_controller() -> ThreadpoolController:
    """threadpoolctl's view of the loaded native thread pools, taken once scipy's LAPACK is loaded."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, so that the controller sees it)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded_scipy_blas() -> Iterator[None]:
    """numpy's and scipy's BLAS/LAPACK held to one thread inside the block (torch's threads are not touched).

    On the bundled sample's 1,000 pairs (D = 256), 100 half-samples of Procrustes and the gap's principal
    subspaces took 14.3 s with scipy's two OpenBLAS threads contending with torch's OpenMP threads and 5.9 s with
    scipy's held to one, with the same values (2-core AMD EPYC)."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


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


PARALLEL_MIN_TILE = 1024  # smaller tiles mean a tight memory budget: one tile in flight, not one per thread


def tile_workers(device: torch.device, tiles: int, tile: int) -> int:
    """Threads that take whole tiles at once (product and reductions, each single-threaded): torch's thread count
    on the CPU, as many as a quarter of the free memory holds tiles for; one (the tile-by-tile pass) on other
    devices, under ``$EMBSPACE_THREADS=fixed``, for fewer than two tiles, or for tiles below
    :data:`PARALLEL_MIN_TILE` (each thread in flight holds a tile and its temporaries)."""
    if device.type != "cpu" or fixed_threads() or tile < PARALLEL_MIN_TILE:
        return 1
    fit = available_memory(device) // 4 // max(tile * tile * TILE_BYTES_PER_PAIR, 1)
    return max(1, min(torch.get_num_threads(), tiles, fit))


class TileSchedule:
    """Hands tiles (r0, c0) to worker threads so that no two tiles in work share a row block or a column block:
    the per-row and per-column state of the reductions is then never written by two threads at once. Tiles come in
    phases, each a list in the order preferred; a phase starts when every tile of the one before it is done. A
    thread keeps to the row it had while it can (its row block is read once)."""

    def __init__(self, phases: list[list[tuple[int, int]]]) -> None:
        self.phases = [phase for phase in phases if phase]
        self.condition = threading.Condition()
        self.queues: dict[int, deque[int]] = {}
        self.busy_rows: set[int] = set()
        self.busy_cols: set[int] = set()
        self.in_flight = 0
        self.error: BaseException | None = None
        self._next_phase = 0
        self._load()

    def _load(self) -> bool:
        if self._next_phase >= len(self.phases):
            return False
        for r0, c0 in self.phases[self._next_phase]:
            self.queues.setdefault(r0, deque()).append(c0)
        self._next_phase += 1
        return True

    def _pick(self, last_row: int | None) -> tuple[int, int] | None:
        rows = ([last_row] if last_row in self.queues else []) + list(self.queues)
        for r0 in rows:
            if r0 in self.busy_rows:
                continue
            queue = self.queues[r0]
            for place, c0 in enumerate(queue):
                if c0 not in self.busy_cols:
                    del queue[place]
                    if not queue:
                        del self.queues[r0]
                    return r0, c0
        return None

    def take(self, last_row: int | None = None) -> tuple[int, int] | None:
        """The next tile for a thread (None when every tile is done or a thread failed); waits while every
        remaining tile shares a row or column block with one in work."""
        with self.condition:
            while self.error is None:
                found = self._pick(last_row)
                if found is not None:
                    self.busy_rows.add(found[0])
                    self.busy_cols.add(found[1])
                    self.in_flight += 1
                    return found
                if not self.queues and not self.in_flight and not self._load():
                    self.condition.notify_all()
                    return None
                if self.queues and not self.in_flight:  # a new phase was loaded
                    continue
                self.condition.wait()
            return None

    def done(self, tile: tuple[int, int], then: Callable[[], None] | None = None) -> None:
        """Mark a tile done (``then()`` runs under the schedule's lock first: progress, ordered sums)."""
        with self.condition:
            if then is not None:
                then()
            self.busy_rows.discard(tile[0])
            self.busy_cols.discard(tile[1])
            self.in_flight -= 1
            self.condition.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.condition:
            self.error = self.error or error
            self.condition.notify_all()


def run_tiles(schedule: TileSchedule, process: Callable[[tuple[int, int], dict], None],
              finished: Callable[[tuple[int, int]], None], workers: int) -> None:
    """``process(tile, local)`` for every tile of ``schedule`` on ``workers`` threads, each single-threaded with
    its own ``local`` dict (buffers, the row block it holds), and ``finished(tile)`` under the schedule's lock after
    each; re-raises the first error. Torch's thread count is restored afterwards."""
    before = torch.get_num_threads()

    def worker() -> None:
        torch.set_num_threads(1)
        local: dict = {}
        tile = None
        try:
            while (tile := schedule.take(None if tile is None else tile[0])) is not None:
                process(tile, local)
                schedule.done(tile, lambda tile=tile: finished(tile))
        except BaseException as error:  # handed to the caller's thread
            schedule.fail(error)

    threads = [threading.Thread(target=worker, name=f"embspace-tiles-{n}", daemon=True) for n in range(workers)]
    torch.set_num_threads(1)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException as error:  # Ctrl-C in this thread: stop the workers, then raise
        schedule.fail(error)
        for thread in threads:
            thread.join()
        raise
    finally:
        set_threads(before)
    if schedule.error is not None:
        raise schedule.error
