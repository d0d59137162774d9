"""Trajectories: steps from names, ordering, measuring many dumps, JSON round trips, `embspace measure --each`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.errors import InputError
from embspace.trajectory import Trajectory, dump_labels, find_dumps, natural_key, step_from_name
from tests import reference as ref

METRICS = "gap,alignment,uniformity,retrieval"


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> Path:
    """ckpt_epoch{1,2,10,12}.npy (2, N, D) stacks whose text side moves towards the images as epochs go on."""
    root = tmp_path_factory.mktemp("ckpts")
    x, y = ref.paired_data("cone", 60, 8, seed=0)
    for epoch in (10, 2, 12, 1):
        np.save(root / f"ckpt_epoch{epoch}.npy", np.stack([x, ref.unit(y + epoch / 8 * x)]).astype(np.float32))
        np.savez(root / f"pair_epoch{epoch}.npz", img=x, txt=ref.unit(y + epoch / 8 * x))
    return root


# ---- steps and order -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "pattern", "step"), [
    ("ckpt_epoch12", None, 12), ("run3_epoch_7", None, 7), ("step-000800", None, 800),
    ("lr1e-3_it500_final", r"it(\d+)", 500), ("epoch_2.5", r"epoch_([\d.]+)", 2.5), ("e3", r"e\d", "e3"),
])
def test_step_is_the_last_integer_or_the_patterns_last_match(name, pattern, step):
    if step == "e3":
        with pytest.raises(InputError, match="not a number"):
            step_from_name(name, pattern)
    else:
        assert step_from_name(name, pattern) == step


def test_names_without_a_step_and_bad_patterns_are_refused():
    with pytest.raises(InputError, match="cannot read a step"):
        step_from_name("final")
    with pytest.raises(InputError, match="invalid regular expression"):
        step_from_name("epoch1", "epoch(")


def test_numeric_not_lexical_order():
    names = ["epoch10", "epoch2", "epoch1", "epoch12"]
    assert sorted(names) == ["epoch1", "epoch10", "epoch12", "epoch2"]  # what a plain sort would do
    assert sorted(names, key=natural_key) == ["epoch1", "epoch2", "epoch10", "epoch12"]
    assert sorted(names, key=step_from_name) == ["epoch1", "epoch2", "epoch10", "epoch12"]


def test_find_dumps_by_glob_and_folder_and_labels(ckpts):
    by_glob = find_dumps([str(ckpts / "ckpt_*.npy")])
    assert [p.name for p in by_glob] == ["ckpt_epoch1.npy", "ckpt_epoch2.npy", "ckpt_epoch10.npy", "ckpt_epoch12.npy"]
    assert len(find_dumps([str(ckpts)])) == 8
    assert dump_labels(by_glob) == ["ckpt_epoch1", "ckpt_epoch2", "ckpt_epoch10", "ckpt_epoch12"]
    assert dump_labels(["a/run1/emb.npy", "a/run2/emb.npy"]) == ["run1_emb", "run2_emb"]
    with pytest.raises(InputError, match="matches no dump"):
        find_dumps([str(ckpts / "*.parquet")])


# ---- measuring -------------------------------------------------------------------------------------------------
def test_measure_trajectory_orders_by_step_and_writes_reports(ckpts, tmp_path):
    files = [ckpts / f"ckpt_epoch{e}.npy" for e in (10, 2, 12, 1)]  # deliberately out of order
    trajectory = embspace.measure_trajectory(files, out=tmp_path / "run", metrics=METRICS, name="A", unit="epoch")
    assert trajectory.steps == [1, 2, 10, 12]
    assert trajectory.labels == ["ckpt_epoch1", "ckpt_epoch2", "ckpt_epoch10", "ckpt_epoch12"]
    gaps = trajectory.values("gap")
    x, y = np.load(ckpts / "ckpt_epoch2.npy").astype(np.float64)
    assert gaps[1] == pytest.approx(ref.gap(x, y), abs=1e-6)
    assert np.all(np.diff(gaps) < 0)  # the text side moves towards the images
    written = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert written["schema"] == "embspace.trajectory/1" and written["unit"] == "epoch"
    assert [p["step"] for p in written["points"]] == [1, 2, 10, 12]
    assert written["points"][0]["report"] == "ckpt_epoch1.json"
    assert json.loads((tmp_path / "run" / "ckpt_epoch10.json").read_text())["metrics"]["gap"] == gaps[2]


def test_trajectory_json_round_trips_by_reference_and_embedded(ckpts, tmp_path):
    trajectory = embspace.measure_trajectory(sorted(ckpts.glob("ckpt_*.npy")), out=tmp_path / "run", metrics="gap")
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "run", moved)  # report paths are relative to trajectory.json
    again = Trajectory.from_json(moved / "trajectory.json")
    assert again.steps == trajectory.steps and again.labels == trajectory.labels
    assert [r.metrics for r in again.reports] == [r.metrics for r in trajectory.reports]
    assert Trajectory.from_json(moved).steps == trajectory.steps  # a folder means its trajectory.json
    embedded = Trajectory.from_json(trajectory.to_json(embed=True))
    assert embedded.paths == [None] * 4 and embedded.values("gap").tolist() == trajectory.values("gap").tolist()


def test_in_memory_dumps_frame_and_html():
    x, y = ref.paired_data("random", 40, 6, seed=1)
    dumps = {20: {"image": x, "text": y}, 5: {"image": x, "text": ref.unit(y + x)}}
    trajectory = embspace.measure_trajectory(dumps, metrics="gap,uniformity,alignment")
    assert trajectory.steps == [5, 20] and trajectory.labels == ["step5", "step20"]
    step, report = trajectory[0]
    assert step == 5 and report is trajectory.at(5) and [s for s, _ in trajectory] == [5, 20]
    frame = trajectory.to_frame()
    assert frame.index.name == "step" and frame.index.tolist() == [5, 20]
    assert "uniformity.mean" in frame.columns and "gap" in frame.columns
    assert frame.loc[20, "gap"] == pytest.approx(ref.gap(x, y), abs=1e-6)
    page = trajectory._repr_html_()
    table = page.split("<table class='trajectory'>")[1].split("</table>")[0]  # one row per step under the header
    assert table.count("<tr>") == 3 and "uniformity.joint" in table and "<th>label</th>" in table
    assert repr(trajectory) == "Trajectory(2 steps: 5 … 20)"


def test_duplicate_steps_and_bad_trajectory_json_are_refused(ckpts, tmp_path):
    with pytest.raises(InputError, match="also the step of"):
        embspace.measure_trajectory([ckpts / "ckpt_epoch1.npy", ckpts / "pair_epoch1.npz"], metrics="gap")
    (tmp_path / "t.json").write_text(json.dumps({"schema": "embspace.trajectory/1", "points": []}))
    with pytest.raises(InputError, match="no points"):
        Trajectory.from_json(tmp_path / "t.json")
    (tmp_path / "r.json").write_text(json.dumps({"schema": "embspace.trajectory/1",
                                                 "points": [{"step": 1, "report": "missing.json"}]}))
    with pytest.raises(InputError, match="no such file"):
        Trajectory.from_json(tmp_path / "r.json")


def test_trajectory_json_from_a_fifo_or_nested_too_deeply_is_one_line(tmp_path):
    """A fifo is refused at once (not waited on); nesting deeper than the parser goes is an InputError."""
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(InputError, match=r"fifo\.json: is not a regular file"):
        Trajectory.from_json(tmp_path / "fifo.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep\.json: invalid JSON: nested too deeply"):
        Trajectory.from_json(tmp_path / "deep.json")
    with pytest.raises(InputError, match="<json>: invalid JSON: nested too deeply"):
        Trajectory.from_json("{" + '"a": {' * 100_000 + "}" * 100_001)


# ---- the command line ------------------------------------------------------------------------------------------
def test_cli_each_glob_writes_reports_and_trajectory(ckpts, tmp_path):
    out = tmp_path / "runs"
    result = cli("measure", "--each", str(ckpts / "ckpt_*.npy"), "--out", str(out), "--metrics", METRICS, "-q")
    assert result.exit_code == 0, result.stderr
    trajectory = Trajectory.from_json(out / "trajectory.json")
    assert trajectory.steps == [1, 2, 10, 12]
    assert sorted(p.name for p in out.iterdir()) == sorted(["trajectory.json", *(f"ckpt_epoch{e}.json"
                                                                                  for e in (1, 2, 10, 12))])
    rows = [line.split()[:2] for line in result.stdout.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "10", "12"]


def test_cli_each_with_spec_templates_and_explicit_steps(ckpts, tmp_path):
    out = tmp_path / "runs"
    result = cli("measure", "--each", str(ckpts / "pair_*.npz"), "image={}:img", "text={}:txt", "--out", str(out),
                 "--metrics", "gap", "--steps", "40,30,20,10", "--unit", "epoch", "-q")
    assert result.exit_code == 0, result.stderr
    trajectory = Trajectory.from_json(out)
    # found in natural order epoch1, 2, 10, 12 and given steps 40, 30, 20, 10 in that order
    assert trajectory.steps == [10, 20, 30, 40] and trajectory.labels[0] == "pair_epoch12"
    assert trajectory.unit == "epoch" and set(trajectory.reports[0].inputs) == {"image", "text"}


def test_cli_step_pattern(ckpts, tmp_path):
    result = cli("measure", "--each", str(ckpts / "ckpt_*.npy"), "--out", str(tmp_path / "r"), "--metrics", "gap",
                 "--step-pattern", r"ckpt_epoch(\d)", "-q")  # the first digit only: 1, 2, 1, 1 → duplicates
    assert "also the step of" in one_error_line(result)


MANY_BAD = {
    "no --out": lambda d, t: ["measure", "--each", str(d / "ckpt_*.npy")],
    "unquoted glob": lambda d, t: ["measure", "--each", str(d / "ckpt_epoch1.npy"), str(d / "ckpt_epoch2.npy"),
                                   "--out", str(t / "o")],
    "no {} in specs": lambda d, t: ["measure", "--each", str(d / "pair_*.npz"), f"image={d / 'pair_epoch1.npz'}:img",
                                    "--out", str(t / "o")],
    "no match": lambda d, t: ["measure", "--each", str(d / "nothing_*.npy"), "--out", str(t / "o")],
    "--json with --each": lambda d, t: ["measure", "--each", str(d / "ckpt_*.npy"), "--json", str(t / "r.json")],
    "--out for one dump": lambda d, t: ["measure", f"pairs={d / 'ckpt_epoch1.npy'}", "--out", str(t / "o")],
    "--all-steps without --sample": lambda d, t: ["measure", "--all-steps", "--out", str(t / "o")],
    "out inside a file": lambda d, t: ["measure", "--each", str(d / "ckpt_*.npy"), "--out",
                                       str(d / "ckpt_epoch1.npy" / "b")],
    "steps count": lambda d, t: ["measure", "--each", str(d / "ckpt_*.npy"), "--out", str(t / "o"), "--steps", "1,2"],
    "steps not numbers": lambda d, t: ["measure", "--each", str(d / "ckpt_*.npy"), "--out", str(t / "o"),
                                       "--steps", "a,b,c,d"],
}


@pytest.mark.parametrize("case", sorted(MANY_BAD))
def test_cli_many_bad_input_gives_one_line(ckpts, tmp_path, case):
    one_error_line(cli(*MANY_BAD[case](ckpts, tmp_path)))
    assert not (tmp_path / "o" / "trajectory.json").exists()


def test_cli_each_refuses_a_bad_dump_before_writing_any_report(tmp_path):
    """Two good dumps and one with a NaN row (its name has brackets, printed as they are): one line naming the file
    and the row, exit 2, and no --out folder at all, although the bad dump comes last in step order."""
    x, y = ref.paired_data("cone", 40, 8, seed=0)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    for epoch in (1, 2):
        np.save(dumps / f"ckpt_epoch{epoch}.npy", np.stack([x, y]).astype(np.float32))
    bad = np.stack([x, y]).astype(np.float32)
    bad[1, 17, 3] = np.nan
    np.save(dumps / "ckpt[b]_epoch3.npy", bad)
    out = tmp_path / "o"
    line = one_error_line(cli("measure", "--each", str(dumps), "--out", str(out), "--metrics", "gap", "-q"))
    assert line == (f"error: {dumps / 'ckpt[b]_epoch3.npy'}[1]: 1 row contains NaN or Inf (first at row 17); "
                    "pass --drop-invalid to drop them")
    assert not out.exists()
    with pytest.raises(InputError, match=r"ckpt\[b\]_epoch3.npy\[1\]: 1 row contains NaN"):
        embspace.measure_trajectory(sorted(dumps.iterdir()), metrics="gap", out=out)
    assert not out.exists()


def test_cli_each_end_to_end_in_a_subprocess(ckpts, tmp_path):
    """As a user runs it: a real process, stderr not a terminal (so no progress bar)."""
    result = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--each", str(ckpts / "ckpt_*.npy"),
                             "--out", str(tmp_path / "runs"), "--metrics", "gap"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "checkpoints" not in result.stderr and "trajectory.json written" in result.stderr
    assert Trajectory.from_json(tmp_path / "runs").steps == [1, 2, 10, 12]
