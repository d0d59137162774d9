"""Choosing the pairwise engine's backend (``auto`` / ``torch`` / ``triton``): the parts that need no Triton."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from embspace.errors import InputError
from embspace.kernels import fused
from embspace.kernels.pairwise import ExpSum, stream_pairs
from embspace.kernels.rows import prepare_rows
from tests import reference as ref

CPU = torch.device("cpu")


def test_unknown_backend_is_one_clear_error(monkeypatch):
    rows = prepare_rows(np.eye(3), CPU, torch.float32)
    with pytest.raises(InputError, match="backend: unknown backend 'cuda'"):
        stream_pairs(rows, None, [ExpSum(2.0, symmetric=True, exclude_diagonal=True)], backend="cuda")
    monkeypatch.setenv(fused.BACKEND_ENV, "fast")
    with pytest.raises(InputError, match="EMBSPACE_BACKEND: unknown backend 'fast'"):
        stream_pairs(rows, None, [ExpSum(2.0, symmetric=True, exclude_diagonal=True)])


def test_auto_keeps_cpu_rows_on_the_torch_path(monkeypatch):
    """``auto`` never sends CPU rows to the interpreter; ``torch`` never calls the fused path at all."""
    def refuse(*args, **kwargs):
        raise AssertionError("the fused path was taken")

    monkeypatch.setattr(fused, "stream_fused", refuse)
    x = ref.paired_data("random", 20, 8, seed=0)[0]
    rows = prepare_rows(x, CPU, torch.float32)
    for backend in (None, "auto", "torch"):
        acc = ExpSum(2.0, symmetric=True, exclude_diagonal=True)
        stream_pairs(rows, None, [acc], tile=8, backend=backend)
        assert abs(acc.log_sum() - np.log(190) - ref.uniformity(x)) < 1e-6
    monkeypatch.setenv(fused.BACKEND_ENV, "torch")
    assert fused.choose_backend(rows, None, [acc]) == "torch"


def test_cli_refuses_an_unknown_backend_with_exit_code_2(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, fused.BACKEND_ENV: "gpu"}
    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--sample", "--metrics", "uniformity",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: EMBSPACE_BACKEND: unknown backend 'gpu'; choose one of auto, torch, triton"
    assert not out.exists()
