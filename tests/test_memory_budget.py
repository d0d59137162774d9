"""`--memory` end to end: a dump twice the budget is measured by the CLI in a subprocess whose peak resident memory,
above the fixed cost of starting up (the same command on a tiny dump), stays under the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import reference as ref

BUDGET = 64 << 20
N, DIM = 32_768, 512  # a (2, N, D) float32 stack: 128 MiB, twice the budget


def peak_rss(*args: str, cwd: Path) -> tuple[int, int, str]:
    """Run ``embspace`` in a child process; (exit code, the child's peak RSS in bytes, stderr)."""
    err_path = cwd / "stderr.txt"
    with open(err_path, "w") as err:
        child = subprocess.Popen([sys.executable, "-m", "embspace.cli", *args], stdout=subprocess.DEVNULL,
                                 stderr=err, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss * 1024, err_path.read_text()


@pytest.mark.slow
def test_a_dump_twice_the_budget_completes_under_the_budget(tmp_path):
    x, y = ref.paired_data("cone", N, DIM, seed=4)
    stack = np.stack([x, y]).astype(np.float32)
    big = tmp_path / "big.npy"
    np.save(big, stack)
    assert big.stat().st_size >= 2 * BUDGET
    np.save(tmp_path / "tiny.npy", stack[:, :256])
    before = big.read_bytes()[-4096:]
    del x, y, stack
    common = ["--memory", str(BUDGET), "--sample-above", "1000", "--pairs", "20000", "--queries", "300", "-q",
              "--metrics", "gap,alignment,cone,rmg,uniformity,spectrum,retrieval,separability,histograms"]
    code, baseline, err = peak_rss("measure", "pairs=tiny.npy", *common, "--json", "tiny.json", cwd=tmp_path)
    assert code == 0, err
    code, peak, err = peak_rss("measure", "pairs=big.npy", *common, "--json", "big.json", cwd=tmp_path)
    assert code == 0, err
    assert peak - baseline < BUDGET, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"
    report = json.loads((tmp_path / "big.json").read_text())
    assert report["settings"]["memory"]["streamed"] == ["image", "text"]
    assert report["settings"]["estimate"]["method"] == "sampled"
    assert report["uncertainty"]["uniformity.joint"]["method"] == "sampled"
    assert report["uncertainty"]["recall@1.image->text"]["method"] == "sampled"
    assert report["uncertainty"]["gap"]["method"] == "exact"
    assert big.read_bytes()[-4096:] == before  # input never modified
