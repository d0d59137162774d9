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
import json
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
    """A reader whose memory map (or, for the rows of a C-order .npy, read with pread, whose read) fails with
    ENOMEM says memory, not "corrupt or truncated"."""
    import errno

    import numpy as np

    root, _, before = corpus
    monkeypatch.setattr(np, "memmap", _raiser(OSError(errno.ENOMEM, "Cannot allocate memory")))
    monkeypatch.setattr(os, "preadv", _raiser(OSError(errno.ENOMEM, "Cannot allocate memory")))
    with pytest.raises(MemoryError, match=r"good\.npy"):
        embspace.measure(embspace.load(f"image={root / 'good.npy'}"), metrics="cone")
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
    """A 250 kB .npz that holds 256 MiB of float32 ones, read with 150 MiB of address space to spare: the member
    is streamed through the O(N·D) pass (cone alone ends with a report), and holding its rows for a pairwise
    family (sampled uniformity) runs out of memory."""
    import zipfile

    import numpy as np

    shape = (1 << 20, 64)  # 256 MiB: 16 chunks of 16 MiB
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(tmp_path / "big.npz", "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("x.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = np.ones(4 << 20, dtype="<f4").tobytes()  # ones: valid rows (zeros would be refused as zero-norm)
        for _ in range(shape[0] * shape[1] * 4 // len(chunk)):
            member.write(chunk)
    digest = hashlib.sha256((tmp_path / "big.npz").read_bytes()).hexdigest()
    streamed = subprocess.run([sys.executable, "-c", LIMITED, str(150 << 20), "measure",
                               f"image={tmp_path / 'big.npz'}", "--metrics", "cone", "--json",
                               str(tmp_path / "c.json")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert streamed.returncode == 0, streamed.stderr
    assert json.loads((tmp_path / "c.json").read_text())["metrics"]["cone"]["image"] == pytest.approx(1.0)
    done = subprocess.run([sys.executable, "-c", LIMITED, str(150 << 20), "measure", f"image={tmp_path / 'big.npz'}",
                           "--metrics", "cone,uniformity", "--json", str(tmp_path / "r.json")], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
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


# ---- finetune --resume from a damaged or code-bearing checkpoint: one line, exit 2, no code run --------------------


def test_finetune_resume_from_every_damaged_checkpoint(corpus, tmp_path: Path) -> None:
    root, _, before = corpus
    good = str(root / "good.npy")
    args = ["finetune", f"image={good}", f"text={good}", *FINETUNE_ARGS]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "valid")])
    assert result.exit_code == 0, (result.stderr, result.exception)
    folders = bad_inputs.checkpoints(tmp_path, (tmp_path / "valid" / "checkpoint.pt").read_bytes())
    assert len(folders) >= 15
    for name, folder in folders.items():
        saved = (folder / "checkpoint.pt").read_bytes()
        result = CliRunner().invoke(app, [*args, "--out", str(folder), "--resume"])
        if name == "zeroed-middle" and result.exit_code == 0:
            continue  # zeros over tensor data are numbers: the checkpoint still loads (it holds no checksum)
        line = one_error_line(result, "")
        assert "checkpoint.pt" in line or "eval_before.npy" in line, (name, line)
        assert (folder / "checkpoint.pt").read_bytes() == saved, name
        assert not (tmp_path / SENTINEL).exists(), f"{name}: code from the checkpoint ran"
    check_untouched(root, before, tmp_path / "none")


# ---- the process's surroundings: closed stdout, ASCII-only terminals, an unusable MPLBACKEND ------------------------


def _run(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "embspace.cli", *args], timeout=300, cwd=ROOT,
                          env={**os.environ, **(env or {})}, **kwargs)


ASCII_TERMINALS = [{"LC_ALL": "C", "PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C"},
                   {"PYTHONIOENCODING": "latin-1"}]


@pytest.mark.parametrize("env", ASCII_TERMINALS, ids=["ascii", "C-locale", "latin-1"])
def test_an_ascii_terminal_gets_the_report_and_an_ascii_table(corpus, env: dict[str, str], tmp_path: Path) -> None:
    """The JSON report is written first; the table degrades to ASCII (× → x, α → alpha), nothing fails. A file
    name that is not ASCII is escaped in the messages."""
    root, _, before = corpus
    odd = tmp_path / "ёмбед.npy"
    odd.write_bytes((root / "good.npy").read_bytes())
    done = _run(["measure", f"image={odd}", f"text={root / 'good.npy'}", "--metrics", "gap,separability", "-q",
                 "--json", str(tmp_path / "r.json")], env)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    encoding = env.get("PYTHONIOENCODING", "utf-8")  # Python runs the C locale in UTF-8 (PEP 538)
    done.stdout.decode(encoding)  # what the terminal can show
    text = done.stdout.decode(encoding)
    if encoding == "utf-8":
        assert "24 × 8" in text and "α=2" in text
    else:
        assert text.isascii() and "24 x 8" in text and "alpha=2" in text and "\\u043c" in text
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "embspace.report/1"
    failed = _run(["measure", f"image={odd}", "--metrics", "nothing"], env)
    assert failed.returncode == 2 and failed.stderr.decode(encoding).startswith("error: ")
    check_untouched(root, before, tmp_path / "none")


@pytest.mark.parametrize("command", ["measure", "compare", "plot"])
def test_a_closed_stdout_still_writes_the_outputs(corpus, command: str, tmp_path: Path) -> None:
    root, _, before = corpus
    report = str(root / "good_report.json")
    args = {"measure": ["measure", f"image={root / 'good.npy'}", "--metrics", "cone", "-q", "--json",
                        str(tmp_path / "out.json")],
            "compare": ["compare", report, report, "--json", str(tmp_path / "out.json")],
            "plot": ["plot", "map", f"image={root / 'good.npy'}", f"text={root / 'partner_nan-rows.npy'}", "--out",
                     str(tmp_path / "out.png")]}[command]
    done = _run(args, stdin=subprocess.DEVNULL, capture_output=False, stderr=subprocess.PIPE,
                preexec_fn=lambda: os.close(1))  # the shell's >&-
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert any(p.stem == "out" and p.stat().st_size > 0 for p in tmp_path.iterdir())
    check_untouched(root, before, tmp_path / "none")


@pytest.mark.parametrize("backend", ["bogus", "Qt9Agg", "module://no_such_backend", ""])
def test_an_unusable_mplbackend_does_not_stop_plot(corpus, backend: str, tmp_path: Path) -> None:
    root, _, before = corpus
    done = _run(["plot", "map", f"image={root / 'good.npy'}", f"text={root / 'partner_nan-rows.npy'}", "--out",
                 str(tmp_path / "f.png")], {"MPLBACKEND": backend})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    check_untouched(root, before, tmp_path / "none")


# ---- hangs and memory ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 17, 64])
@pytest.mark.parametrize("pairs", ["(2n)^2+1", 10**15, 10**30])
def test_more_pairs_than_the_exact_pass_has_terms_goes_exact(n: int, pairs, tmp_path: Path) -> None:
    import numpy as np

    from tests import reference as ref

    count = (2 * n) ** 2 + 1 if isinstance(pairs, str) else pairs
    x, y = bad_inputs.matrix(n, 8, seed=n), bad_inputs.matrix(n, 8, seed=n + 1)
    report = embspace.measure(image=x, text=y, metrics="uniformity", estimate="sampled", pairs=count,
                              precision="fp64")
    assert report.settings["estimate"]["method"] == "exact" and report.settings["estimate"]["requested"] == "sampled"
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(np.asarray(x, np.float64)), abs=1e-9)
    assert report.uncertainty["uniformity.image"]["method"] == "exact"


def test_up_to_the_exact_pass_size_stays_sampled() -> None:
    n = 17
    x, y = bad_inputs.matrix(n, 8, seed=1), bad_inputs.matrix(n, 8, seed=2)
    report = embspace.measure(image=x, text=y, metrics="uniformity", estimate="sampled", pairs=(2 * n) ** 2)
    assert report.settings["estimate"]["method"] == "sampled"


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000, 65_536])
def test_the_scan_finds_the_same_rows_in_any_chunking(chunk_rows: int) -> None:
    import numpy as np

    from embspace.embeddings import Embeddings
    from embspace.io.validate import scan

    rng = np.random.default_rng(chunk_rows)
    for dtype in (np.float16, np.float32, np.float64):
        data = rng.standard_normal((5000, 3)).astype(dtype)
        bad = rng.choice(5000, 60, replace=False)
        data[bad[:20], 1] = np.nan
        data[bad[20:30], 0] = np.inf
        data[bad[30:]] = 0
        data[bad[50:], 2] = -0.0
        found = scan(Embeddings.from_array(data), chunk_rows)
        np.testing.assert_array_equal(found.nonfinite, np.sort(bad[:30]))
        np.testing.assert_array_equal(found.zero, np.sort(bad[30:]))


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f2", ">f8"])
@pytest.mark.parametrize("stack", [False, True])
def test_a_compressed_member_is_streamed_not_held(dtype: str, stack: bool, tmp_path: Path) -> None:
    """Rows of a compressed .npz member come back exactly, in any order, holding about one read's rows at once."""
    import tracemalloc

    import numpy as np

    shape = (2, 40_000, 64) if stack else (80_000, 64)  # 20 MB of float32
    data = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    np.savez_compressed(tmp_path / "c.npz", x=data)
    loaded = embspace.load(f"{'pairs' if stack else 'image'}={tmp_path / 'c.npz'}")
    planes = [data[0], data[1]] if stack else [data]
    for embeddings, expected in zip(loaded.values(), planes, strict=True):
        tracemalloc.start()
        try:
            for start, stop in ((0, 1000), (30_000, 30_500), (10, 20), (39_000, 40_000)):
                block = embeddings.read(start, stop)
                native = expected[start:stop].astype(expected.dtype.newbyteorder("="))
                np.testing.assert_array_equal(block.numpy(), native)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 5_000_000, peak  # the member inflates to 10-20 MB; a read of 1,000 rows holds 0.5 MB


@pytest.mark.parametrize("change", ["truncate-to-half", "truncate-to-header", "truncate-to-0", "extend", "replace"])
@pytest.mark.parametrize("fmt", [".npy", ".npz", ".pt", ".safetensors", "stack.npy"])
def test_an_input_changed_while_read_is_named(change: str, fmt: str, tmp_path: Path) -> None:
    """Another process truncates, extends or replaces the file after it was opened: one line naming it, never a
    SIGBUS or half-read rows."""
    import numpy as np

    data = bad_inputs.matrix(2000, 16)
    if fmt == "stack.npy":
        path, spec = tmp_path / "s.npy", f"pairs={tmp_path / 's.npy'}"
        np.save(path, np.stack([data, data]))
    else:
        spec = "image=" + bad_inputs.write_valid(tmp_path / "d", data, fmt)
        path = Path(spec.split("=", 1)[1].split(":")[0])
    modalities = embspace.load(spec)
    raw = path.read_bytes()
    if change == "replace":
        other = tmp_path / "other"
        other.write_bytes(raw)
        other.replace(path)
    elif change == "extend":
        with open(path, "ab") as handle:
            handle.write(b"\0" * 4096)
    else:
        size = {"truncate-to-half": len(raw) // 2, "truncate-to-header": 128, "truncate-to-0": 0}[change]
        os.truncate(path, size)
    with pytest.raises(InputError, match="changed on disk while being read") as caught:
        embspace.measure(modalities, metrics="gap,uniformity,cone")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_an_input_truncated_while_read_in_a_real_process(tmp_path: Path) -> None:
    """The CLI: exit 2 and one line, the process never killed by SIGBUS (the file is cut while the run reads it)."""
    import numpy as np

    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(0).standard_normal((300_000, 64)).astype(np.float32))  # 77 MB
    cut = "import os, sys, time\ntime.sleep(float(sys.argv[2]))\nos.truncate(sys.argv[1], 4096)\n"
    cutter = subprocess.Popen([sys.executable, "-c", cut, str(path), "8"])
    done = _run(["measure", f"image={path}", "--metrics", "uniformity", "--estimate", "exact", "--memory", "64MB",
                 "-q"])  # rows streamed from the file, pass after pass, for minutes: the cut comes mid-run
    cutter.wait(60)
    assert done.returncode == 2, (done.returncode, done.stderr)  # -7 would be SIGBUS
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], lines
    assert "changed on disk while being read" in lines[0] or "truncated" in lines[0], lines  # cut before the open


# ---- valid input that must be read ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", bad_inputs.COLON_KEYS)
def test_keys_holding_colons_are_addressable(key: str, tmp_path: Path) -> None:
    import numpy as np

    for fmt, (path, data) in bad_inputs.colon_key_files(tmp_path, key).items():
        for spec in bad_inputs.spellings(path, key):
            (embeddings,) = embspace.load(f"image={spec}").values()
            np.testing.assert_array_equal(embeddings.to_tensor().numpy(), data, err_msg=f"{fmt} {spec}")
            result = CliRunner().invoke(app, ["measure", f"image={spec}", "--metrics", "cone", "-q"])
            assert result.exit_code == 0, (fmt, spec, result.stderr)


def test_the_key_syntax_is_documented() -> None:
    from embspace.io.spec import KEY_HELP

    result = CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "400"})
    assert "may hold ':'" in " ".join(result.stdout.split())
    assert KEY_HELP.split(";")[0] in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("order", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8", "<f4", "=f8"])
def test_non_native_byte_orders_through_the_api(order: str, dtype: str) -> None:
    import numpy as np

    native = bad_inputs.matrix(40, 6, seed=4).astype(np.float64)
    x = np.asarray(native, dtype=dtype, order="F" if order == "F" else "C")
    y = np.asarray(native[::-1] + 0.5, dtype=dtype)
    if order == "strided":
        x = np.asarray(np.repeat(native, 2, axis=0), dtype=dtype)[::2]
    want = embspace.measure(image=x.astype(x.dtype.newbyteorder("=")), text=y.astype(y.dtype.newbyteorder("=")),
                            metrics="gap,uniformity,cone", precision="fp64")
    got = embspace.measure(image=x, text=y, metrics="gap,uniformity,cone", precision="fp64")
    assert got.flat() == want.flat()
    assert finetune_package.fit((x, y), (x, y), config=finetune_package.FitConfig(epochs=1, dim=4, batch_size=8,
                                                                                   eval_metrics="gap"),
                                resamples=10).comparison is not None
