"""Threads of the CPU pairwise pass on a machine that may be shared with other processes.

A tile's product is one large GEMM: it is the only step that uses several threads, and only as many as the
machine has free (:class:`CpuShare`). The reductions of a tile run single-threaded, as coarse work items (the
row side and the column side of each reduction) spread over a small pool of worker threads; no reduction opens a
parallel region of its own. Many small parallel regions (one per cache-sized chunk of a tile) are what make a
multi-threaded pass slow when another process holds a core: every region waits at its barrier for the thread
that was descheduled.

The free cores are measured, not guessed: between two looks, the CPU time every process used (``/proc/stat``)
less this process's own (``os.times``), over the wall time, is how many cores the others kept busy. The product
gets ``round(cores − others)`` threads (at least one, at most what torch was set to). ``$EMBSPACE_THREADS=fixed``
keeps torch's thread count throughout (every step multi-threaded), for comparison.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

MIN_INTERVAL = 0.2  # seconds between two measurements of the others' load
LAST_PASS_THREADS: set[int] = set()  # the thread counts the products of the latest pass took (for benchmarks)
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds() -> float | None:
    """CPU seconds every process of the machine has used since boot (``/proc/stat``), None where unreadable."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    guest = sum(ticks[8:10])  # guest time is counted in user time already
    return (sum(ticks) - idle - guest) / TICKS


def own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def machine_cores() -> int:
    return os.cpu_count() or 1


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return machine_cores()


class CpuShare:
    """How many threads the product of the next tile should use: torch's setting, less the cores that other
    processes kept busy since the previous look (re-measured at most every :data:`MIN_INTERVAL` seconds).

    The last look is kept across passes (one process, one machine); before the first one the 1-minute load
    average stands in for the others' use (less the one core this process is taken to have used)."""

    _last: tuple[float, float | None, float] | None = None  # (wall time, every process's CPU s, this one's)
    _others: float | None = None

    def __init__(self, requested: int | None = None, fixed: bool | None = None) -> None:
        self.requested = requested or torch.get_num_threads()
        self.fixed = os.environ.get("EMBSPACE_THREADS", "auto") == "fixed" if fixed is None else fixed
        self.cores = min(usable_cores(), machine_cores())
        if CpuShare._last is None:
            CpuShare._last = (time.monotonic(), busy_seconds(), own_seconds())
        if CpuShare._others is None:
            CpuShare._others = max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
        self.current = self._decide()

    @property
    def others(self) -> float:
        """Cores the other processes kept busy at the last look."""
        return CpuShare._others or 0.0

    def _decide(self) -> int:
        free = machine_cores() - self.others
        return max(1, min(self.requested, self.cores, int(free + 0.5)))

    def threads(self) -> int:
        """Threads for the next product."""
        if self.fixed or self.requested <= 1:
            return self.requested
        now, busy, own = time.monotonic(), busy_seconds(), own_seconds()
        then, busy_then, own_then = CpuShare._last
        if busy is None or busy_then is None or now - then < MIN_INTERVAL:
            return self.current
        CpuShare._last = (now, busy, own)
        CpuShare._others = max(0.0, ((busy - busy_then) - (own - own_then)) / (now - then))
        self.current = self._decide()
        return self.current


def set_threads(count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@contextmanager
def tile_threads(fixed: bool | None = None) -> Iterator[TilePool]:
    """A pass's thread policy: yields a :class:`TilePool`; torch's thread count is restored afterwards."""
    before = torch.get_num_threads()
    pool = TilePool(CpuShare(before, fixed))
    LAST_PASS_THREADS.clear()
    try:
        yield pool
    finally:
        pool.close()
        set_threads(before)


class TilePool:
    """Runs a tile's product with the free cores and its reductions' work items single-threaded."""

    def __init__(self, share: CpuShare) -> None:
        self.share = share
        self._workers: ThreadPoolExecutor | None = None
        self.product_threads = share.current

    def product(self, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` (a GEMM) with the threads the machine has free."""
        self.product_threads = self.share.threads()
        LAST_PASS_THREADS.add(self.product_threads)
        set_threads(self.product_threads)
        try:
            return make()
        finally:
            if not self.share.fixed:
                set_threads(1)

    def run(self, items: Sequence[Callable[[], None]]) -> None:
        """Every work item, on up to as many worker threads as the product had (each single-threaded), or one
        after the other here; returns when all are done."""
        workers = min(self.product_threads, len(items))
        if self.share.fixed or workers <= 1:
            for item in items:
                item()
            return
        if self._workers is None:
            self._workers = ThreadPoolExecutor(self.share.cores, thread_name_prefix="embspace-tile",
                                               initializer=set_threads, initargs=(1,))
        for future in [self._workers.submit(item) for item in items]:
            future.result()

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown()
            self._workers = None
