"""Normalised row blocks on the compute device: what every kernel reads.

`Rows` hides whether the matrix sits on the device (``ResidentRows``) or is read from its source tile by tile
(``StreamedRows``, for inputs larger than the memory budget). Device and precision are resolved once, by
:func:`resolve_device` and :func:`resolve_precision`, at the entry point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.budget import OOM_ERRORS

PRECISIONS = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32,
              "bf16": torch.bfloat16, "fp16": torch.float16}
NORM_TOLERANCE = 1e-3
SAFE_PEAK = (2.0**-50, 2.0**50)  # largest |x_k| of rows that square safely in float32: D·2^100 < 2^128


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; ``"cuda"`` without CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "CUDA was requested but torch sees no CUDA device")
    return resolved


def resolve_precision(precision: str) -> torch.dtype:
    """The dtype the tiles are computed in; float64 accumulation is used regardless."""
    if precision not in PRECISIONS:
        raise InputError("--precision", f"unknown precision {precision!r}; choose auto or one of "
                                        f"{', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def precision_name(precision: str, device: torch.device) -> str:
    """``"auto"`` → ``"fp16"`` on CUDA (half tiles, fp32 accumulation) and ``"fp32"`` elsewhere (CPU half matrix
    products are slow); any other name is checked and returned as given."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    resolve_precision(precision)
    return precision


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Enable TF32 matrix products only for ``precision="tf32"`` (full fp32 otherwise), for cuBLAS and the fused
    kernels (:func:`embspace.kernels.fused.use_tf32`, the only place they learn of tf32).

    Set and restored through torch's ``fp32_precision`` where it exists (mixing it with the legacy ``allow_tf32``
    makes torch raise), else through ``allow_tf32``: one API only.
    """
    from embspace.kernels.fused import use_tf32

    matmul = torch.backends.cuda.matmul
    flag = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    previous = getattr(matmul, flag)
    setattr(matmul, flag, ("tf32" if precision == "tf32" else "ieee") if flag == "fp32_precision"
            else precision == "tf32")
    try:
        with use_tf32(precision == "tf32"):
            yield
    finally:
        setattr(matmul, flag, previous)


def row_norms(wide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / 2^e, 2^e) per row, 2^e the power of two just above the row's largest |x_k|: the scaled rows have
    max |x_k| in [1/2, 1), so their squared norm lies in [1/4, D] whatever the scale of x — rows of norm 1e30 in
    float32 or 1e200 in float64 no longer square to inf, subnormal rows no longer square to 0.

    Scaling by a power of two is exact (it only moves the exponent); it is applied in two halves so that neither
    factor leaves the dtype's range (2^149 does not exist in float32, 2^1074 not in float64). All-zero rows keep
    scale 1 (the validation refuses them; their norm is 0). Rows inside :data:`SAFE_PEAK` are returned as
they are (scale 1), so ordinary data are normalised exactly as a plain ``x / ‖x‖`` would. Returns ``(scaled (B, D), scale (B, 1))``.
    """
    peak = wide.abs().amax(dim=1, keepdim=True) if wide.shape[1] else wide.new_zeros((len(wide), 1))  # (B, 1)
    if len(wide) == 0 or bool(((peak > SAFE_PEAK[0]) & (peak < SAFE_PEAK[1])).all()):
        return wide, torch.ones_like(peak)  # squares can neither overflow nor underflow: nothing to scale
    exponent = torch.frexp(peak).exponent.to(wide.dtype).masked_fill_(peak == 0, 0)  # peak = m·2^e, m ∈ [½, 1)
    first = torch.floor(exponent / 2)
    scaled = wide * torch.exp2(-first) * torch.exp2(first - exponent)
    return scaled, torch.exp2(exponent)


def normalize_block(
    block: torch.Tensor, source: str, start: int, require_normalized: bool, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """x̂ = x / ‖x‖ in float32 (float64 when either side is float64); refuses non-unit rows if asked to.

    The norm is taken scale-safely (:func:`row_norms`): every finite non-zero row, from subnormal to the largest
    float, gives a unit row; a row whose norm is 0 (all zeros) is refused here too, with its row number, in case
    the validation scan was skipped.
    """
    wide = block.double() if torch.float64 in (block.dtype, dtype) else block.float()
    scaled, scale = row_norms(wide)  # (B, D), (B, 1)
    norms = scaled.norm(dim=1, keepdim=True)  # (B, 1) in [1/2, √D] for non-zero rows
    zero = norms.squeeze(1) == 0
    if bool(zero.any()):
        row = start + int(torch.nonzero(zero)[0])
        raise InputError(source, f"row {row} has zero norm and cannot be normalised")
    if require_normalized:
        true_norms = norms.double() * scale.double()  # (B, 1), finite in float64 for any float32 row
        off = ~((true_norms.squeeze(1) - 1).abs() <= NORM_TOLERANCE)
        if bool(off.any()):
            row = start + int(torch.nonzero(off)[0])
            raise InputError(source, f"row {row} has norm {float(true_norms[row - start]):.6g}, not 1 "
                                     f"(normalisation was refused; drop --require-normalized to normalise)")
    return scaled / norms


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
