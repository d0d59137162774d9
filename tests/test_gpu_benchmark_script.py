"""benchmarks/gpu_kernels.py imports and parses its arguments anywhere; without CUDA it stops before writing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_kernels.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_kernels_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_parse():
    bench = load()
    args = bench.parse_args(["--n", "1000", "2000", "--methods", "fused-fp16", "pdist", "--repeats", "2"])
    assert args.n == [1000, 2000] and args.methods == ["fused-fp16", "pdist"] and args.repeats == 2
    defaults = bench.parse_args([])
    assert defaults.n == [100_000, 1_000_000] and defaults.dim == 512 and set(defaults.methods) == set(bench.METHODS)
    assert bench.skipped("retrieval-torch", 10**6, defaults) and not bench.skipped("retrieval-fused", 10**6, defaults)
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "cublas"])
    with pytest.raises(SystemExit):  # a smoke run never writes into benchmarks/results
        bench.parse_args(["--smoke"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_exits_2_and_writes_nothing(tmp_path, capsys):
    bench = load()
    assert bench.main(["--n", "1000", "--out", str(tmp_path / "out")]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
