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

Every write first resolves its target with :func:`resolve_output`, the one output check of embspace (the commands
call it before they start any work, the writers again when they write):

- a symbolic link is followed: its target is replaced atomically and the link stays a link;
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe, ``/proc/self/fd/N``) is written
  through, never renamed over;
- an output that is the same file as an input (the same inode: through links, hard links or another spelling of
  the path) — a file this process has read (:func:`note_input`) or one of the inputs named — is refused;
- a target that cannot be written (a folder, a missing folder, a folder on the way that is a file, no permission,
  a read-only file system) is refused.

Each refusal is one :class:`~embspace.errors.InputError` line naming the path.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embspace.errors import InputError

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_COPY_BLOCK = 1 << 22
_PASS_THROUGH_ROOTS = ("/proc/", "/dev/fd/")

_inputs: dict[tuple[int, int], tuple[str, int, int]] = {}  # (st_dev, st_ino) → (path, size, mtime_ns) when read
_inputs_lock = threading.Lock()


def note_input(path: str | os.PathLike[str]) -> None:
    """Record that this process reads the regular file ``path``: no embspace writer replaces it afterwards (as long
    as it holds what was read: same size and modification time)."""
    with contextlib.suppress(OSError, ValueError):
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):
            with _inputs_lock:
                _inputs[(info.st_dev, info.st_ino)] = (str(path), info.st_size, info.st_mtime_ns)


def _read_input(info: os.stat_result) -> str | None:
    """The path under which this process read the file ``info`` describes, if it did (and it is unchanged)."""
    with _inputs_lock:
        found = _inputs.get((info.st_dev, info.st_ino))
    if found is not None and found[1:] == (info.st_size, info.st_mtime_ns):
        return found[0]
    return None


@dataclass(frozen=True)
class Output:
    """A resolved output: ``path`` is the file to write (symbolic links followed); ``through`` says that it is a
    character device, FIFO or ``/proc`` descriptor, written through instead of replaced."""

    path: Path
    through: bool = False


def resolve_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (), *,
                   regular: bool = False) -> Output:
    """Check that ``path`` can be written without destroying anything, and say where the bytes go.

    ``inputs`` are the paths the caller reads (files or folders; missing ones are ignored) besides those already
    recorded by :func:`note_input`. ``regular`` requires a regular file (an array filled in place cannot go to a
    device). Every refusal is an :class:`InputError` on ``path``; nothing is created.
    """
    where = str(path)
    if not where:
        raise InputError("output", "empty path")
    given = Path(path)
    try:
        info: os.stat_result | None = os.stat(given)
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        raise InputError(where, "cannot write: a folder on the way is a file") from None
    except PermissionError:
        raise InputError(where, "cannot write: permission denied (a folder on the way is not searchable)") from None
    except OSError as exc:
        raise InputError(where, f"cannot write: {exc.strerror or type(exc).__name__}") from None
    real = Path(os.path.realpath(given))
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise InputError(where, "is a directory; give a file path")
        through = stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode) or (
            stat.S_ISREG(info.st_mode) and _through_proc(given))
        if not (through or stat.S_ISREG(info.st_mode)):
            raise InputError(where, "is a socket or block device; give a file path")
        if through and regular:
            raise InputError(where, "is a device or FIFO; this output is filled in place and needs a regular file")
        if not is_writable(given):
            raise InputError(where, "cannot write: permission denied (the file is read-only)")
        if stat.S_ISREG(info.st_mode):
            _refuse_alias(where, real, info, inputs)
        if through:
            return Output(given, through=True)
    else:
        _refuse_alias(where, real, None, inputs)
    folder = _nearest_existing(real.parent)  # missing folders on the way are created when the file is written
    try:
        folder_info = os.stat(folder)
    except NotADirectoryError:
        raise InputError(where, "cannot write: a folder on the way is a file") from None
    except OSError as exc:
        raise InputError(where, f"cannot write in {folder}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISDIR(folder_info.st_mode):
        raise InputError(where, f"cannot write: {folder} is not a folder")
    problem = _probe(folder)
    if problem:
        raise InputError(where, f"cannot write in folder {folder}: {problem}")
    return Output(real)


def resolve_folder(folder: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (),
                   writes: Iterable[str] = ()) -> Path:
    """Check an output folder (existing, or to be created in an existing folder) before any work: writable, and
    none of the files it will hold (``writes``: names or glob patterns) is an input. Returns the folder."""
    folder = Path(folder)
    where = str(folder)
    try:
        info: os.stat_result | None = os.stat(folder)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise InputError(where, f"cannot write: {exc.strerror or type(exc).__name__}") from None
    if info is not None and not stat.S_ISDIR(info.st_mode):
        raise InputError(where, "exists and is not a folder")
    real = Path(os.path.realpath(folder))
    home = real if info is not None else _nearest_existing(real.parent)  # missing folders are created on writing
    if info is None:
        try:
            parent = os.stat(home)
        except OSError as exc:
            raise InputError(where, f"cannot write in {home}: {exc.strerror or type(exc).__name__}") from None
        if not stat.S_ISDIR(parent.st_mode):
            raise InputError(where, f"cannot write: {home} is not a folder")
    problem = _probe(home)
    if problem:
        raise InputError(where, f"cannot write in folder {home}: {problem}")
    patterns = tuple(writes)
    if info is not None and patterns:
        for candidate in (path for pattern in patterns for path in real.glob(pattern)):
            with contextlib.suppress(OSError):
                found = os.stat(candidate)
                if stat.S_ISREG(found.st_mode):
                    _refuse_alias(str(folder / candidate.name), candidate, found, inputs)
    return folder


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (what a missing output folder would be created in)."""
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    return folder


def _refuse_alias(where: str, real: Path, info: os.stat_result | None,
                  inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output that is an input: the same inode, the same real path, or a file inside an input folder."""
    if info is not None:
        read = _read_input(info)
        if read is not None:
            raise InputError(where, f"is an input of this run ({read}); writing here would destroy it — give "
                                    "another output path")
    for item in inputs:
        name = str(item)
        try:
            other: os.stat_result | None = os.stat(item)
            other_real = Path(os.path.realpath(item))
        except (OSError, ValueError):
            other, other_real = None, Path(os.path.abspath(item))  # an output named twice, not written yet
        same = other_real == real or (info is not None and other is not None
                                      and (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino))
        inside = (other is not None and stat.S_ISDIR(other.st_mode) and info is not None
                  and other_real in real.parents)
        if same and other is None:
            raise InputError(where, f"is also another output of this command ({name}); give each its own path")
        if same or inside:
            what = "inside the input folder" if inside and not same else "the input"
            raise InputError(where, f"is {what} {name}; writing here would destroy it — give another output path")


def _through_proc(path: Path) -> bool:
    """Whether ``path`` names an open descriptor (``/dev/stdout``, ``/proc/self/fd/1``): written through."""
    text = os.path.abspath(path)
    if text.startswith(_PASS_THROUGH_ROOTS) or text in ("/dev/stdout", "/dev/stderr"):
        return True
    with contextlib.suppress(OSError):
        return os.path.realpath(os.path.dirname(text)).startswith(_PASS_THROUGH_ROOTS)
    return False


def is_writable(path: Path) -> bool:
    """Whether this process may write ``path`` (split out so that tests can simulate a permission error)."""
    return os.access(path, os.W_OK)


def _probe(folder: Path) -> str:
    """'' when a file can be created in ``folder`` (tried for real: an anonymous or hidden file, removed at once),
    else why not."""
    fd = _open_anonymous(folder)
    if fd is not None:
        os.close(fd)
        return ""
    try:
        fd, name = tempfile.mkstemp(prefix=".embspace-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return ""


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
    with atomic_fd(path, regular=True) as fd:
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
def atomic_fd(path: str | os.PathLike[str], *, regular: bool = False) -> Iterator[int]:
    """A file descriptor, open for reading and writing on a new empty file, whose content appears at ``path`` only
    when the block exits without error (it is then fsynced, named and renamed over ``path``; see the module
    docstring). The descriptor is closed on leaving; an error in the block leaves ``path`` untouched.

    ``path`` is first checked by :func:`resolve_output`: a symbolic link's target is replaced, a device or FIFO is
    written through (its descriptor is then open for writing only), an input is never replaced."""
    output = resolve_output(path, regular=regular)
    if output.through:
        with _written_through(output.path) as fd:
            yield fd
        return
    target = output.path
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)  # missing parents are created, as output folders are
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


@contextlib.contextmanager
def _written_through(path: Path) -> Iterator[int]:
    """A descriptor on a character device, FIFO or open descriptor's path, written in place (a regular file behind
    ``/proc/self/fd`` is truncated first)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
        fd = os.open(path, os.O_WRONLY | (os.O_TRUNC if regular else 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(str(path), f"cannot write: {exc.strerror or type(exc).__name__}") from None
    try:
        yield fd
    finally:
        os.close(fd)


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
