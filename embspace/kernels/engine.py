"""The pairwise engine's entry: :func:`stream_pairs` sends a call to the torch path or the fused kernels, and
:func:`resolve_compute` resolves a run's device, precision and backend once.

Layering (each module imports only those before it): :mod:`~embspace.kernels.backend` (settings) →
:mod:`~embspace.kernels.rows` → :mod:`~embspace.kernels.pairwise` (reductions, the torch path) →
:mod:`~embspace.kernels.fused` (the Triton path) → this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from embspace.kernels import fused
from embspace.kernels.backend import precision_name, requested_backend, resolve_device, resolve_precision
from embspace.kernels.pairwise import DEFAULT_TILE, Reduction, stream_torch
from embspace.kernels.rows import Rows


def stream_pairs(
    x: Rows,
    y: Rows | None,
    reductions: Sequence[Reduction],
    *,
    tile: int = DEFAULT_TILE,
    progress: Callable[[int], None] | None = None,
    backend: str | None = None,
) -> None:
    """Feed every tile of X̂·Ŷᵀ (or of X̂·X̂ᵀ on and above the diagonal when ``y`` is None) to the reductions.

    ``backend``: ``"auto"`` (fused Triton kernels on CUDA for the reductions that have them, torch otherwise),
    ``"torch"`` or ``"triton"``; None reads :func:`~embspace.kernels.backend.use_backend`'s block, else
    ``$EMBSPACE_BACKEND`` (default ``"auto"``). See :mod:`embspace.kernels.fused`. Either path leaves the same
    statistics in the same reduction objects.
    """
    if fused.choose_backend(x, y, reductions, backend) == "triton":
        fused.stream_fused(x, y, reductions, tile=tile, progress=progress)
        return
    fusable = fused.fusable_part(x, y, reductions, backend)
    if fusable:  # "auto" on CUDA with some reductions that have no kernel: they get a torch pass of their own
        fused.stream_fused(x, y, fusable, tile=tile, progress=progress, backend="auto")
        rest = [r for r in reductions if not any(r is f for f in fusable)]
        stream_torch(x, y, rest, tile=tile)  # the bar counts the pair of passes once
        return
    stream_torch(x, y, reductions, tile=tile, progress=progress)


@dataclass(frozen=True)
class Compute:
    """Device, tile precision and backend of one run, resolved once (:func:`resolve_compute`).

    ``backend`` is what the run records (``"torch"`` or ``"triton"``); ``passes`` what its pairwise calls are
    handed (``"auto"`` stays ``"auto"``, so that a pass without a fused kernel takes the torch path).
    """

    device: torch.device
    precision: str
    dtype: torch.dtype
    backend: str
    passes: str


def resolve_compute(device: str | torch.device = "auto", precision: str = "auto",
                    backend: str | None = None) -> Compute:
    """Resolve a run's device, precision and backend (reading ``$EMBSPACE_BACKEND`` here, once, when ``backend``
    is None)."""
    torch_device = resolve_device(device)
    name = precision_name(precision, torch_device)
    dtype = resolve_precision(name)
    resolved = fused.resolve_backend(backend, torch_device, dtype)
    passes = "torch" if resolved == "torch" else requested_backend(backend)[0]
    return Compute(torch_device, name, dtype, resolved, passes)
