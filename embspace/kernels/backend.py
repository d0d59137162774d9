"""Where and how the pairwise engine computes: device, tile precision, tf32 and backend, resolved once per run.

- device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``;
- precision: the dtype tiles are multiplied in (:data:`PRECISIONS`; ``auto`` = fp16 on CUDA, fp32 elsewhere); sums
  are float64 whatever it is; ``tf32`` is fp32 storage with TF32 products (:func:`matmul_precision`);
- backend: ``"auto"`` (the fused Triton kernels of :mod:`embspace.kernels.fused` on CUDA where they run, torch
  otherwise), ``"torch"`` or ``"triton"``; a call that names none reads :func:`use_backend`'s block, else
  ``$EMBSPACE_BACKEND`` (default ``"auto"``).

:func:`embspace.kernels.engine.resolve_compute` resolves all of them at a run's entry; the run hands the result
down. This module imports nothing of embspace but its errors, so every kernel module can depend on it.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar

import torch

from embspace.errors import InputError

PRECISIONS = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32,
              "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; ``"cuda"`` without CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "CUDA was requested but torch sees no CUDA device")
    return resolved


def resolve_precision(precision: str) -> torch.dtype:
    """The dtype the tiles are computed in; float64 accumulation is used regardless."""
    if precision not in PRECISIONS:
        raise InputError("precision", f"unknown precision {precision!r}; choose auto or one of "
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
    kernels (:func:`use_tf32`, the only place they learn of tf32).

    Set and restored through torch's ``fp32_precision`` where it exists (mixing it with the legacy ``allow_tf32``
    makes torch raise), else through ``allow_tf32``: one API only.
    """
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


BACKENDS = ("auto", "torch", "triton")
BACKEND_ENV = "EMBSPACE_BACKEND"
FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


_IN_USE: ContextVar[str | None] = ContextVar("embspace_backend", default=None)
_CHOSEN: ContextVar[str] = ContextVar("embspace_backend_chosen", default="triton")  # what the last choice came from
_TF32: ContextVar[bool] = ContextVar("embspace_tf32", default=False)
_PASSES: ContextVar[Counter[str] | None] = ContextVar("embspace_passes", default=None)  # path → pairwise passes


@contextlib.contextmanager
def use_tf32(enabled: bool) -> Iterator[None]:
    """Within the block, fp32 rows go through the fused kernels' tf32 products (``enabled``) or IEEE fp32."""
    token = _TF32.set(enabled)
    try:
        yield
    finally:
        _TF32.reset(token)


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[Counter[str]]:
    """Within the block, calls that name no backend use ``backend`` (before ``$EMBSPACE_BACKEND``): how
    :func:`embspace.measure` hands its ``backend=`` to every pairwise pass of its metrics. Yields a count of the
    passes each path actually ran (``{"triton": 4, "torch": 1}``): under ``"auto"`` a pass without a fused kernel,
    or whose kernels cannot be built, runs on torch."""
    passes: Counter[str] = Counter()
    token, ledger = _IN_USE.set(backend), _PASSES.set(passes)
    try:
        yield passes
    finally:
        _PASSES.reset(ledger)
        _IN_USE.reset(token)


def record_pass(path: str) -> None:
    """Count one finished pairwise pass on ``path`` (``"triton"`` or ``"torch"``) for the enclosing
    :func:`use_backend`, if any."""
    passes = _PASSES.get()
    if passes is not None:
        passes[path] += 1


def requested_backend(backend: str | None) -> tuple[str, str]:
    """The backend asked for and where the request came from (for error messages)."""
    if backend is None and _IN_USE.get() is not None:
        name, where = _IN_USE.get(), "backend"
    elif backend is None:
        name, where = os.environ.get(BACKEND_ENV, "auto").strip() or "auto", BACKEND_ENV
    else:
        name, where = backend, "backend"
    if name not in BACKENDS:
        raise InputError(where, f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name, where


def tf32_enabled() -> bool:
    """Whether fp32 rows go through TF32 products in the fused kernels (inside :func:`use_tf32` ``(True)``)."""
    return _TF32.get()


def chosen_backend() -> str:
    """What the last fused choice was asked for: ``"auto"`` (a build error falls back to torch) or ``"triton"``."""
    return _CHOSEN.get()


def remember_choice(name: str) -> None:
    _CHOSEN.set(name)
