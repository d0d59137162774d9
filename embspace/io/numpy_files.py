"""``.npy`` and ``.npz`` — always with ``allow_pickle=False``: object arrays are refused from the header alone.

Rows of a C-order ``.npy`` (and of a stored ``.npz`` member, at its offset) are read with ``pread`` as they are
asked for: nothing is mapped, so a file that another process truncates or rewrites while it is read is an
:class:`~embspace.errors.InputError` naming it ("changed on disk while being read"), never a SIGBUS; every read
checks that the file is still the one opened (inode and size). A compressed member is
decompressed as a stream, row block by row block, never held whole (so it respects the memory budget whatever it
inflates to): reading forward continues the stream, reading backward starts it again. Fortran-order arrays are
memory-mapped (rows are not contiguous there).
"""

from __future__ import annotations

import math
import mmap
import os
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


def _header_at(path: Path, offset: int, source: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of the ``.npy`` image that starts ``offset`` bytes into ``path``,
    refused when the file is too short for the data the header promises."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        shape, fortran, dtype = read_npy_header(handle, source)
        torch_dtype_of_numpy(source, dtype)
        data_offset = handle.tell()
    needed = data_bytes(shape, dtype)
    available = path.stat().st_size - data_offset
    if math.prod(shape) and available < needed:
        raise InputError(source, f"truncated: shape {shape} of {dtype} needs {needed} bytes of data, "
                                 f"only {max(available, 0)} present")
    return shape, fortran, dtype, data_offset


def _memmap(path: Path, offset: int, source: str) -> np.ndarray:
    """Memory-map the ``.npy`` image that starts ``offset`` bytes into ``path`` (read-only)."""
    shape, fortran, dtype, data_offset = _header_at(path, offset, source)
    if math.prod(shape) == 0:
        return np.empty(shape, dtype=dtype)
    with translated(source):
        return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape,
                         order="F" if fortran else "C")


class FileIdentity:
    """What a file was when it was opened (device, inode, size), to notice another process truncating, extending
    or replacing it while it is read (bytes rewritten in place are read as they are at read time)."""

    def __init__(self, path: Path, source: str) -> None:
        self.path, self.source = path, source
        self.seen = self._now(os.stat(path))

    @staticmethod
    def _now(info: os.stat_result) -> tuple[int, int, int]:
        return (info.st_dev, info.st_ino, info.st_size)

    def check(self, info: os.stat_result | None = None) -> None:
        """Refuse the file if it is no longer what was opened."""
        try:
            now = self._now(info if info is not None else os.stat(self.path))
        except OSError as exc:
            raise InputError(self.source, f"changed on disk while being read: {exc.strerror or exc}; measure a file "
                                          "that nothing else writes") from None
        if now != self.seen:
            what = (f"its size went from {self.seen[2]:,} to {now[2]:,} bytes" if now[2] != self.seen[2]
                    else "another file took its place")
            raise InputError(self.source, f"changed on disk while being read ({what}); measure a file that "
                                          "nothing else writes")


def _stored_from_file(path: Path, offset: int, source: str) -> Stored:
    """The ``.npy`` image at ``offset`` in ``path``, its rows read with ``pread`` on demand (C order), checked
    against changes of the file at every read; Fortran order is memory-mapped."""
    shape, fortran, dtype, data_offset = _header_at(path, offset, source)
    if fortran or math.prod(shape) == 0:
        array = _memmap(path, offset, source)
        identity = FileIdentity(path, source)

        def mapped(plane: int | None, start: int, stop: int) -> torch.Tensor:
            identity.check()
            return numpy_rows(array[start:stop] if plane is None else array[plane, start:stop])

        return Stored(source, shape, torch_dtype_of_numpy(source, dtype), mapped)
    identity = FileIdentity(path, source)
    row_bytes = shape[-1] * dtype.itemsize
    plane_bytes = shape[-2] * row_bytes if len(shape) == 3 else 0
    native = dtype.newbyteorder("=")

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        where = data_offset + (plane or 0) * plane_bytes + start * row_bytes
        size = (stop - start) * row_bytes
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        with open(path, "rb") as handle:
            identity.check(os.fstat(handle.fileno()))
            while got < size:  # one call reads at most ~2 GiB
                count = os.preadv(handle.fileno(), [view[got:]], where + got)
                if count == 0:
                    break
                got += count
        if got != size:
            identity.check()
            raise InputError(source, "changed on disk while being read (it holds fewer bytes than when it was "
                                     "opened); measure a file that nothing else writes")
        rows = np.frombuffer(buffer, dtype=dtype).reshape(stop - start, shape[-1])  # (rows, D)
        if dtype != native:
            rows = rows.astype(native)
        return torch.from_numpy(rows)

    return Stored(source, shape, torch_dtype_of_numpy(source, dtype), read)


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
    return _stored_from_file(path, 0, source)


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
        return _stored_from_file(path, _member_data_offset(path, info, source), source)
    header_bytes = _header_size(path, info, source)
    if data_bytes(shape, dtype) > info.file_size - header_bytes:  # a lying header: refuse before allocating
        raise InputError(source, f"truncated: shape {shape} of {dtype} needs {data_bytes(shape, dtype)} bytes of "
                                 f"data, the member holds {max(info.file_size - header_bytes, 0)}")
    if headers[name][1]:  # Fortran order: rows are not contiguous in the stream
        return _stored_from_array(source, _decompress_once(path, info, source), shape, dtype)
    return _streamed_member(path, info, source, shape, dtype, header_bytes)


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


def _streamed_member(path: Path, info: zipfile.ZipInfo, source: str, shape: tuple[int, ...], dtype: np.dtype,
                     header_bytes: int) -> Stored:
    """A compressed C-order member read as a stream: rows ``[start, stop)`` are decompressed from where the last
    read ended (forward) or from the start of the member again (backward); only the rows asked for are held."""
    lock = threading.Lock()
    identity = FileIdentity(path, source)
    row_bytes = shape[-1] * dtype.itemsize
    plane_bytes = shape[-2] * row_bytes if len(shape) == 3 else 0
    native = dtype.newbyteorder("=")
    state: dict[str, object] = {}

    def rewind() -> None:
        close()
        archive = zipfile.ZipFile(path, "r")
        state.update(archive=archive, member=archive.open(info), at=0)
        skip(header_bytes)

    def close() -> None:
        for key in ("member", "archive"):
            handle = state.pop(key, None)
            if handle is not None:
                handle.close()

    def skip(count: int) -> None:
        member = state["member"]
        while count > 0:
            block = member.read(min(count, 1 << 18))  # type: ignore[attr-defined]  # small: zipfile reads ahead
            if not block:
                raise InputError(source, "truncated: the compressed member ends before its data")
            count -= len(block)
            state["at"] = int(state["at"]) + len(block)  # type: ignore[call-overload]

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        begin = header_bytes + (plane or 0) * plane_bytes + start * row_bytes
        size = (stop - start) * row_bytes
        with lock, translated(source):
            identity.check()
            if "member" not in state or int(state["at"]) > begin:  # type: ignore[call-overload]
                rewind()
            skip(begin - int(state["at"]))  # type: ignore[call-overload]
            raw = state["member"].read(size)  # type: ignore[attr-defined]
            state["at"] = int(state["at"]) + len(raw)  # type: ignore[call-overload]
            if len(raw) < size:
                raise InputError(source, f"truncated: shape {shape} of {dtype} needs more data than the member "
                                         "holds")
            if int(state["at"]) == header_bytes + data_bytes(shape, dtype):  # type: ignore[call-overload]
                state["member"].read(1)  # type: ignore[attr-defined]  # the end: zipfile checks the CRC here
                close()
        rows = np.frombuffer(bytearray(raw), dtype=dtype).reshape(stop - start, shape[-1])  # (rows, D)
        return torch.from_numpy(rows.astype(native) if dtype != native else rows)

    return Stored(source, shape, torch_dtype_of_numpy(source, dtype), read)
