"""Runs killed with SIGKILL leave no half-written output, and a killed fine-tuning run resumes to the same result.

Three kinds of kill point, all seeded:

- inside the atomic write of ``embspace measure --json`` (a child process that SIGKILLs itself at the n-th call of
  ``os.write`` — halfway through the bytes — ``os.fsync``, ``os.link`` or ``os.replace``), over an existing report;
- at random times during ``embspace measure`` (startup, reading, computing, writing);
- at random moments of ``embspace finetune`` (a random delay after a random epoch's report appears), each killed
  run resumed with ``--resume`` and killed again, until one finishes: its weights, per-epoch reports, history,
  comparison and adapted embeddings must equal those of a run never interrupted.

After every kill each visible output is absent, its previous content, or complete and valid.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from embspace.finetune.checkpoint import load_checkpoint
from embspace.io.atomic import leftovers
from tests import reference as ref

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "embspace.cli"]
KILLED = -signal.SIGKILL

KILL_AT = """
import os, signal, sys
name, nth, half = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "half"
if sys.argv[4] == "named":
    import embspace.io.atomic
    embspace.io.atomic._O_TMPFILE = 0  # the fallback path, with a named temporary file
import types
import embspace.io.atomic
real = getattr(os, name)
calls = [0]
def patched(*args, **kwargs):
    calls[0] += 1
    if calls[0] == nth:
        if half:  # write half of the bytes, then die
            real(args[0], bytes(args[1])[: len(args[1]) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
# only the atomic writer's calls count: it sees a copy of os with one function replaced
proxy = types.SimpleNamespace(**{key: getattr(os, key) for key in dir(os) if not key.startswith("__")})
setattr(proxy, name, patched)
embspace.io.atomic.os = proxy
sys.argv = ["embspace", *sys.argv[5:]]
from embspace.cli import main
main()
"""


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def check_report(path: Path, old: bytes | None) -> str:
    """The report is absent, its old bytes, or a complete new report: which one."""
    if not path.exists():
        return "absent"
    raw = path.read_bytes()
    if old is not None and raw == old:
        return "old"
    data = json.loads(raw)  # complete JSON or the test fails here
    assert data["schema"] == "embspace.report/1" and "gap" in data["metrics"] and data["inputs"]["image"]["n"] > 0
    return "new"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    x, y = ref.paired_data("cone", 3000, 64, seed=0)
    np.save(root / "stack.npy", np.stack([x, y]).astype(np.float32))
    return root / "stack.npy"


# os.fsync: call 1 flushes the data, call 2 the folder after the rename. os.write: the bytes of the report.
ATOMIC_POINTS = [("write", 1, "half", "anonymous", {"old"}, set()),
                 ("fsync", 1, "-", "anonymous", {"old"}, set()),
                 ("link", 1, "-", "anonymous", {"old"}, set()),
                 ("replace", 1, "-", "anonymous", {"old"}, {"hidden temporary"}),
                 ("fsync", 2, "-", "anonymous", {"new"}, set()),
                 ("write", 1, "half", "named", {"old"}, {"hidden temporary"}),
                 ("replace", 1, "-", "named", {"old"}, {"hidden temporary"})]


@pytest.mark.slow
@pytest.mark.parametrize("point", ATOMIC_POINTS, ids=lambda p: f"{p[3]}-{p[0]}{p[1]}")
def test_kill_inside_the_atomic_write(stack: Path, tmp_path: Path, point: tuple) -> None:
    name, nth, half, path_kind, outcomes, leftovers = point
    out = tmp_path / "report.json"
    old = json.dumps({"schema": "embspace.report/1", "inputs": {"image": {"n": 1}}, "settings": {},
                      "metrics": {"gap": 0.5}}).encode()
    out.write_bytes(old)
    done = subprocess.run([sys.executable, "-c", KILL_AT, name, str(nth), half, path_kind, "measure",
                           f"pairs={stack}", "--metrics", "gap", "--json", str(out), "-q"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == KILLED, done.stderr
    assert check_report(out, old) in outcomes
    hidden = [n for n in visible(tmp_path) if n != "report.json"]
    if leftovers:  # killed between naming the temporary file and the rename: it stays, hidden, never the output
        assert len(hidden) <= 1 and all(n.startswith(".report.json.") and n.endswith(".tmp") for n in hidden)
    else:
        assert hidden == []


@pytest.mark.slow
def test_kill_measure_at_random_times(stack: Path, tmp_path: Path) -> None:
    draw = random.Random(20261123)
    outcomes = []
    for kill in range(4):
        out = tmp_path / f"report_{kill}.json"
        process = subprocess.Popen([*CLI, "measure", f"pairs={stack}", "--metrics", "gap,uniformity,retrieval",
                                    "--json", str(out), "-q"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        time.sleep(draw.uniform(0.5, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        outcomes.append(check_report(out, None))
        assert [n for n in visible(tmp_path) if n.startswith(".")] == []
    assert len(outcomes) == 4


# ---- fine-tuning: kill, resume, kill again, …, same result ------------------------------------------------------

FINETUNE = ["--epochs", "5", "--batch-size", "16", "--dim", "8", "--resamples", "10", "--metrics", "gap,alignment",
            "--seed", "3", "-q"]


def finetune(train: Path, evaluation: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "finetune", f"pairs={train}", f"pairs={evaluation}", "--out", str(out),
                             *FINETUNE, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def check_outputs(folder: Path) -> None:
    """Every file a killed run left is complete: JSON parses, arrays and the checkpoint load. A hidden temporary
    file of the atomic writer may stay when the kill fell between its link and its rename; it is never an output."""
    for path in folder.iterdir():
        if path.name.startswith("."):
            assert leftovers(folder, path.name[1:].rsplit(".", 2)[0]) == [path], path.name
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npy":
            np.load(path)
        elif path.suffix == ".pt":
            load_checkpoint(path)


def kill_after(process: subprocess.Popen, folder: Path, epoch: int, delay: float) -> bool:
    """SIGKILL ``process`` ``delay`` s after ``epoch_{epoch}.json`` appears; False if it finished first."""
    deadline = time.monotonic() + 300
    while not (folder / f"epoch_{epoch}.json").exists():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return True


@pytest.mark.slow
def test_killed_finetune_resumes_to_the_same_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(150, 8))
    shift = np.eye(8)[0] * 3
    x, y = z + shift + 0.2 * rng.normal(size=z.shape), z - shift + 0.2 * rng.normal(size=z.shape)
    np.save(tmp_path / "train.npy", np.stack([x[:110], y[:110]]).astype(np.float32))
    np.save(tmp_path / "eval.npy", np.stack([x[110:], y[110:]]).astype(np.float32))
    train, evaluation = tmp_path / "train.npy", tmp_path / "eval.npy"

    whole = finetune(train, evaluation, tmp_path / "whole")
    assert whole.wait(timeout=600) == 0, whole.stderr.read()

    draw = random.Random(7)
    cut = tmp_path / "cut"
    kills, attempts = 0, 0
    while True:
        attempts += 1
        assert attempts <= 8, "the run never finished"
        process = finetune(train, evaluation, cut, *(["--resume"] if attempts > 1 else []))
        if kills < 3 and kill_after(process, cut, draw.randrange(0, 5), draw.uniform(0.0, 0.6)):
            kills += 1
            check_outputs(cut)
            continue
        assert process.wait(timeout=600) == 0, process.stderr.read()
        break
    assert kills >= 2  # the run was really interrupted, more than once
    check_outputs(cut)

    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(cut / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for name in [f"epoch_{k}.json" for k in range(6)]:
        assert json.loads((cut / name).read_text())["metrics"] == json.loads((tmp_path / "whole" / name)
                                                                             .read_text())["metrics"], name
    for name in ("history.json", "comparison.json"):
        assert json.loads((cut / name).read_text()) == json.loads((tmp_path / "whole" / name).read_text()), name
    assert (cut / "eval_adapted.npy").read_bytes() == (tmp_path / "whole" / "eval_adapted.npy").read_bytes()
