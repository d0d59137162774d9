"""Shared checks for the readers: file access, key choice and one-line translation of library errors."""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import pickle
import re
import stat
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from embspace.errors import InputError
from embspace.io.atomic import note_input

PICKLE_SUFFIXES = (".pkl", ".pickle")
MAX_LISTED_KEYS = 12
_MAX_MESSAGE = 240


def source_of(path: Path, key: str | None = None) -> str:
    """``path`` or ``path:key``, as the user would write it."""
    return f"{path}:{key}" if key is not None else str(path)


def is_readable(path: Path) -> bool:
    """Whether this process may read ``path`` (split out so tests can simulate a permission error)."""
    return os.access(path, os.R_OK)


def check_file(path: Path, *, note: bool = True) -> None:
    """Refuse a missing path, a directory, a fifo or device, an unreadable or empty file, naming it; ``note``
    records it as an input that no output may replace (:func:`embspace.io.atomic.note_input`)."""
    info = stat_or_refuse(path)
    if stat.S_ISDIR(info.st_mode):
        raise InputError(str(path), "is a directory, expected a file "
                                    "(a clip-retrieval folder holds img_emb/ and text_emb/)")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(str(path), "is not a regular file (a fifo, socket or device); give a file")
    if not is_readable(path):
        raise InputError(str(path), "permission denied (the file is not readable)")
    if info.st_size == 0:
        raise InputError(str(path), "is empty (0 bytes)")
    if note:
        note_input(path)  # read from now on: no embspace writer may replace it


def stat_or_refuse(path: Path) -> os.stat_result:
    """``os.stat`` (following links), every failure a one-line :class:`InputError`: no such file (a dangling link
    too), a folder on the way that may not be searched, a loop of links."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(str(path), "no such file") from None
    except PermissionError:
        raise InputError(str(path), "permission denied (a folder on the way is not readable)") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot open: {exc.strerror or exc.__class__.__name__}") from None


def is_dir(path: Path) -> bool:
    """``path.is_dir()`` that says False where it may not look (instead of raising PermissionError)."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return False


def exists(path: Path) -> bool:
    """``path.exists()`` that says False where it may not look."""
    try:
        path.stat()
    except OSError:
        return False
    return True


def one_line(message: object) -> str:
    """The first meaningful line of a library's message, without terminal escapes, shortened."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(message))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(message).__name__
    if len(line) > 120 and ". " in line[20:]:  # keep the first sentence of a long explanation
        line = line[: line.index(". ", 20) + 1]
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _library_errors() -> tuple[type[BaseException], ...]:
    # what the parsers of damaged files raise: numpy's header parser (SyntaxError, TokenError on a garbled
    # header), zlib / lzma in zip members, struct in torch's legacy format, ...
    errors: list[type[BaseException]] = [OSError, ValueError, EOFError, RuntimeError, TypeError, KeyError,
                                         IndexError, OverflowError, pickle.UnpicklingError,
                                         zipfile.BadZipFile, UnicodeDecodeError, SyntaxError, tokenize.TokenError,
                                         zlib.error, lzma.LZMAError, struct.error]
    with contextlib.suppress(ImportError):
        import pyarrow as pa

        errors.append(pa.ArrowException)
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    return tuple(errors)


LIBRARY_ERRORS = _library_errors()


@contextlib.contextmanager
def translated(source: str, doing: str = "cannot read") -> Iterator[None]:
    """Turn any library exception raised inside the block into a one-line :class:`InputError` on ``source``."""
    try:
        yield
    except InputError:
        raise
    except PermissionError:
        raise InputError(source, "permission denied (the file is not readable)") from None
    except LIBRARY_ERRORS as exc:
        if is_out_of_memory(exc):
            asked = requested_bytes(exc)
            if asked is not None and asked > physical_memory():  # a size no machine here has: a lying header
                raise InputError(source, f"{doing} (corrupt or truncated?): it asks for {asked:,} bytes, more than "
                                         "this machine's memory") from None
            raise MemoryError(f"{source}: {one_line(exc)}") from None  # not a damaged file: memory ran out
        raise InputError(source, f"{doing} (corrupt or truncated?): {one_line(exc)}") from None


def requested_bytes(exc: BaseException) -> int | None:
    """The size of the allocation that failed, where the message says it (Arrow's malloc, torch's allocator)."""
    found = re.search(r"(?:malloc of size|tried to allocate) (\d+)", str(exc))
    return int(found.group(1)) if found else None


def physical_memory() -> int:
    """Bytes of physical memory (a very large number where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` reports exhausted memory: ``MemoryError``, ``torch.OutOfMemoryError`` (GPU), torch's CPU
    allocator failing (a ``RuntimeError``), or an ``OSError`` with ENOMEM (a memory map refused)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOMEM
    return isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc)


def listing(keys: Sequence[str], limit: int = MAX_LISTED_KEYS) -> str:
    """``a, b, c`` — or the first ``limit`` keys and how many more."""
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, … and {len(keys) - limit} more"


def choose_key(where: str, shapes: Mapping[str, tuple[int, ...]], key: str | None, *, what: str = "array",
               ndim: int | None = None) -> str:
    """The entry to read among ``shapes`` (key → shape).

    With a key, it must exist. Without one, the only entry is taken; when ``ndim`` is given, the only entry of
    that many dimensions is taken (a file holding one (2, N, D) stack among other arrays).
    """
    if key is not None:
        if key not in shapes:
            raise InputError(where, f"no {what} named '{key}' (available: {listing(list(shapes))})")
        return key
    if len(shapes) == 1:
        return next(iter(shapes))
    if ndim is not None:
        fitting = [name for name, shape in shapes.items() if len(shape) == ndim]
        if len(fitting) == 1:
            return fitting[0]
    if not shapes:
        raise InputError(where, f"holds no {what}s to read")
    raise InputError(where, f"holds {len(shapes)} {what}s; name one as {where}:KEY "
                            f"(available: {listing(list(shapes))})")
