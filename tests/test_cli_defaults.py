"""The CLI restates no default: every option's default is the default of the API parameter it feeds, and ``--help``
starts without torch."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

import embspace
import embspace.plot
from embspace import defaults
from embspace.cli import app
from embspace.finetune import FitConfig, fit
from embspace.finetune.data import split_pairs, train_eval_pairs
from embspace.finetune.dumps import shift_dump

ROOT = Path(__file__).resolve().parents[1]


def options(command: str) -> dict[str, object]:
    """{parameter name: default} of a subcommand, as typer builds it."""
    click_app = typer.main.get_command(app)
    return {param.name: param.default for param in click_app.commands[command].params}


def default(function, name: str) -> object:
    return inspect.signature(function).parameters[name].default


def fields(cls) -> dict[str, object]:
    return {name: getattr(cls, name) for name in cls.__dataclass_fields__ if hasattr(cls, name)}


@pytest.mark.parametrize("name", ["t", "alpha", "device", "precision", "estimate", "sample_above", "pairs", "queries"])
def test_measure_options_default_to_the_apis(name):
    assert options("measure")[name] == default(embspace.measure, name)


def test_measure_metrics_names_unit_and_backend_default_to_the_apis():
    given = options("measure")
    assert given["metrics"] == "all" and default(embspace.measure, "metrics") is None  # None means every family
    assert tuple(given["names"].split(",")) == default(embspace.measure_trajectory, "names")
    assert given["unit"] == default(embspace.measure_trajectory, "unit")
    assert given["backend"] is None and default(embspace.measure, "backend") is None


@pytest.mark.parametrize("name", ["resamples", "seed", "confidence", "subsample"])
def test_compare_options_default_to_the_apis(name):
    assert options("compare")[name] == default(embspace.compare, name)


def test_finetune_options_default_to_the_fit_config():
    given, config = options("finetune"), fields(FitConfig)
    for option, field in [("loss", "loss"), ("head", "head"), ("adapter", "adapter"), ("dim", "dim"),
                          ("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                          ("weight_decay", "weight_decay"), ("seed", "seed"), ("metrics", "eval_metrics"),
                          ("device", "device")]:
        assert given[option] == config[field], option
    assert given["resamples"] == default(fit, "resamples")
    assert given["eval_fraction"] == default(split_pairs, "eval_fraction") == default(train_eval_pairs,
                                                                                       "eval_fraction")


def test_shift_and_plot_options_default_to_the_apis():
    assert options("shift")["lam"] == default(shift_dump, "lam")
    given = options("plot")
    assert tuple(given["metrics"].split(",")) == tuple(default(embspace.plot.curves, "metrics"))
    assert given["uniformity"] == default(embspace.plot.plane, "uniformity")
    assert given["method"] == default(embspace.plot.embedding_map, "method")


def test_the_defaults_module_imports_nothing_heavy():
    code = ("import sys, embspace.defaults, embspace.cli; "
            "print(sorted({'torch', 'numpy', 'matplotlib', 'scipy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
    assert defaults.PAIR_NAMES == ("image", "text")


@pytest.mark.parametrize("command", [[], ["measure"], ["finetune"], ["plot"], ["compare"], ["shift"]])
def test_help_loads_no_torch(command):
    """``embspace … --help`` imports neither torch nor numpy (start-up well under a second; timings in the report,
    not asserted here)."""
    code = ("import sys; from embspace.cli import app; sys.argv = ['embspace', *sys.argv[1:]]\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print(sorted({'torch', 'numpy'} & set(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *command, "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert "Usage" in done.stdout


@pytest.mark.parametrize("command", ["measure", "finetune", "plot", "compare", "shift"])
def test_help_shows_no_value_type_on_flags_and_names_arguments(command):
    from typer.testing import CliRunner

    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
    assert "<bool>" not in text
    assert "{" not in text.splitlines()[1]  # the usage line: BEFORE AFTER, not {before} {after}
    usage = next(line for line in text.splitlines() if "Usage" in line)
    assert {"measure": "[SPEC]...", "finetune": "[SPEC]...", "shift": "[SPEC]...", "compare": "BEFORE AFTER",
            "plot": "[KIND] [INPUT]..."}[command] in usage


def test_plot_help_lists_each_kind_on_its_own_line():
    from typer.testing import CliRunner

    text = CliRunner().invoke(app, ["plot", "--help"], env={"COLUMNS": "200"}).stdout
    lines = [line.strip(" │") for line in text.splitlines()]
    for kind in ("curves", "plane", "spectrum", "histograms", "map", "before-after"):
        assert sum(line.startswith(f"{kind} — ") for line in lines) == 1, kind
