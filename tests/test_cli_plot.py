"""`embspace plot KIND INPUT... --out FIG`: every kind end to end, valid files by magic bytes, bad input in one line."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from tests import reference as ref

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-", ".svg": b"<?xml"}
METRICS = "gap,alignment,uniformity,spectrum,retrieval,histograms"


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    """Two reports, a trajectory folder and a dump stack."""
    root = tmp_path_factory.mktemp("plots")
    x, y = ref.paired_data("cone", 60, 8, seed=0)
    np.save(root / "stack.npy", np.stack([x, y]).astype(np.float32))
    embspace.measure(image=x, text=y, metrics=METRICS).to_json(root / "before.json")
    embspace.measure(image=x, text=ref.unit(x + y), metrics=METRICS).to_json(root / "after.json")
    dumps = {step: {"image": x, "text": ref.unit(y + step / 4 * x)} for step in (0, 1, 4)}
    embspace.measure_trajectory(dumps, metrics=METRICS, out=root / "run", name="run-a")
    embspace.measure(image=x, metrics="uniformity").to_json(root / "single.json")
    nan = np.stack([x, y]).astype(np.float32)
    nan[1, 13, 2] = np.nan
    np.save(root / "nan_stack.npy", nan)
    np.save(root / "rows59.npy", y[:59].astype(np.float32))
    os.mkfifo(root / "fifo.json")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return root


CASES = {
    "curves": lambda d: ["curves", d / "run", d / "run" / "trajectory.json", "--metrics", "gap,uniformity.mean",
                         "--labels", "a,b"],
    "plane": lambda d: ["plane", d / "run", d / "before.json", d / "after.json"],
    "spectrum": lambda d: ["spectrum", d / "before.json", d / "after.json"],
    "histograms": lambda d: ["histograms", d / "after.json"],
    "map": lambda d: ["map", f"pairs={d / 'stack.npy'}"],
    "before-after": lambda d: ["before-after", d / "before.json", d / "after.json"],
}


@pytest.mark.parametrize(("kind", "suffix"), [(k, s) for k in CASES for s in (".png", ".svg", ".pdf")
                                              if s == ".png" or k in ("curves", "histograms")])
def test_every_kind_writes_a_valid_file(disk, tmp_path, kind, suffix):
    out = tmp_path / f"fig{suffix}"
    result = cli("plot", *CASES[kind](disk), "--out", out)
    assert result.exit_code == 0, result.stderr
    data = out.read_bytes()
    assert data.startswith(MAGIC[suffix]), data[:20]
    if suffix == ".svg":
        assert b"<svg" in data[:2000]
    assert f"{kind} written to" in result.stderr


def test_plot_end_to_end_in_a_subprocess(disk, tmp_path):
    out = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, "-m", "embspace.cli", "plot", "curves", str(disk / "run"), "--out",
                             str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(MAGIC[".png"])


BAD = {
    "no kind": lambda d, t: ["plot"],
    "unknown kind": lambda d, t: ["plot", "violin", d / "before.json", "--out", t / "f.png"],
    "no --out": lambda d, t: ["plot", "histograms", d / "before.json"],
    "unknown format": lambda d, t: ["plot", "histograms", d / "before.json", "--out", t / "f.jpg"],
    "out inside a file": lambda d, t: ["plot", "histograms", d / "before.json", "--out", d / "before.json" / "f.png"],
    "missing input": lambda d, t: ["plot", "histograms", d / "nope.json", "--out", t / "f.png"],
    "not json": lambda d, t: ["plot", "histograms", d / "stack.npy", "--out", t / "f.png"],
    "no inputs": lambda d, t: ["plot", "spectrum", "--out", t / "f.png"],
    "one report for before-after": lambda d, t: ["plot", "before-after", d / "before.json", "--out", t / "f.png"],
    "report for curves": lambda d, t: ["plot", "curves", d / "before.json", "--out", t / "f.png"],
    "unknown metric": lambda d, t: ["plot", "curves", d / "run", "--metrics", "gapp", "--out", t / "f.png"],
    "single modality plane": lambda d, t: ["plot", "plane", d / "single.json", "--out", t / "f.png"],
    "labels count": lambda d, t: ["plot", "spectrum", d / "before.json", "--labels", "a,b", "--out", t / "f.png"],
    "map bad spec": lambda d, t: ["plot", "map", d / "stack.npy", "--out", t / "f.png"],
    "map umap missing or bad method": lambda d, t: ["plot", "map", f"pairs={d / 'stack.npy'}", "--method", "tsne",
                                                    "--out", t / "f.png"],
    "sample for a report figure": lambda d, t: ["plot", "spectrum", "--sample", d / "before.json",
                                                "--out", t / "f.png"],
    "map NaN row": lambda d, t: ["plot", "map", f"pairs={d / 'nan_stack.npy'}", "--out", t / "f.png"],
    "map unpaired rows": lambda d, t: ["plot", "map", f"image={d / 'stack.npy'}:img", f"text={d / 'rows59.npy'}",
                                       "--out", t / "f.png"],
    "drop-invalid for a report figure": lambda d, t: ["plot", "spectrum", d / "before.json", "--drop-invalid",
                                                      "--out", t / "f.png"],
    "fifo trajectory": lambda d, t: ["plot", "curves", d / "fifo.json", "--out", t / "f.png"],
    "deeply nested report": lambda d, t: ["plot", "histograms", d / "deep.json", "--out", t / "f.png"],
    "coarsen not a divisor": lambda d, t: ["plot", "histograms", d / "after.json", "--coarsen", "3",
                                           "--out", t / "f.png"],
    "coarsen for curves": lambda d, t: ["plot", "curves", d / "run", "--coarsen", "2", "--out", t / "f.png"],
    "usage: unknown option": lambda d, t: ["plot", "map", f"pairs={d / 'stack.npy'}", "--colour", "red",
                                           "--out", t / "f.png"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_line_and_exit_code_2(disk, tmp_path, case):
    result = cli(*BAD[case](disk, tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (case, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not list(tmp_path.iterdir())


EXPECTED = {
    "map NaN row": "nan_stack.npy[1]: 1 row contains NaN or Inf (first at row 13)",
    "map unpaired rows": "has 60 rows but",
    "fifo trajectory": "fifo.json: is not a regular file",
    "deeply nested report": "deep.json: invalid JSON: nested too deeply",
    "coarsen not a divisor": "coarsen: must divide the 200 bins, got 3",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_names_file_and_row(disk, tmp_path, case):
    result = cli(*BAD[case](disk, tmp_path))
    assert result.exit_code == 2, result.stderr
    assert EXPECTED[case] in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_map_drop_invalid_draws_the_valid_pairs(disk, tmp_path):
    out = tmp_path / "map.png"
    result = cli("plot", "map", f"pairs={disk / 'nan_stack.npy'}", "--drop-invalid", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes().startswith(MAGIC[".png"])


def test_a_name_with_brackets_is_shown_as_it_is(tmp_path):
    """Error lines are plain text: no markup, and no backslash added before ``[``."""
    x, y = ref.paired_data("random", 20, 4, seed=1)
    x[5, 0] = np.inf
    name = "[bold]run [1].npy"
    np.save(tmp_path / name, x)
    np.save(tmp_path / "y.npy", y)
    result = cli("plot", "map", f"image={tmp_path / name}", f"text={tmp_path / 'y.npy'}", "--out", tmp_path / "m.png")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert f"{tmp_path / name}: 1 row contains NaN or Inf (first at row 5)" in lines[0] and "\\" not in lines[0]
    assert not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("kind", ["histograms", "before-after"])
def test_coarsen_merges_the_stored_bins(disk, tmp_path, monkeypatch, kind):
    """--coarsen N reaches the figure: every histogram is drawn with 200 / N bins (the reports store 200)."""
    import embspace.plot as figures

    drawn = []
    function = "histograms" if kind == "histograms" else "before_after"
    original = getattr(figures, function)
    monkeypatch.setattr(figures, function, lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    inputs = [disk / "after.json"] if kind == "histograms" else [disk / "before.json", disk / "after.json"]
    for coarsen, bins in ((["--coarsen", "4"], {50}), (["--coarsen", "1"], {200})):
        result = cli("plot", kind, *inputs, *coarsen, "--out", tmp_path / "h.png")
        assert result.exit_code == 0, result.stderr
        stairs = [p for ax in drawn[-1].axes for p in ax.patches if type(p).__name__ == "StepPatch"]
        assert stairs and {len(p.get_data().values) for p in stairs} == bins
