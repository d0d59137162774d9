"""``.safetensors`` files: read lazily through ``safe_open(...).get_slice(key)[start:stop]`` (bf16 included)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from embspace.io.common import choose_key, source_of, translated
from embspace.io.stored import Stored, check_torch_dtype, refuse_dtype

_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


def _torch_dtype(source: str, code: str) -> torch.dtype:
    """Map a safetensors dtype code (``F32``, ``BF16``, ``I64``…) to torch, refusing non-float data."""
    if code in _DTYPES:
        return check_torch_dtype(source, _DTYPES[code])
    if code == "BOOL":
        raise refuse_dtype(source, "boolean", code)
    if code[:1] in ("I", "U"):
        raise refuse_dtype(source, "integer", code)
    if code[:1] == "C":
        raise refuse_dtype(source, "complex", code)
    raise refuse_dtype(source, "other", code)


def open_safetensors(path: Path, key: str | None = None, *, ndim: int | None = None) -> Stored:
    """One tensor of a safetensors file; the file stays memory-mapped and only requested rows are read."""
    with translated(str(path)):
        handle = safe_open(str(path), framework="pt", device="cpu")
        names = handle.keys()  # the handle itself is not iterable
        shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
    name = choose_key(str(path), shapes, key, what="tensor", ndim=ndim)
    source = source_of(path, name)
    with translated(source):
        view = handle.get_slice(name)
        dtype = _torch_dtype(source, view.get_dtype())

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        # the slice holds its own reference to the memory map, so ``handle`` may go
        rows = view[start:stop] if plane is None else view[plane : plane + 1, start:stop][0]
        return rows.contiguous()

    return Stored(source, shapes[name], dtype, read)
