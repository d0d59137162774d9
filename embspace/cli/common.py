"""What every subcommand shares: the typer app, the consoles and the one-line failure.

Every failure the user can cause or meet ends in one line on stderr (``error: …``) and a non-zero exit code, never
a traceback: :func:`fail` for the problems a command finds itself, and the app's group class for what escapes a
command — bad input (:class:`~embspace.errors.InputError`, exit 2), a usage error on the command line (unknown
option or command, missing argument, bad option value: exit 2, with the ``--help`` to see), running out of host or
GPU memory (exit 2: the input is too large for the memory at hand) and a full or read-only disk (exit 1).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from embspace.errors import InputError, ascii_text, printable

INPUT_EXIT = 2
"""Exit code of bad input, including input too large for the memory available."""
DISK_EXIT = 1
"""Exit code when an output cannot be written: disk full, quota exceeded, read-only file system."""
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def memory_message(exc: BaseException, command: str | None) -> str:
    """One line for an out-of-memory error, host (``MemoryError``) or GPU (``torch.OutOfMemoryError``)."""
    from embspace.io.common import one_line  # imported here: embspace.io pulls in torch (start-up of --help)

    where = "GPU" if type(exc).__name__ == "OutOfMemoryError" else "host"
    tried = re.search(r"tried to allocate (\d+) bytes", str(exc))
    if tried:  # torch's CPU allocator
        detail = f"an allocation of {int(tried.group(1)) / 2**20:,.0f} MiB failed"
    else:
        detail = f"{type(exc).__name__}: {one_line(exc)}" if str(exc) else type(exc).__name__
    doing = f"embspace {command}" if command else "embspace"
    return (f"out of {where} memory in {doing}: the input is too large for the memory available "
            f"({detail}); free memory, or give fewer rows or a smaller batch / tile")


UsageError: type[Exception] = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
"""Click's usage error (unknown option, missing argument, bad value): from the copy of click that typer uses (its own
``typer._click`` in recent typer, ``click`` before), found through typer's public ``BadParameter``."""


def usage_message(exc: Exception, ctx: typer.Context | None = None) -> str:
    """One line for a command-line usage error, with where to look: ``no such option: --foo (see embspace measure
    --help)``."""
    text = " ".join(part.strip() for part in exc.format_message().splitlines() if part.strip()) or "bad usage"
    if len(text) > 1 and text[0].isupper() and text[1].islower():  # click's "No such option" → "no such option"
        text = text[0].lower() + text[1:]
    text = text.removesuffix(".")
    where = getattr(exc, "ctx", None)
    if where is not None:
        text += f" (see {_command_path(where)} --help)"
    elif ctx is not None:  # the subcommand's parser did not say which command: the one being started
        text += f" (see {' '.join(filter(None, [_command_path(ctx), ctx.invoked_subcommand]))} --help)"
    return text


def _command_path(ctx: typer.Context) -> str:
    """``embspace SUBCOMMAND``, whatever the program was started as (``python -m embspace.cli``, a test runner)."""
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    names[-1] = "embspace"
    return " ".join(reversed([name for name in names if name]))


def _is_help(exc: Exception) -> bool:
    """``embspace`` alone shows the help through a usage error (click ≥ 8.2); that stays the help."""
    return type(exc).__name__ == "NoArgsIsHelpError"


class _Group(TyperGroup):
    """Turns what escapes a subcommand — bad input, out of memory, a usage error — into one line: exit code 2 (1 for
    a full or read-only disk)."""

    def make_context(self, info_name: str | None, args: list[str], parent: typer.Context | None = None,
                     **extra: Any) -> typer.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:  # an unknown option or a bad value before the subcommand's name
            if _is_help(exc):
                raise
            _print_error(usage_message(exc))
            raise typer.Exit(INPUT_EXIT) from None

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # an unknown command, or a subcommand's unknown option, missing argument, bad value
            if _is_help(exc):
                raise
            _print_error(usage_message(exc, ctx))
            raise typer.Exit(INPUT_EXIT) from None
        except InputError as exc:
            _print_error(flag_message(exc))
            raise typer.Exit(INPUT_EXIT) from None
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
                target = f"{exc.filename}: " if exc.filename else ""
                _print_error(f"{target}cannot write: {exc.strerror}; nothing half-written was left "
                             "(outputs are written atomically)")
                raise typer.Exit(DISK_EXIT) from None
            if isinstance(exc, typer.Exit):  # --help, or a command's own exit code
                raise
            from embspace.io.common import is_out_of_memory

            if not is_out_of_memory(exc):
                raise
            _print_error(memory_message(exc, ctx.invoked_subcommand))
            raise typer.Exit(INPUT_EXIT) from None


class _AsciiStream:
    """A text stream whose encoding cannot show the symbols embspace prints (``LC_ALL=C``,
    ``PYTHONIOENCODING=ascii``): what is written is spelled in ASCII (:func:`~embspace.errors.ascii_text`) instead
    of failing; everything else is the wrapped stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(ascii_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _usable(stream: Any, mode: str) -> Any:
    """The process's stdout / stderr as the commands can use it: a closed one (``>&-``; Python then holds None)
    becomes the null device, one that cannot encode '×' spells its output in ASCII."""
    if stream is None:
        return open(os.devnull, mode, encoding="utf-8")
    try:
        "×→α—…".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return _AsciiStream(stream)
    return stream


_MPL_BACKENDS = {"gtk3agg", "gtk3cairo", "gtk4agg", "gtk4cairo", "macosx", "nbagg", "notebook", "qtagg", "qtcairo",
                 "qt5agg", "qt5cairo", "tkagg", "tkcairo", "webagg", "wx", "wxagg", "wxcairo", "agg", "cairo", "pdf",
                 "pgf", "ps", "svg", "template", "inline"}


def _drawable_backend() -> None:
    """The commands draw into files only: a ``MPLBACKEND`` that matplotlib would reject (a typo, a backend of
    another machine) gives way to ``agg`` instead of stopping ``embspace plot`` with matplotlib's traceback."""
    import importlib.util

    chosen = os.environ.get("MPLBACKEND")
    if chosen is None or chosen.lower() in _MPL_BACKENDS:
        return
    module = chosen.removeprefix("module://") if chosen.startswith("module://") else ""
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        os.environ["MPLBACKEND"] = "agg"


_drawable_backend()
sys.stdout = _usable(sys.stdout, "w")
sys.stderr = _usable(sys.stderr, "w")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=_Group,
                  help="Measure and compare the geometry of embedding spaces (CLIP and its kin).")
# Piped or redirected output is not cut to 80 columns (tables never pad to the width); a terminal keeps its own.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "metrics", "device", "precision", "backend", "estimate", "sample_above", "pairs", "queries", "memory", "t", "alpha",
    "step", "steps", "step_pattern", "unit", "names", "drop_invalid", "resamples", "seed", "confidence", "subsample",
    "loss", "head", "dim", "epochs", "batch_size", "lr", "weight_decay", "eval_fraction", "resume", "labels", "method",
    "lam", "center", "rmg_floor", "alpha_req_fit", "alpha_req_range",
)} | {"loss_options": "--loss-option", "templates": "--each", "specs": "", "modalities": ""}
"""The API's parameter names (what an :class:`~embspace.errors.InputError` names) → the flags of this CLI ("": the
positional specs, shown without a name)."""
_MENTION = re.compile(r"\b(" + "|".join(sorted(FLAGS, key=len, reverse=True)) + r")=(True\b|(?=[\s,;:)]|$))")
_VALUED = ("backend", "device", "precision", "estimate")  # "backend=triton: …" names the flag and its value


def flag_message(exc: InputError) -> str:
    """The one line of an API error, its API parameter names written as flags: ``step_pattern: invalid …`` →
    ``--step-pattern: invalid …``, and ``give steps=`` or ``pass drop_invalid=True`` in the text → ``--steps``,
    ``--drop-invalid`` (a spec such as ``pairs=a.npy`` is left as it is)."""
    where, problem = exc.where, exc.problem
    name, sep, value = where.partition("=")
    if where in FLAGS:
        where = FLAGS[where]
    elif sep and name in _VALUED:
        where = f"{FLAGS[name]} {value}"
    problem = _MENTION.sub(lambda m: FLAGS[m.group(1)] or m.group(1), problem)
    return f"{where}: {problem}" if where else problem


def _print_error(message: str) -> None:
    line = Text("error:", style="bold red")
    line.append(" " + printable(str(message)))
    err.print(line, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print ``error: MESSAGE`` (plain text: brackets are not markup, control characters are escaped) on one
    line of stderr and exit with code 2."""
    _print_error(message)
    raise typer.Exit(INPUT_EXIT)


def check_out_folder(out_dir: Path | None, missing: str, inputs: Iterable[str | os.PathLike[str]] = (),
                     writes: Iterable[str] = ()) -> Path:
    """The output folder of a command that writes several files: required (``missing`` says why), a folder if it
    exists, inside an existing folder, writable, and holding no input under a name it writes (``writes``: names or
    glob patterns); refused before any work is done (:func:`embspace.io.atomic.resolve_folder`)."""
    from embspace.io.atomic import resolve_folder
    from embspace.io.spec import spec_paths

    if out_dir is None:
        fail(missing)
    try:
        return resolve_folder(out_dir, spec_paths(inputs), writes)
    except InputError as exc:
        fail(str(exc))


def check_writable(path: Path | None, inputs: Iterable[str | os.PathLike[str]] = (), *,
                   regular: bool = False) -> None:
    """Refuse, before any work is done, an output path that cannot be written or that would destroy an input (the
    specs or paths ``inputs`` name, or a file already read): :func:`embspace.io.atomic.resolve_output`. ``-`` is
    standard output."""
    from embspace.io.atomic import resolve_output
    from embspace.io.spec import spec_paths

    if path is None or str(path) == "-":
        return
    try:
        resolve_output(path, spec_paths(inputs), regular=regular)
    except InputError as exc:
        fail(str(exc))
