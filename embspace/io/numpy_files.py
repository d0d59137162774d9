"""``.npy`` (memory-mapped) and ``.npz`` (stored members memory-mapped at their offset, compressed ones
decompressed once) — always with ``allow_pickle=False``: object arrays are refused from the header alone."""

from __future__ import annotations

import struct
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch

from embspace.errors import InputError
from embspace.io.common import choose_key, source_of, translated
from embspace.io.stored import Stored, numpy_rows, torch_dtype_of_numpy

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, skipped fields, name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


def read_npy_header(handle: IO[bytes], source: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Parse a ``.npy`` header at the handle's position: (shape, fortran_order, dtype). Never unpickles."""
    with translated(source, "not a valid .npy array"):
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            shape, fortran, dtype = np.lib.format._read_array_header(handle, version)
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _memmap(path: Path, offset: int, source: str) -> np.ndarray:
    """Memory-map the ``.npy`` image that starts ``offset`` bytes into ``path`` (read-only)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        shape, fortran, dtype = read_npy_header(handle, source)
        torch_dtype_of_numpy(source, dtype)
        data_offset = handle.tell()
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    needed = int(np.prod(shape)) * dtype.itemsize
    available = path.stat().st_size - data_offset
    if available < needed:
        raise InputError(source, f"truncated: shape {shape} of {dtype} needs {needed} bytes of data, "
                                 f"only {max(available, 0)} present")
    with translated(source):
        return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape,
                         order="F" if fortran else "C")


def _stored_from_array(source: str, array_of: Callable[[], np.ndarray], shape: tuple[int, ...],
                       dtype: np.dtype) -> Stored:
    """Wrap an array, returned by ``array_of`` (which may build it on first use), as :class:`Stored`."""

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        array = array_of()
        return numpy_rows(array[start:stop] if plane is None else array[plane, start:stop])

    return Stored(source, shape, torch_dtype_of_numpy(source, dtype), read)


def open_npy(path: Path, key: str | None = None) -> Stored:
    """A ``.npy`` file, memory-mapped; it holds one array, so a key is refused."""
    source = str(path)
    if key is not None:
        raise InputError(source_of(path, key), "a .npy file holds one array and takes no key")
    array = _memmap(path, 0, source)
    return _stored_from_array(source, lambda: array, array.shape, array.dtype)


def _member_data_offset(path: Path, info: zipfile.ZipInfo, source: str) -> int:
    """Where a stored member's bytes begin: after its local header, whose extra field may differ from the
    central directory's."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        raw = handle.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size or raw[:4] != _LOCAL_SIGNATURE:
        raise InputError(source, "corrupt .npz: bad local header for this member")
    _, name_length, extra_length = _LOCAL_HEADER.unpack(raw)
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def _npz_members(path: Path) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    with translated(str(path), "not a valid .npz archive"):
        archive = zipfile.ZipFile(path, "r")
    members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()
               if info.filename.endswith(".npy")}
    return archive, members


def open_npz(path: Path, key: str | None = None, *, ndim: int | None = None) -> Stored:
    """One member of a ``.npz`` archive (``np.savez`` / ``np.savez_compressed``), by key.

    Without a key the only member is read (or, with ``ndim``, the only member of that many dimensions).
    """
    archive, members = _npz_members(path)
    with archive:
        headers: dict[str, tuple[tuple[int, ...], bool, np.dtype]] = {}
        for name, info in members.items():
            with translated(source_of(path, name), "not a valid .npz archive"), archive.open(info) as member:
                headers[name] = read_npy_header(member, source_of(path, name))
        name = choose_key(str(path), {k: h[0] for k, h in headers.items()}, key, ndim=ndim)
        info = members[name]
    source = source_of(path, name)
    shape, _, dtype = headers[name]
    torch_dtype_of_numpy(source, dtype)
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        array = _memmap(path, _member_data_offset(path, info, source), source)
        return _stored_from_array(source, lambda: array, shape, dtype)
    return _stored_from_array(source, _decompress_once(path, info, source), shape, dtype)


def _decompress_once(path: Path, info: zipfile.ZipInfo, source: str) -> Callable[[], np.ndarray]:
    """A function that decompresses a member on its first call and keeps the array."""
    lock = threading.Lock()
    cache: list[np.ndarray] = []

    def array() -> np.ndarray:
        with lock:
            if not cache:
                with translated(source), zipfile.ZipFile(path, "r") as archive, archive.open(info) as member:
                    cache.append(np.lib.format.read_array(member, allow_pickle=False))
            return cache[0]

    return array
