"""What the CLI does, the API does: runs of dumps (globs, templates, steps), train/eval splits, report-or-trajectory
files, a (2, N, D) stack; errors name API parameters and the CLI names flags; one metric vocabulary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import embspace
from embspace.checkpoints import checkpoint_dumps, parse_steps, step_from_name
from embspace.cli import app
from embspace.cli.common import flag_message
from embspace.errors import InputError
from embspace.finetune.data import pairs_from_specs, split_pairs, train_eval_pairs
from embspace.report import Report
from embspace.trajectory import Trajectory, read_reports
from tests import reference as ref

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """pair_epoch{1,3,10}.npz (img, txt) and stack_epoch{1,3,10}.npy (2, N, D)."""
    root = tmp_path_factory.mktemp("run")
    x, y = ref.paired_data("cone", 40, 6, seed=3)
    for epoch in (10, 1, 3):
        moved = ref.unit(y + epoch / 5 * x)
        np.savez(root / f"pair_epoch{epoch}.npz", img=x, txt=moved)
        np.save(root / f"stack_epoch{epoch}.npy", np.stack([x, moved]))
    return root


# ---- runs of dumps: embspace.checkpoints -----------------------------------------------------------------------
def test_checkpoint_dumps_put_each_match_into_the_templates_in_natural_order(run_dir):
    run = checkpoint_dumps([str(run_dir / "pair_*.npz")], ["image={}:img", "text={}:txt"])
    assert run.labels == ["pair_epoch1", "pair_epoch3", "pair_epoch10"]
    assert run.dumps[2] == [f"image={run_dir / 'pair_epoch10.npz'}:img", f"text={run_dir / 'pair_epoch10.npz'}:txt"]
    assert [step_from_name(label) for label in run.labels] == [1, 3, 10]
    stacks = checkpoint_dumps([str(run_dir / "stack_*.npy")])  # no templates: each match is pairs={}
    assert stacks.dumps[0] == [f"pairs={run_dir / 'stack_epoch1.npy'}"]


def test_checkpoint_dumps_refuse_templates_without_a_place_or_a_name(run_dir):
    with pytest.raises(InputError, match=r"^templates: write \{\} in a spec"):
        checkpoint_dumps([str(run_dir / "pair_*.npz")], ["image=a.npz:img", "text=a.npz:txt"])
    with pytest.raises(InputError, match="not a spec template"):
        checkpoint_dumps([str(run_dir / "pair_*.npz")], [str(run_dir / "pair_epoch3.npz")])  # an unquoted glob
    with pytest.raises(InputError, match="matches no dump"):
        checkpoint_dumps([str(run_dir / "*.parquet")])


def test_steps_are_parsed_by_the_api_and_measure_trajectory_takes_them_as_text(run_dir):
    assert parse_steps("0, 100,2.5,1e3") == [0, 100, 2.5, 1000.0]
    assert parse_steps([5, 6]) == [5, 6] and parse_steps(None) is None
    with pytest.raises(InputError, match=r"^steps: 'a,b': expected numbers"):
        parse_steps("a,b")
    run = checkpoint_dumps([str(run_dir / "pair_*.npz")], ["image={}:img", "text={}:txt"])
    trajectory = embspace.measure_trajectory(run.dumps, labels=run.labels, steps="30,10,20", metrics="gap")
    assert trajectory.steps == [10, 20, 30] and trajectory.labels == ["pair_epoch3", "pair_epoch10", "pair_epoch1"]
    x = np.load(run_dir / "pair_epoch3.npz")["img"]
    y = np.load(run_dir / "pair_epoch3.npz")["txt"]
    assert trajectory.at(10)["gap"] == pytest.approx(ref.gap(x, y), abs=1e-6)


# ---- report or trajectory: trajectory.read_reports -------------------------------------------------------------
def test_read_reports_tells_a_report_from_a_trajectory(run_dir, tmp_path):
    run = checkpoint_dumps([str(run_dir / "stack_*.npy")])
    embspace.measure_trajectory(run.dumps, labels=run.labels, metrics="gap", out=tmp_path / "run")
    trajectory = read_reports(tmp_path / "run")  # a folder: its trajectory.json
    assert isinstance(trajectory, Trajectory) and trajectory.steps == [1, 3, 10]
    report = read_reports(tmp_path / "run" / "stack_epoch3.json")
    assert isinstance(report, Report) and report["gap"] == trajectory.at(3)["gap"]
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"list\.json"):
        read_reports(tmp_path / "list.json")


# ---- train / eval pairs: finetune.data.train_eval_pairs --------------------------------------------------------
def test_train_eval_pairs_splits_one_dump_and_takes_two_and_reads_bare_paths(run_dir):
    stack = str(run_dir / "stack_epoch1.npy")
    one = pairs_from_specs([f"pairs={stack}"])[0]
    train, evaluation = train_eval_pairs([stack], eval_fraction=0.25, seed=4)  # a bare path is pairs=PATH
    expected = split_pairs(one, 0.25, 4)
    assert train.n == 30 and evaluation.n == 10
    assert np.array_equal(train.image.numpy(), expected[0].image.numpy())
    assert np.array_equal(evaluation.text.numpy(), expected[1].text.numpy())
    two = train_eval_pairs([stack, str(run_dir / "stack_epoch3.npy")])
    assert [p.n for p in two] == [40, 40]
    assert np.allclose(two[1].text.numpy(), np.load(run_dir / "stack_epoch3.npy")[1], atol=1e-7)
    with pytest.raises(InputError, match=r"^specs: expected a TRAIN and an EVAL dump .*got 3 dumps"):
        train_eval_pairs([stack, stack, stack])
    with pytest.raises(InputError, match=r"^eval_fraction: must be between 0 and 1"):
        train_eval_pairs([stack], eval_fraction=1.5)


def test_finetune_cli_takes_bare_train_and_eval_paths(run_dir, tmp_path):
    out = tmp_path / "ft"
    result = cli("finetune", str(run_dir / "stack_epoch1.npy"), str(run_dir / "stack_epoch3.npy"), "--loss", "clip",
                 "--epochs", "1", "--batch-size", "20", "--resamples", "20", "--metrics", "gap", "--dim", "4",
                 "--out", str(out), "-q")
    assert result.exit_code == 0, result.stderr
    before = json.loads((out / "epoch_0.json").read_text())
    assert before["inputs"]["image"]["n"] == 40  # the evaluation dump is the second path


# ---- a (2, N, D) stack to embspace.measure ---------------------------------------------------------------------
def test_measure_takes_a_stack_positionally_and_refuses_other_arrays_in_one_line():
    x, y = ref.paired_data("cone", 50, 8, seed=5)
    report = embspace.measure(np.stack([x, y]), metrics="gap,alignment", precision="fp64")
    assert report["gap"] == pytest.approx(ref.gap(x, y), abs=1e-12)
    assert report["alignment"] == pytest.approx(ref.alignment(x, y), abs=1e-12)
    assert set(report.inputs) == {"image", "text"}
    with pytest.raises(InputError, match=r"^modalities: got an array of shape \(50, 8\); give a \(2, N, D\) stack"):
        embspace.measure(x)
    with pytest.raises(InputError, match=r"shape \(3, 50, 8\)"):
        embspace.measure(np.stack([x, y, x]))


def test_the_package_attributes_stay_the_functions_after_their_modules_are_imported():
    code = ("import embspace.measure, embspace.compare, embspace.io, embspace.kernels.pairwise\n"
            "import embspace\n"
            "assert callable(embspace.measure) and callable(embspace.compare), (embspace.measure, embspace.compare)\n"
            "assert embspace.io.load and embspace.finetune.fit and embspace.finetune.heads.TwoTower\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


# ---- errors: API parameters in the library, flags on the command line ------------------------------------------
def test_library_errors_name_api_parameters():
    with pytest.raises(InputError, match=r"^step_pattern: invalid regular expression"):
        step_from_name("epoch1", "epoch(")
    with pytest.raises(InputError, match=r"^step: the sample has no training step 7"):
        embspace.load_sample(7)
    with pytest.raises(InputError, match=r"^steps: 3 dumps but 2 steps"):
        embspace.measure_trajectory([{"image": np.eye(3)}] * 3, steps=[1, 2])


@pytest.mark.parametrize(("where", "problem", "line"), [
    ("step_pattern", "invalid regular expression", "--step-pattern: invalid regular expression"),
    ("eval_fraction", "must be between 0 and 1", "--eval-fraction: must be between 0 and 1"),
    ("a.npy", "2 rows contain NaN; pass drop_invalid=True to drop them", "a.npy: 2 rows contain NaN; pass "
                                                                          "--drop-invalid to drop them"),
    ("steps", "each dump needs its own step (see step_pattern=, steps=)",
     "--steps: each dump needs its own step (see --step-pattern, --steps)"),
    ("backend=triton", "rows are on cpu", "--backend triton: rows are on cpu"),
    ("pairs=a.npy", "no such file; pairs= counts pairs", "pairs=a.npy: no such file; --pairs counts pairs"),
    ("specs", "nothing to train on", "nothing to train on"),
    ("--metrics", "unknown metric 'x'", "--metrics: unknown metric 'x'"),
])
def test_the_cli_writes_api_parameters_as_flags(where, problem, line):
    assert flag_message(InputError(where, problem)) == line


def test_cli_errors_name_flags(run_dir, tmp_path):
    line = one_error_line(cli("measure", "--each", str(run_dir / "stack_*.npy"), "--out", str(tmp_path / "r"),
                              "--step-pattern", "epoch(", "--metrics", "gap", "-q"))
    assert line.startswith("error: --step-pattern: invalid regular expression")
    line = one_error_line(cli("measure", "--each", str(run_dir / "stack_*.npy"), "--out", str(tmp_path / "r"),
                              "--steps", "1,x", "--metrics", "gap", "-q"))
    assert line.startswith("error: --steps: '1,x': expected numbers")
    line = one_error_line(cli("measure", "--each", str(run_dir / "pair_*.npz"), "image=a.npz:img", "text=a:txt",
                              "--out", str(tmp_path / "r"), "-q"))
    assert line.startswith("error: --each: write {} in a spec")
    line = one_error_line(cli("finetune", str(run_dir / "stack_epoch1.npy"), "--eval-fraction", "2",
                              "--out", str(tmp_path / "ft"), "-q"))
    assert line.startswith("error: --eval-fraction: must be between 0 and 1")
    assert not (tmp_path / "r").exists()


# ---- one metric vocabulary -------------------------------------------------------------------------------------
def test_measure_metrics_take_report_keys_as_plot_does(run_dir):
    result = cli("measure", f"pairs={run_dir / 'stack_epoch3.npy'}", "--metrics", "recall@1,uniformity.mean,cone",
                 "--json", "-")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    retrieval = {key for key in metrics if key not in ("uniformity", "cone")}  # the retrieval family's keys
    assert {"recall@1", "recall@5", "recall@10", "mrr", "median_rank"} <= retrieval
    assert set(metrics) == retrieval | {"uniformity", "cone"}
    assert all(key.startswith(("recall", "median_rank", "mean_rank", "mrr", "margin_", "tied_partner"))
               for key in retrieval)
    x, y = np.load(run_dir / "stack_epoch3.npy")
    assert metrics["recall@1"]["image->text"] == pytest.approx(ref.recall(x, y, 1), abs=1e-12)


@pytest.mark.parametrize(("metrics", "suggestion"), [("uniformty", "uniformity"), ("recal@1", "recall@1"),
                                                     ("hubnes", "hubness")])
def test_a_misspelt_metric_gets_a_suggestion(run_dir, metrics, suggestion):
    line = one_error_line(cli("measure", f"pairs={run_dir / 'stack_epoch3.npy'}", "--metrics", metrics))
    assert line.startswith(f"error: --metrics: unknown metric {metrics!r}; did you mean {suggestion!r}?")


def test_plot_metrics_suggest_the_closest_name_in_the_reports(run_dir, tmp_path):
    run = checkpoint_dumps([str(run_dir / "stack_*.npy")])
    embspace.measure_trajectory(run.dumps, labels=run.labels, metrics="gap,retrieval", out=tmp_path / "run")
    line = one_error_line(cli("plot", "curves", str(tmp_path / "run"), "--metrics", "gap,recal@1",
                              "--out", str(tmp_path / "c.png")))
    assert line.startswith("error: --metrics: no metric 'recal@1' in the reports; did you mean 'recall@1'?")
    assert not (tmp_path / "c.png").exists()


def test_one_modality_says_which_paired_families_it_skipped(run_dir):
    spec = f"image={run_dir / 'pair_epoch1.npz'}:img"
    line = one_error_line(cli("measure", spec, "--metrics", "gap"))
    assert "nothing to measure: gap needs two paired modalities" in line and "image" in line
    result = cli("measure", spec, "--metrics", "gap,cone")
    assert result.exit_code == 0, result.stderr
    assert "gap skipped: it needs two paired modalities, and only image was given" in result.stderr
    assert "cone" in result.stdout
    x = np.load(run_dir / "pair_epoch1.npz")["img"]
    assert f"{ref.cone(x):.4f}" in result.stdout
