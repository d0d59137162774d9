"""``.npy`` (memory-mapped) and ``.npz`` (stored members memory-mapped at their offset, compressed ones
decompressed once) — always with ``allow_pickle=False``: object arrays are refused from the header alone."""

from __future__ import annotations

import math
import mmap
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
    """Parse a ``.npy`` header at the handle's position: (shape, fortran_order, dtype).

    The header is a Python literal parsed by numpy's ``safe_eval`` (``ast.literal_eval``): an expression in it is
    refused, never evaluated, and nothing is unpickled. Versions 1.0, 2.0 and 3.0 (UTF-8 names) are read.
    """
    with translated(source, "not a valid .npy array"):
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs from 2.0 only in allowing UTF-8 field names
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise InputError(source, f"not a valid .npy array: unsupported format version {version[0]}.{version[1]}")
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise InputError(source, f"not a valid .npy array: negative size in shape {shape}")
    return shape, bool(fortran), dtype


def data_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (exact Python integers: a lying header cannot overflow it)."""
    return math.prod(shape) * dtype.itemsize


def _memmap(path: Path, offset: int, source: str) -> np.ndarray:
    """Memory-map the ``.npy`` image that starts ``offset`` bytes into ``path`` (read-only)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        shape, fortran, dtype = read_npy_header(handle, source)
        torch_dtype_of_numpy(source, dtype)
        data_offset = handle.tell()
    if math.prod(shape) == 0:
        return np.empty(shape, dtype=dtype)
    needed = data_bytes(shape, dtype)
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
        rows = numpy_rows(array[start:stop] if plane is None else array[plane, start:stop])
        release_pages(array)
        return rows

    return Stored(source, shape, torch_dtype_of_numpy(source, dtype), read)


def release_pages(array: np.ndarray) -> None:
    """Drop the pages of a memory-mapped file that reading has mapped into this process (they stay in the page
    cache), so that streaming a file larger than the memory budget does not keep it all resident."""
    handle = getattr(array, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)


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
    header_bytes = _header_size(path, info, source)
    if data_bytes(shape, dtype) > info.file_size - header_bytes:  # a lying header: refuse before allocating
        raise InputError(source, f"truncated: shape {shape} of {dtype} needs {data_bytes(shape, dtype)} bytes of "
                                 f"data, the member holds {max(info.file_size - header_bytes, 0)}")
    return _stored_from_array(source, _decompress_once(path, info, source), shape, dtype)


def _header_size(path: Path, info: zipfile.ZipInfo, source: str) -> int:
    """Bytes of the ``.npy`` header at the start of a compressed member."""
    with translated(source, "not a valid .npz archive"), zipfile.ZipFile(path, "r") as archive, \
            archive.open(info) as member:
        read_npy_header(member, source)
        return member.tell()


def _decompress_once(path: Path, info: zipfile.ZipInfo, source: str) -> Callable[[], np.ndarray]:
    """A function that decompresses a member on its first call and keeps the array.

    The data is read as it arrives, never into a buffer sized from the header, so a member whose header claims
    more than the archive holds is refused as truncated instead of allocating what the header says.
    """
    lock = threading.Lock()
    cache: list[np.ndarray] = []

    def array() -> np.ndarray:
        with lock:
            if not cache:
                with translated(source), zipfile.ZipFile(path, "r") as archive, archive.open(info) as member:
                    shape, fortran, dtype = read_npy_header(member, source)
                    needed = data_bytes(shape, dtype)
                    raw = member.read(needed)
                    if len(raw) < needed:
                        raise InputError(source, f"truncated: shape {shape} of {dtype} needs {needed} bytes of "
                                                 f"data, only {len(raw)} present")
                    member.read(1)  # reach the end of the member, where zipfile checks its CRC
                    flat = np.frombuffer(raw, dtype=dtype, count=math.prod(shape))
                    cache.append(flat.reshape(shape, order="F" if fortran else "C"))
            return cache[0]

    return array
