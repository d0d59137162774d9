"""Every case of the bad-input corpus (tests/bad_inputs.py) through every entry point it concerns.

Each must end in one line (``error: …`` on stderr from the CLI, a one-line :class:`InputError` from the Python API)
holding the case's expected fragment, exit code 2, no traceback, nothing written, every input byte-identical
(sha256 before and after), and no code from a file run (the sentinel file never appears). The CLI runs in-process
through typer's CliRunner; a handful of cases also run as real subprocesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import embspace
import embspace.finetune as finetune_package
import embspace.io.common
from embspace.cli import app
from embspace.errors import InputError
from tests import bad_inputs
from tests.bad_inputs import FINETUNE, MEASURE, REPORT, SENTINEL, Case

ROOT = Path(__file__).resolve().parents[1]


def _reads_anything() -> bool:
    """Whether this process reads files whatever their permissions (root with CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as probe:
        os.chmod(probe.name, 0)
        return os.access(probe.name, os.R_OK)


IS_ROOT = _reads_anything()
FINETUNE_ARGS = ("--epochs", "1", "--batch-size", "8", "--resamples", "10", "--metrics", "gap", "--dim", "4", "-q")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case], dict[str, str]]:
    root = tmp_path_factory.mktemp("corpus")
    cases = bad_inputs.build(root)
    yield root, cases, digests(root)
    for path in root.rglob("*"):  # let pytest clean up what the permission cases locked
        with contextlib.suppress(OSError):
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)


def digests(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (mode and size for the ones this user cannot read)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except PermissionError:
            stat = path.stat()
            out[str(path)] = f"unreadable {stat.st_mode:o} {stat.st_size}"
    return out


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """A reader that blocks (on a fifo, say) fails the test instead of hanging the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 60 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def permissions_as_user(case: Case, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fragment to expect. Root reads any file: for the permission cases, let the readers see what a normal
    user would (without root, or as root without CAP_DAC_OVERRIDE, the files are really unreadable and nothing is
    simulated)."""
    if IS_ROOT and case.name.startswith("unreadable"):
        locked = Path(case.inputs[0].split("=", 1)[1])
        real = embspace.io.common.is_readable
        monkeypatch.setattr(embspace.io.common, "is_readable",
                            lambda path: False if Path(path) == locked else real(path))
        expected = "permission denied"
    else:
        expected = case.expected
    yield expected


def one_error_line(result, expected: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert expected in lines[0], (expected, lines[0])
    return lines[0]


def check_untouched(root: Path, before: dict[str, str], out: Path) -> None:
    assert digests(root) == before
    assert not (root / SENTINEL).exists(), "code from an input file ran"
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))


def _entries() -> dict[str, tuple[str, ...]]:
    """Each case's entry points (known once it is built: built here once, into a scratch folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        cases = bad_inputs.build(Path(scratch))
        for path in Path(scratch).rglob("*"):
            with contextlib.suppress(OSError):
                if not path.is_symlink():
                    path.chmod(0o700 if path.is_dir() else 0o600)
    return {name: case.entries for name, case in cases.items()}


ENTRIES = _entries()


def _cases_for(entry: str) -> list[str]:
    return [name for name, entries in ENTRIES.items() if entry in entries]


MEASURE_CASES = _cases_for(MEASURE)
FINETUNE_CASES = _cases_for(FINETUNE)
REPORT_CASES = _cases_for(REPORT)


def test_the_corpus_covers_every_reader_and_entry_point() -> None:
    assert len(MEASURE_CASES) >= 120 and len(FINETUNE_CASES) >= 110 and len(REPORT_CASES) >= 15
    names = " ".join(MEASURE_CASES)
    for fmt in bad_inputs.FORMATS:
        assert f"truncated{fmt}" in names and f"garbage{fmt}" in names
    for needle in ("pickle", "pt-runs-code", "object-array", "npy-header", "safetensors-header", "parquet-ragged",
                   "feather-null", "nan", "zero-rows", "one-row", "zero-dims", "pairs-rows-differ", "fifo",
                   "directory", "unreadable", "odd-name", "clip-folder"):
        assert needle in names, needle


@pytest.mark.parametrize("name", MEASURE_CASES)
def test_measure_cli_and_api(corpus, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cases, before = corpus
    case = cases[name]
    out = tmp_path / "out"
    out.mkdir()
    with permissions_as_user(case, monkeypatch) as expected:
        result = CliRunner().invoke(app, ["measure", *case.inputs, "--json", str(out / "report.json"), "-q"])
        one_error_line(result, expected)
        with pytest.raises(InputError) as caught:
            embspace.measure(embspace.load(*case.inputs), metrics="gap,uniformity,cone,retrieval")
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message and expected in message, message
    check_untouched(root, before, out)


def _repeat(option: str, values: list[str]) -> list[str]:
    return [item for value in values for item in (option, value)]


def other_entries(case: Case, out: Path, report: Path) -> dict[str, list[str]]:
    """Other commands that read dumps: the training-free shift and compare's bootstrap data."""
    specs = list(case.inputs)
    return {
        "shift": ["shift", *specs, "--out", str(out / "shifted.npy"), "--json", str(out / "r.json")],
        "compare --data-before": ["compare", str(report), str(report), *_repeat("--data-before", specs),
                                  *_repeat("--data-after", specs), "--json", str(out / "c.json")],
    }


@pytest.mark.parametrize("name", MEASURE_CASES)
def test_shift_and_compare_data(corpus, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One line, exit 2, nothing written. A single dump is refused by these paired commands either for what is wrong
    with it or for being single: the fragment is checked on paired cases."""
    root, cases, before = corpus
    case = cases[name]
    out = tmp_path / "out"
    out.mkdir()
    paired = len(case.inputs) == 2 or case.inputs[0].startswith("pairs=")
    with permissions_as_user(case, monkeypatch) as expected:
        for entry, args in other_entries(case, out, root / "good_report.json").items():
            result = CliRunner().invoke(app, args)
            line = one_error_line(result, "")
            if paired:
                assert expected in line, (entry, expected, line)
    check_untouched(root, before, out)


@pytest.mark.parametrize("name", MEASURE_CASES)
def test_plot_map(corpus, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cases, before = corpus
    case = cases[name]
    out = tmp_path / "out"
    out.mkdir()
    with permissions_as_user(case, monkeypatch) as expected:
        result = CliRunner().invoke(app, ["plot", "map", *case.inputs, "--out", str(out / "map.png")])
    line = one_error_line(result, "")
    if len(case.inputs) == 2 or case.inputs[0].startswith("pairs="):
        assert expected in line, (expected, line)
    check_untouched(root, before, out)


@pytest.mark.parametrize("name", ["nan-rows", "zero-norm-rows", "pairs-rows-differ", "one-row", "zero-dims"])
def test_finetune_api(corpus, name: str, tmp_path: Path) -> None:
    """``embspace.finetune.fit`` on arrays (what a notebook passes): the same one-line refusals, nothing written."""
    import numpy as np

    root, cases, before = corpus
    case = cases[name]
    arrays = [np.load(spec.split("=", 1)[1]) for spec in case.inputs]
    if len(arrays) == 1:
        arrays.append(np.ones_like(arrays[0]))
    with pytest.raises(InputError) as caught:
        finetune_package.fit(tuple(arrays), tuple(arrays), out=tmp_path / "run")
    assert "\n" not in str(caught.value) and case.expected.split(": ")[-1] in str(caught.value), str(caught.value)
    assert not (tmp_path / "run").exists()
    check_untouched(root, before, tmp_path / "run")


@pytest.mark.parametrize("name", FINETUNE_CASES)
def test_finetune_cli(corpus, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cases, before = corpus
    case = cases[name]
    out = tmp_path / "out"
    out.mkdir()
    with permissions_as_user(case, monkeypatch) as expected:
        result = CliRunner().invoke(app, ["finetune", *case.inputs, "--out", str(out / "run"), *FINETUNE_ARGS])
        one_error_line(result, expected)
    check_untouched(root, before, out)


@pytest.mark.parametrize("name", REPORT_CASES)
def test_compare_and_plot(corpus, name: str, tmp_path: Path) -> None:
    root, cases, before = corpus
    case = cases[name]
    bad, good = case.inputs
    out = tmp_path / "out"
    out.mkdir()
    runner = CliRunner()
    one_error_line(runner.invoke(app, ["compare", bad, good, "--json", str(out / "c.json")]), case.expected)
    one_error_line(runner.invoke(app, ["compare", good, bad]), case.expected)
    with pytest.raises(InputError) as caught:
        embspace.compare(bad, good)
    assert "\n" not in str(caught.value) and case.expected in str(caught.value)
    one_error_line(runner.invoke(app, ["plot", "plane", bad, good, "--out", str(out / "fig.png")]), case.expected)
    check_untouched(root, before, out)


# a few cases as real processes: the exit code, stderr and a clean process end as the user sees them
SUBPROCESS_CASES = ["pt-runs-code-zip", "npy-header-is-code", "fifo-as-file", "odd-name-newline",
                    "npz-compressed-header-lies"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_as_a_real_process(corpus, name: str, tmp_path: Path) -> None:
    root, cases, before = corpus
    case = cases[name]
    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", *case.inputs, "--json",
                           str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.expected in lines[0], done.stderr
    assert not (tmp_path / "r.json").exists()
    check_untouched(root, before, tmp_path / "none")


# ---- resource limits: running out of memory is one line and exit code 2, never a traceback ------------------------


def _raiser(exc: BaseException):
    def raise_it(*args, **kwargs):
        raise exc

    return raise_it


MEMORY_ERRORS = {
    "MemoryError": (MemoryError(), "out of host memory"),
    "torch CPU allocator": (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                                         "allocate memory: you tried to allocate 40000000000 bytes."),
                            "an allocation of 38,147 MiB failed"),
    "CUDA out of memory": (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
                           "out of GPU memory"),
}


@pytest.mark.parametrize("kind", sorted(MEMORY_ERRORS))
@pytest.mark.parametrize("command", ["measure", "finetune", "compare"])
def test_out_of_memory_anywhere_is_one_line(corpus, kind: str, command: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, before = corpus
    exc, expected = MEMORY_ERRORS[kind]
    good = str(root / "good.npy")
    if command == "measure":
        monkeypatch.setattr(embspace, "measure", _raiser(exc))
        args = ["measure", f"image={good}", "--json", str(tmp_path / "out" / "r.json")]
    elif command == "finetune":
        monkeypatch.setattr(finetune_package, "fit", _raiser(exc))
        args = ["finetune", f"image={good}", f"text={good}", "--out", str(tmp_path / "out" / "run"), *FINETUNE_ARGS]
    else:
        monkeypatch.setattr(embspace, "compare", _raiser(exc))
        report = str(root / "good_report.json")
        args = ["compare", report, report, "--json", str(tmp_path / "out" / "c.json")]
    (tmp_path / "out").mkdir()
    line = one_error_line(CliRunner().invoke(app, args), expected)
    assert f"in embspace {command}:" in line and "too large for the memory available" in line
    check_untouched(root, before, tmp_path / "out")


def test_memory_map_refused_is_out_of_memory_not_corrupt(corpus, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader whose memory map fails with ENOMEM says memory, not "corrupt or truncated"."""
    import errno

    import numpy as np

    root, _, before = corpus
    monkeypatch.setattr(np, "memmap", _raiser(OSError(errno.ENOMEM, "Cannot allocate memory")))
    with pytest.raises(MemoryError, match=r"good\.npy"):
        embspace.load(f"image={root / 'good.npy'}")
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(app, ["measure", f"image={root / 'good.npy'}", "--json", str(tmp_path / "out" / "r")])
    one_error_line(result, "out of host memory in embspace measure")
    check_untouched(root, before, tmp_path / "out")


LIMITED = """
import resource, sys
from embspace.cli import main
import embspace.measure  # the command's own modules (torch) are mapped before the limit: the CLI imports them lazily
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
limit = size + int(sys.argv[1])  # address space: what is mapped now plus a little
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["embspace", *sys.argv[2:]]
main()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_real_memory_pressure_in_a_process(tmp_path: Path) -> None:
    """A 250 kB .npz that holds 256 MiB of float32 zeros, read with 150 MiB of address space to spare."""
    import zipfile

    import numpy as np

    shape = (1 << 20, 64)  # 256 MiB: 16 chunks of 16 MiB
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(tmp_path / "big.npz", "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("x.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = bytes(16 << 20)
        for _ in range(shape[0] * shape[1] * 4 // len(chunk)):
            member.write(chunk)
    digest = hashlib.sha256((tmp_path / "big.npz").read_bytes()).hexdigest()
    done = subprocess.run([sys.executable, "-c", LIMITED, str(150 << 20), "measure", f"image={tmp_path / 'big.npz'}",
                           "--metrics", "cone", "--json", str(tmp_path / "r.json")], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: out of host memory in embspace measure"), done.stderr
    assert not (tmp_path / "r.json").exists()
    assert hashlib.sha256((tmp_path / "big.npz").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT", "EROFS"])
def test_a_full_disk_is_one_line(corpus, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fine-tuning writes as it goes: a disk that fills up mid-run ends in one line and exit code 1."""
    import errno

    root, _, before = corpus
    number = getattr(errno, code)
    monkeypatch.setattr(finetune_package, "fit", _raiser(OSError(number, os.strerror(number),
                                                                 str(tmp_path / "run" / "checkpoint.pt"))))
    good = str(root / "good.npy")
    result = CliRunner().invoke(app, ["finetune", f"image={good}", f"text={good}", "--out", str(tmp_path / "run"),
                                      *FINETUNE_ARGS])
    assert result.exit_code == 1, (result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'run' / 'checkpoint.pt'}: cannot write: {os.strerror(number)}; nothing "
                     "half-written was left (outputs are written atomically)"], result.stderr
    check_untouched(root, before, tmp_path / "none")
