"""Command-line usage errors (unknown option or command, missing argument or value, bad value) in every subcommand:
one line on stderr, ``error: … (see embspace SUBCOMMAND --help)``, exit code 2, no traceback, no box drawn."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embspace.cli import app

ROOT = Path(__file__).resolve().parents[1]
BOX = re.compile("[\u2500-\u257f]")  # box-drawing characters (rich panels)

CASES = {
    "measure unknown option": (["measure", "image=a.npy", "--foo"], "no such option: --foo",
                               "embspace measure --help"),
    "measure option without its value": (["measure", "image=a.npy", "--metrics"],
                                         "option '--metrics' requires an argument", "embspace measure --help"),
    "measure flag given a value": (["measure", "image=a.npy", "--quiet=3"], "option '--quiet' does not take a value",
                                   "embspace measure --help"),
    "measure bad number": (["measure", "image=a.npy", "--t", "warm"], "invalid value for '--t'",
                           "embspace measure --help"),
    "compare missing argument": (["compare", "before.json"], "missing argument 'AFTER'", "embspace compare --help"),
    "compare unknown option": (["compare", "a.json", "b.json", "--colour"], "no such option: --colour",
                               "embspace compare --help"),
    "finetune bad integer": (["finetune", "pairs=s.npy", "--epochs", "many"], "invalid value for '--epochs'",
                             "embspace finetune --help"),
    "shift option without its value": (["shift", "pairs=s.npy", "--out"], "option '--out' requires an argument",
                                       "embspace shift --help"),
    "plot bad integer": (["plot", "map", "pairs=s.npy", "--dpi", "high", "--out", "m.png"],
                         "invalid value for '--dpi'", "embspace plot --help"),
    "unknown command": (["meassure", "image=a.npy"], "no such command 'meassure'", "embspace --help"),
    "unknown option before the command": (["--verbose", "measure"], "no such option: --verbose", "embspace --help"),
}


def check_one_line(stderr: str, stdout: str, fragment: str, hint: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and fragment in lines[0] and f"(see {hint})" in lines[0], lines[0]
    assert "Traceback" not in stderr + stdout and not BOX.search(stderr + stdout), stderr
    assert stdout.strip() == "", stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_usage_error_is_one_line_and_exit_code_2(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.chdir(tmp_path)  # relative outputs land here: nothing may be written
    args, fragment, hint = CASES[case]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    check_one_line(result.stderr, result.stdout, fragment, hint)
    assert list(tmp_path.iterdir()) == []


def test_as_a_real_process() -> None:
    """What a user sees from the installed command (the program name does not leak into the hint)."""
    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "image=a.npy", "--foo"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    check_one_line(done.stderr, done.stdout, "no such option: --foo", "embspace measure --help")


def test_help_is_still_help() -> None:
    runner = CliRunner()
    for args in (["measure", "--help"], ["--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.stdout and "error:" not in result.stderr, args
    bare = runner.invoke(app, [])  # no command: the help, not an error line
    assert "Usage" in bare.stdout and "error:" not in bare.stderr
