"""Atomic writes: a reader of the target never sees a half-written file, whenever the writer dies.

The bytes go to an anonymous file in the target's folder (Linux ``O_TMPFILE``: it has no name, so a process killed
while writing leaves nothing behind), are flushed to disk, linked in under a hidden temporary name and renamed over
the target; the folder is then synced so that the rename itself survives a crash. Where ``O_TMPFILE`` is missing
(other systems, some file systems) a named hidden temporary file (``.NAME.XXXX.tmp``) takes its place. Either way
the target is, at every instant, absent, its old content or its new content — never a part. Only a kill in the
instant between the link and the rename (or, without ``O_TMPFILE``, during the write) can leave a hidden
``.NAME.XXXXXXXX.tmp`` beside it; the next write of the same target removes it (two processes writing one file at
the same moment are not supported). The file gets the usual permissions (0666 less the umask), not the 0600 of a
temporary file.

:func:`atomic_write_bytes` / :func:`atomic_write_text` write what is held in memory; :func:`atomic_npy` gives an
``.npy`` array mapped in memory to fill in place (an output larger than memory); :func:`atomic_fd` the bare file
descriptor that both write through.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_COPY_BLOCK = 1 << 22


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_fd(path) as fd:
        _write_all(fd, data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_npy(path: str | os.PathLike[str], shape: tuple[int, ...], dtype: np.dtype | type) -> Iterator[np.ndarray]:
    """A writable ``.npy`` array of ``shape`` and ``dtype``, mapped in memory (zeros until filled), that appears at
    ``path`` — whole — only when the block exits without error; an error or a kill leaves nothing (see the module
    docstring). The array must not be written after the block."""
    dtype = np.dtype(dtype)
    header = _npy_header(tuple(int(n) for n in shape), dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with atomic_fd(path) as fd:
        _write_all(fd, header)
        os.ftruncate(fd, len(header) + size)
        if size == 0:
            yield np.zeros(shape, dtype)
            return
        with os.fdopen(os.dup(fd), "r+b") as handle:  # the map holds its own reference to the file
            array = np.memmap(handle, dtype=dtype, mode="r+", offset=len(header), shape=tuple(shape))
        yield array
        array.flush()


@contextlib.contextmanager
def atomic_fd(path: str | os.PathLike[str]) -> Iterator[int]:
    """A file descriptor, open for reading and writing on a new empty file, whose content appears at ``path`` only
    when the block exits without error (it is then fsynced, named and renamed over ``path``; see the module
    docstring). The descriptor is closed on leaving; an error in the block leaves ``path`` untouched."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    _remove_leftovers(folder, target)
    fd = _open_anonymous(folder)
    if fd is None:
        with _named_temporary(folder, target) as named:
            yield named
    else:
        hidden = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            yield fd
            os.fsync(fd)
            try:
                _link_anonymous(fd, hidden)
            except OSError:  # no /proc, or linking refused: copy into a named temporary file instead
                _copy_to_named(fd, folder, target)
            else:
                os.replace(hidden, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(hidden)
            raise
        finally:
            os.close(fd)
    _sync_folder(folder)


def leftovers(folder: Path, name: str) -> list[Path]:
    """Hidden temporary files that a writer of ``folder/name`` killed mid-way left (``.NAME.XXXXXXXX.tmp``)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
    with contextlib.suppress(OSError):
        return [path for path in folder.iterdir() if pattern.match(path.name)]
    return []


def _remove_leftovers(folder: Path, target: Path) -> None:
    """Delete what killed writers of ``target`` left, before writing it again."""
    for path in leftovers(folder, target.name):
        with contextlib.suppress(OSError):
            path.unlink()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` header (magic, version, padded dict) of a C-order array, as :func:`numpy.save` writes it."""
    import io

    fields = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buffer, fields)
    except ValueError:  # a header over 64 KiB (very many dimensions) needs version 2.0
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, fields)
    return buffer.getvalue()


def _open_anonymous(folder: Path) -> int | None:
    """An ``O_TMPFILE`` file in ``folder`` (no name yet), or None where the system or file system lacks it."""
    if not _O_TMPFILE:
        return None
    try:
        return os.open(folder, _O_TMPFILE | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:
        return None


def _link_anonymous(fd: int, name: Path) -> None:
    """Give the ``O_TMPFILE`` file ``fd`` a name: linkat through /proc/self/fd following the link (os.link without
    a directory fd calls link(2), which would try to link the /proc symlink itself and fail across devices)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _copy_to_named(fd: int, folder: Path, target: Path) -> None:
    """Where an anonymous file cannot be named: copy its content into a named temporary file, renamed over
    ``target``."""
    with _named_temporary(folder, target) as out:
        offset = 0
        while block := os.pread(fd, _COPY_BLOCK, offset):
            _write_all(out, block)
            offset += len(block)


@contextlib.contextmanager
def _named_temporary(folder: Path, target: Path) -> Iterator[int]:
    """A hidden named temporary file ``.NAME.XXXX.tmp`` in ``folder`` (usual permissions) to fill through the
    descriptor; on leaving it is fsynced, closed and renamed over ``target``, or removed after an error."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (changing it is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """fsync the folder so that the rename is on disk too (not possible everywhere; then skipped)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
