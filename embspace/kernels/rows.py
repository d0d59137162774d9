"""Normalised row blocks on the compute device: what every kernel reads.

`Rows` hides whether the matrix sits on the device (``ResidentRows``) or is read from its source tile by tile
(``StreamedRows``, for inputs larger than the memory budget). Device and precision are resolved once, by
:func:`resolve_device` and :func:`resolve_precision`, at the entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.budget import OOM_ERRORS

NORM_TOLERANCE = 1e-3


def normalize_block(
    block: torch.Tensor, source: str, start: int, require_normalized: bool, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """x̂ = x / ‖x‖ in float32 (float64 when either side is float64); refuses non-unit rows if asked to."""
    wide = block.double() if torch.float64 in (block.dtype, dtype) else block.float()
    norms = wide.norm(dim=1, keepdim=True)  # (B, 1)
    if require_normalized:
        off = (norms.squeeze(1) - 1).abs() > NORM_TOLERANCE
        if bool(off.any()):
            row = start + int(torch.nonzero(off)[0])
            raise InputError(source, f"row {row} has norm {float(norms[row - start]):.6g}, not 1 "
                                     f"(normalisation was refused; drop --require-normalized to normalise)")
    return wide / norms


@dataclass
class Rows:
    """Row-normalised N×D matrix readable in blocks on ``device`` in ``dtype``."""

    source: str
    n: int
    dim: int
    device: torch.device
    dtype: torch.dtype
    max_rows: int = 65_536  # the most rows :meth:`blocks` yields at once (set from the memory budget)

    def block(self, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    def blocks(self, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows[start:start+step])`` over the matrix, step = min(rows, max_rows)."""
        step = max(1, min(rows, self.max_rows))
        for start in range(0, self.n, step):
            yield start, self.block(start, min(start + step, self.n))


@dataclass
class ResidentRows(Rows):
    """All rows held on the device."""

    data: torch.Tensor | None = None

    def block(self, start: int, stop: int) -> torch.Tensor:
        return self.data[start:stop]


@dataclass
class StreamedRows(Rows):
    """Rows read from their source, normalised and moved to the device on every request."""

    embeddings: Embeddings | None = None
    require_normalized: bool = False

    def block(self, start: int, stop: int) -> torch.Tensor:
        raw = self.embeddings.read(start, stop)
        unit = normalize_block(raw, self.source, start, self.require_normalized, self.dtype)
        return unit.to(self.device, self.dtype, non_blocking=True)


def available_memory(device: torch.device) -> int:
    """Free bytes on the device (GPU: cudaMemGetInfo; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def as_embeddings(data: Embeddings | np.ndarray | torch.Tensor, source: str = "<array>") -> Embeddings:
    return data if isinstance(data, Embeddings) else Embeddings.from_array(data, source)


def prepare_rows(
    data: Embeddings | np.ndarray | torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    *,
    require_normalized: bool = False,
    memory_budget: int | None = None,
    chunk_rows: int = 65_536,
) -> Rows:
    """Normalise rows chunk by chunk; keep them on the device when they fit in a quarter of the budget.

    Otherwise (or when allocating them runs out of memory) the rows are streamed from their source; either way
    :meth:`Rows.blocks` yields at most ``chunk_rows`` rows at a time.
    """
    emb = as_embeddings(data)
    budget = memory_budget if memory_budget is not None else available_memory(device)
    size = emb.n * emb.dim * torch.finfo(dtype).bits // 8
    streamed = StreamedRows(emb.source, emb.n, emb.dim, device, dtype, max_rows=chunk_rows, embeddings=emb,
                            require_normalized=require_normalized)
    if size > budget // 4:
        return streamed
    try:
        out = torch.empty((emb.n, emb.dim), dtype=dtype, device=device)  # (N, D) unit rows
    except OOM_ERRORS:
        return streamed
    for start, raw in emb.chunks(chunk_rows):
        unit = normalize_block(raw.to(device), emb.source, start, require_normalized, dtype)
        out[start : start + len(raw)] = unit.to(dtype)
    return ResidentRows(emb.source, emb.n, emb.dim, device, dtype, max_rows=chunk_rows, data=out)
