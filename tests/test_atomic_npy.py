"""``atomic_npy``: an .npy filled in place through a memory map appears whole or not at all (``embspace shift``).

The file must equal what :func:`numpy.save` writes for the same array, byte for byte; an error inside the block, a
SIGKILL while filling it and a file system that refuses to name the anonymous file must leave no file behind (the
named-temporary fallback may leave nothing either when the error is raised in-process).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embspace.io.atomic as atomic
from embspace.io.atomic import atomic_npy

ROOT = Path(__file__).resolve().parents[1]


def saved(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture(params=["anonymous", "named"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "anonymous" and not atomic._O_TMPFILE:
        pytest.skip("no O_TMPFILE on this system")
    if request.param == "named":
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    return request.param


@pytest.mark.parametrize(("shape", "dtype"), [((2, 37, 5), np.float32), ((3, 4), np.float64), ((0, 8), np.float32),
                                              ((7,), np.dtype(">f2"))])
def test_the_file_is_what_numpy_save_writes(tmp_path: Path, write_path: str, shape: tuple, dtype) -> None:
    want = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    with atomic_npy(tmp_path / "a.npy", shape, dtype) as array:
        assert array.shape == shape and array.dtype == np.dtype(dtype) and not array.any()
        array[...] = want
        assert not (tmp_path / "a.npy").exists()  # nothing visible before the block ends
    assert (tmp_path / "a.npy").read_bytes() == saved(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o666 & ~atomic._umask()


def test_an_error_leaves_the_old_file_and_nothing_else(tmp_path: Path, write_path: str) -> None:
    (tmp_path / "a.npy").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_npy(tmp_path / "a.npy", (4, 3), np.float32) as a:
        a[:2] = 1
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    assert (tmp_path / "a.npy").read_bytes() == b"old"


def test_unnameable_anonymous_file_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where linking the O_TMPFILE file fails (no /proc), its content goes through a named temporary file."""
    if not atomic._O_TMPFILE:
        pytest.skip("no O_TMPFILE on this system")

    def refuse(fd: int, name: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic, "_link_anonymous", refuse)
    monkeypatch.setattr(atomic, "_COPY_BLOCK", 1000)  # several blocks
    want = np.arange(2 * 300 * 7, dtype=np.float32).reshape(2, 300, 7)
    with atomic_npy(tmp_path / "a.npy", want.shape, np.float32) as array:
        array[...] = want
    assert (tmp_path / "a.npy").read_bytes() == saved(want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


KILLED_WHILE_FILLING = """
import os, signal, sys
import numpy as np
from embspace.io.atomic import atomic_npy
with atomic_npy(sys.argv[1], (2, 1000, 64), np.float32) as array:
    array[0] = 1.0
    array.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not atomic._O_TMPFILE, reason="the anonymous file needs O_TMPFILE (Linux)")
def test_a_kill_while_filling_leaves_nothing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_WHILE_FILLING, str(tmp_path / "shifted.npy")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert os.listdir(tmp_path) == []
