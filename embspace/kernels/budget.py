"""Memory budget: sizes in bytes, tiles and row blocks that fit, and the out-of-memory retry.

One budget (``--memory 8GB``, default: what is free on the device) is split once, at the entry point:

- resident rows: each modality stays on the device when its normalised rows take at most a quarter of it
  (:func:`~embspace.kernels.rows.prepare_rows`), otherwise it is read from its source block by block;
- tiles of the pairwise engine: a T×T tile costs about ``TILE_BYTES_PER_PAIR`` bytes per pair with every reduction's
  temporaries (histogram bins are the widest), and may take a quarter of the budget;
- state that grows with N (the exact retrieval pass's top-k tables and rank counts) is taken from the budget
  first, and that pass's tiles fit a quarter of what is left (:func:`tile_within`);
- row blocks of the O(N·D) passes (moments, Gram, validation, gathers): ``BLOCK_BYTES_PER_VALUE`` bytes per value
  (a float64 copy and its temporaries), an eighth of the budget.

:func:`retry_on_oom` reruns a whole pass with half the tile (and half the row blocks) when it raises
``torch.OutOfMemoryError`` (CUDA) or ``MemoryError``, down to :data:`MIN_TILE` rows, then fails with one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import torch

from embspace.errors import InputError

TILE_BYTES_PER_PAIR = 32
BLOCK_BYTES_PER_VALUE = 48
MIN_TILE = 64
MIN_BLOCK_ROWS = 64
MAX_BLOCK_ROWS = 65_536
UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
         "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}
OOM_ERRORS: tuple[type[BaseException], ...] = (MemoryError, getattr(torch, "OutOfMemoryError",
                                                                    torch.cuda.OutOfMemoryError))

T = TypeVar("T")


def parse_size(text: str | int, option: str = "--memory") -> int:
    """``"8GB"`` → 8·10⁹, ``"512MiB"`` → 512·2²⁰, ``"1.5G"`` → 1.5·2³⁰, ``"1000000"`` → 10⁶ bytes.

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB and the bare K/M/G/T powers of 1024. A written size must be at
    least 1 MiB (``--memory 8`` is refused rather than read as 8 bytes); an int is taken as it is.

    >>> parse_size("8GB"), parse_size("512MiB"), parse_size(4096)
    (8000000000, 536870912, 4096)
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 1:
            raise InputError(option, f"{text} bytes: the budget must be positive")
        return text  # any positive number of bytes from Python (a tiny one forces streaming, as tests do)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
        if match is None or match.group(2).lower() not in UNITS:
            raise InputError(option, f"{text!r} is not a size; write bytes or a number with a unit: 512MB, 8GB, 2GiB")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * UNITS[unit])
    if size < 1 << 20:
        raise InputError(option, f"{text!r} is {size} bytes; the budget must be at least 1 MiB")
    return size


@dataclass(frozen=True)
class Plan:
    """How a measurement spends its memory budget (bytes): the tile side and the rows per O(N·D) block."""

    budget: int
    tile: int
    block_rows: int

    def halved(self) -> Plan:
        """The plan for a retry after an out-of-memory: half the tile and half the row blocks."""
        return replace(self, tile=max(self.tile // 2, 1), block_rows=max(self.block_rows // 2, 1))


def plan(budget: int, dim: int, tile: int) -> Plan:
    """The largest tile ≤ ``tile`` (halving) whose pairs fit a quarter of the budget, and row blocks for an eighth."""
    while tile > MIN_TILE and tile * tile * TILE_BYTES_PER_PAIR > budget // 4:
        tile //= 2
    rows = (budget // 8) // max(dim * BLOCK_BYTES_PER_VALUE, 1)
    block_rows = int(min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, 2 ** math.floor(math.log2(max(rows, 1))))))
    return Plan(budget, tile, block_rows)


def tile_within(layout: Plan, reserved: int) -> int:
    """The plan's tile, halved (down to ``MIN_TILE``) until its pairs fit a quarter of what the budget leaves after
    ``reserved`` bytes of state that grows with N (top-k tables, rank counts).

    That state is a floor: a budget smaller than it still runs, with the smallest tiles, above the budget.
    """
    left = max(layout.budget - reserved, 0)
    tile = layout.tile
    while tile > MIN_TILE and tile * tile * TILE_BYTES_PER_PAIR > left // 4:
        tile //= 2
    return tile


def retry_on_oom(run: Callable[[Plan], T], start: Plan, *, what: str = "the measurement",
                 on_retry: Callable[[Plan], None] | None = None) -> T:
    """``run(plan)``, rerun from scratch with a halved plan after each out-of-memory, down to ``MIN_TILE``.

    ``run`` must rebuild its state on every call (a failed pass leaves partial sums behind). ``on_retry`` is told
    each new plan (to shrink the row blocks of streamed inputs, say).
    """
    current = start
    while True:
        try:
            return run(current)
        except OOM_ERRORS as exc:
            _release(exc)
            if current.tile <= MIN_TILE:
                raise InputError("--memory", f"{what} ran out of memory even with {current.tile}-row tiles "
                                             f"({type(exc).__name__}); free memory or lower --memory") from None
            current = current.halved()
            if on_retry is not None:
                on_retry(current)


def _release(exc: BaseException) -> None:
    """Drop what the failed attempt held (CUDA's cache keeps freed blocks otherwise)."""
    del exc
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
