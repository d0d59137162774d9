"""``.safetensors`` files: keys, shapes and dtypes from ``safe_open``; rows read with ``os.pread`` (bf16 included).

Rows are read from the file, not through a memory map: the pages a mapping touches stay in the process's resident
memory, so a file larger than the memory budget streamed through ``get_slice`` would end up wholly resident.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open

from embspace.errors import InputError
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
    """One tensor of a safetensors file; only the requested rows are read, each time they are requested."""
    with translated(str(path)):
        handle = safe_open(str(path), framework="pt", device="cpu")
        names = handle.keys()  # the handle itself is not iterable
        shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
    name = choose_key(str(path), shapes, key, what="tensor", ndim=ndim)
    source = source_of(path, name)
    with translated(source):
        view = handle.get_slice(name)
        dtype = _torch_dtype(source, view.get_dtype())

    begin = _data_offset(path, name, source)
    row_bytes = shapes[name][-1] * dtype.itemsize if shapes[name] else 0
    rows_per_plane = shapes[name][-2] if len(shapes[name]) >= 2 else 0

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        size = (stop - start) * row_bytes
        raw = bytearray(size)
        with open(path, "rb") as handle:
            handle.seek(begin + (start + (plane or 0) * rows_per_plane) * row_bytes)
            got = handle.readinto(raw)
        if got != size:
            raise InputError(source, f"truncated: rows {start} to {stop - 1} lie past the end of the file")
        return torch.frombuffer(raw, dtype=dtype).reshape(stop - start, shapes[name][-1])  # (rows, D)

    return Stored(source, shapes[name], dtype, read)


def _data_offset(path: Path, name: str, source: str) -> int:
    """Where tensor ``name``'s bytes begin: after the 8-byte header length and the JSON header (parsed as data)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    entry = header.get(name) if isinstance(header, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("data_offsets"), list):
        raise InputError(source, "corrupt safetensors header: no data offsets for this tensor")
    return 8 + length + int(entry["data_offsets"][0])
