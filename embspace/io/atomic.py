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
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from pathlib import Path

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    _remove_leftovers(folder, target)
    if not _write_anonymous(folder, target, data):
        _write_named(folder, target, data)
    _sync_folder(folder)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _write_anonymous(folder: Path, target: Path, data: bytes) -> bool:
    """The ``O_TMPFILE`` path; False when the system or file system does not offer it (nothing was written)."""
    if not _O_TMPFILE:
        return False
    try:
        fd = os.open(folder, _O_TMPFILE | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:
        return False
    hidden = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        _write_all(fd, data)
        try:
            _link_anonymous(fd, hidden)
        except OSError:
            return False  # no /proc, or linking refused: fall back to a named temporary file
        os.replace(hidden, target)
        return True
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(hidden)
        raise
    finally:
        os.close(fd)


def _link_anonymous(fd: int, name: Path) -> None:
    """Give the ``O_TMPFILE`` file ``fd`` a name: linkat through /proc/self/fd following the link (os.link without
    a directory fd calls link(2), which would try to link the /proc symlink itself and fail across devices)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _write_named(folder: Path, target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            _write_all(fd, data)
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
