"""Outputs never destroy a file: every command and writer through every kind of alias, device and unwritable target.

The cases are generated (tests/bad_inputs.py ``alias_paths`` and ``unwritable_paths``) and crossed with every
command that writes: ``measure --json``, ``compare --json``, ``shift --out`` / ``--json``, ``plot --out``,
``finetune --out`` (a folder holding its own input under a name a run writes) and the Python writers
(``Report.to_json``, ``atomic_write_text`` after a load). A refusal is one line, exit code 2, before any work
starts (loading, measuring, comparing and fitting are replaced by functions that fail the test if called), and
every file — inputs, links, folders — is left byte for byte and link for link as it was. Devices and FIFOs are
written through; a symbolic link's target is replaced and the link stays.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import embspace
import embspace.finetune as finetune_package
import embspace.io.atomic as atomic
from embspace.cli import app
from embspace.errors import InputError
from embspace.finetune.checkpoint import RUN_FILES
from tests import bad_inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    x, y = bad_inputs.matrix(24, 8, seed=1), bad_inputs.matrix(24, 8, seed=2)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    np.save(root / "stack.npy", np.stack([x, y]))
    embspace.measure(image=x, text=y, metrics="gap,uniformity").to_json(root / "r1.json")
    embspace.measure(image=y, text=x, metrics="gap,uniformity").to_json(root / "r2.json")
    return {"root": root, "x": root / "x.npy", "y": root / "y.npy", "stack": root / "stack.npy",
            "r1": root / "r1.json", "r2": root / "r2.json"}


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a file's sha256, a link's target, a folder, a socket or FIFO as such."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[str(path)] = "folder"
        elif stat.S_ISREG(path.lstat().st_mode):
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[str(path)] = oct(path.lstat().st_mode)
    return out


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any loading, measuring, comparing or fitting fails the test: refusals must come first."""

    def started(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    for name in ("load", "measure", "compare", "load_sample", "measure_trajectory"):
        monkeypatch.setattr(embspace, name, started)
    monkeypatch.setattr(finetune_package, "fit", started)


def refused(args: list[str], fragment: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# every command that writes a file, with the input its output may alias: (input key, suffix, args for OUTPUT)
COMMANDS = {
    "measure --json": ("x", None, lambda f, out: ["measure", f"image={f['x']}", f"text={f['y']}", "--json", out]),
    "measure --json (2nd input)": ("y", None, lambda f, out: ["measure", f"image={f['x']}", f"text={f['y']}",
                                                              "--json", out]),
    "compare --json": ("r1", None, lambda f, out: ["compare", str(f["r1"]), str(f["r2"]), "--json", out]),
    "compare --json (data)": ("stack", None, lambda f, out: [
        "compare", str(f["r1"]), str(f["r2"]), "--data-before", f"pairs={f['stack']}", "--data-after",
        f"pairs={f['stack']}", "--json", out]),
    "shift --out": ("stack", ".npy", lambda f, out: ["shift", f"pairs={f['stack']}", "--out", out]),
    "shift --json": ("stack", None, lambda f, out: ["shift", f"pairs={f['stack']}", "--out",
                                                    str(f["root"] / "new_shifted.npy"), "--json", out]),
    "plot --out": ("r1", ".png", lambda f, out: ["plot", "plane", str(f["r1"]), "--out", out]),
    "plot map --out": ("stack", ".png", lambda f, out: ["plot", "map", f"pairs={f['stack']}", "--out", out]),
}
ALIASES = ("same-path", "dot-spelling", "dotdot-spelling", "symlink", "symlink-chain", "hardlink", "symlinked-folder")
UNWRITABLE = ("parent-is-a-file", "is-a-folder", "socket", "read-only-file-system", "sys-file-system")


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_that_is_an_input_is_refused_before_the_work(files, command: str, alias: str, no_work) -> None:
    key, suffix, args = COMMANDS[command]
    paths = bad_inputs.alias_paths(files["root"], files[key], suffix)
    if alias not in paths:
        pytest.skip(f"{alias} cannot end in {suffix}")  # the command refuses the suffix first
    before = snapshot(files["root"])
    refused(args(files, str(paths[alias])), "writing here would destroy it")
    assert snapshot(files["root"]) == before


@pytest.mark.parametrize("kind", UNWRITABLE)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unwritable_output_is_refused_before_the_work(files, command: str, kind: str, no_work) -> None:
    _, suffix, args = COMMANDS[command]
    target, fragment = bad_inputs.unwritable_paths(files["root"], suffix or ".json")[kind]
    before = snapshot(files["root"])
    refused(args(files, str(target)), fragment)
    assert snapshot(files["root"]) == before


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"plot --out", "shift --json"}))  # (no plane to draw;
# an --out beside the inputs)
def test_missing_parent_folders_of_an_output_are_created(files, command: str) -> None:
    """Like ``measure --out`` and ``finetune --out``, every output creates the folders on its way."""
    _, suffix, args = COMMANDS[command]
    target = files["root"] / f"new-{command.replace(' ', '-')}" / "deeper" / f"out{suffix or '.json'}"
    done = subprocess.run([sys.executable, "-m", "embspace.cli", *args(files, str(target))], capture_output=True,
                          text=True, timeout=300)  # a process of its own: this one's record of files read stays
    assert done.returncode == 0, done.stderr
    assert target.is_file() and target.stat().st_size > 0


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_read_only_file_is_refused_before_the_work(files, command: str, no_work,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Root writes any file: the permission is simulated where this process would have it anyway."""
    _, suffix, args = COMMANDS[command]
    locked = files["root"] / f"locked{suffix or '.json'}"
    locked.write_text("keep me")
    locked.chmod(0o444)
    real = atomic.is_writable
    monkeypatch.setattr(atomic, "is_writable", lambda path: False if Path(path) == locked else real(path))
    refused(args(files, str(locked)), "permission denied")
    assert locked.read_text() == "keep me"


def test_two_outputs_of_one_command_must_differ(files, no_work) -> None:
    out = files["root"] / "both.npy"
    refused(["shift", f"pairs={files['stack']}", "--out", str(out), "--json", str(out)], "another output")
    assert not out.exists()


@pytest.mark.parametrize("name", [n for n in RUN_FILES if "*" not in n] + ["epoch_3.json"])
@pytest.mark.parametrize("spelling", ["same", "dot", "symlinked"])
def test_finetune_out_holding_its_own_input_is_refused(files, name: str, spelling: str, no_work) -> None:
    run = files["root"] / f"run_{spelling}_{name.replace('.', '_')}"
    run.mkdir()
    data = run / name
    np.save(data.with_suffix(".npy"), np.load(files["stack"]))
    if data.suffix != ".npy":
        data.with_suffix(".npy").rename(data)  # the bytes of a stack under the run file's name
    folder = {"same": run, "dot": run / ".", "symlinked": files["root"] / f"{run.name}_link"}[spelling]
    if spelling == "symlinked":
        folder.symlink_to(run, target_is_directory=True)
    before = snapshot(files["root"])
    refused(["finetune", f"pairs={data}", "--out", str(folder), "--epochs", "1", "-q"], "would destroy it")
    assert snapshot(files["root"]) == before


@pytest.mark.parametrize("alias", ALIASES)
def test_python_writers_refuse_a_file_they_read(files, alias: str) -> None:
    """The API: what this process has read (embspace.load, Report.from_json) is never replaced by its writers."""
    paths = bad_inputs.alias_paths(files["root"], files["x"])
    before = snapshot(files["root"])
    report = embspace.measure(embspace.load(f"image={files['x']}", f"text={files['y']}"), metrics="gap")
    with pytest.raises(InputError, match="would destroy it"):
        report.to_json(paths[alias])
    with pytest.raises(InputError, match="would destroy it"):
        atomic.atomic_write_text(paths[alias], "x")
    read = embspace.Report.from_json(files["r1"])
    for path in bad_inputs.alias_paths(files["root"], files["r1"]).values():
        with pytest.raises(InputError, match="would destroy it"):
            read.to_json(path)
    assert snapshot(files["root"]) == before


# ---- devices, FIFOs and links: written through, or followed -----------------------------------------------------


@contextlib.contextmanager
def fifo_reader(path: Path) -> Iterator[list[bytes]]:
    os.mkfifo(path)
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as handle:
            got.append(handle.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    yield got
    reader.join(30)


def measure_into(files, out: str) -> None:
    result = CliRunner().invoke(app, ["measure", f"image={files['x']}", f"text={files['y']}", "--metrics", "gap",
                                      "-q", "--json", out])
    assert result.exit_code == 0, (result.stderr, result.exception)


def test_dev_null_and_a_link_to_it_are_written_through(files) -> None:
    link = files["root"] / "null_link.json"
    link.symlink_to("/dev/null")
    for target in ("/dev/null", str(link)):
        measure_into(files, target)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert not list(files["root"].glob(".null_link*"))


@pytest.mark.parametrize("how", ["fifo", "link-to-fifo", "proc-fd"])
def test_fifos_and_descriptors_receive_the_report(files, how: str) -> None:
    if how == "proc-fd":
        read_end, write_end = os.pipe()
        measure_into(files, f"/proc/self/fd/{write_end}")
        os.close(write_end)
        with os.fdopen(read_end, "rb") as handle:
            data = handle.read()
    else:
        fifo = files["root"] / f"{how}.fifo"
        with fifo_reader(fifo) as got:
            target = fifo
            if how == "link-to-fifo":
                target = files["root"] / "fifo_link.json"
                target.symlink_to(fifo)
            measure_into(files, str(target))
        data = got[0]
        assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(data)["schema"] == "embspace.report/1"


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_symlink_output_is_followed_and_its_target_replaced(files, depth: int) -> None:
    folder = files["root"] / f"reports_{depth}"
    folder.mkdir()
    target = folder / "r.json"
    target.write_text("old")
    link = target
    for level in range(depth):
        new = files["root"] / f"latest_{depth}_{level}.json"
        new.symlink_to(link)
        link = new
    measure_into(files, str(link))
    assert link.is_symlink() and json.loads(target.read_text())["schema"] == "embspace.report/1"
    assert sorted(p.name for p in folder.iterdir()) == ["r.json"]  # no temporary file left beside it


def test_an_array_filled_in_place_refuses_a_device(files, no_work) -> None:
    link = files["root"] / "null.npy"
    link.symlink_to("/dev/null")
    refused(["shift", f"pairs={files['stack']}", "--out", str(link)], "needs a regular file")
    assert link.is_symlink()
