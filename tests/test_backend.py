"""Choosing the pairwise engine's backend (``auto`` / ``torch`` / ``triton``): the parts that need no Triton."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from embspace.errors import InputError
from embspace.kernels import backend as backend_settings
from embspace.kernels import fused
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import ExpSum
from embspace.kernels.rows import prepare_rows
from tests import reference as ref


def needs_triton() -> None:
    """Skip where Triton is not installed: forcing the fused path on the CPU (with stand-ins for the kernels) still
    reads the kernels' limits (MAX_TOPK, MAX_BINS) from :mod:`embspace.kernels.triton`, which imports Triton."""
    pytest.importorskip("triton", reason="Triton is not installed (the kernels' limits live in its module)")

CPU = torch.device("cpu")


def test_unknown_backend_is_one_clear_error(monkeypatch):
    rows = prepare_rows(np.eye(3), CPU, torch.float32)
    with pytest.raises(InputError, match="backend: unknown backend 'cuda'"):
        stream_pairs(rows, None, [ExpSum(2.0, symmetric=True, exclude_diagonal=True)], backend="cuda")
    monkeypatch.setenv(backend_settings.BACKEND_ENV, "fast")
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
    monkeypatch.setenv(backend_settings.BACKEND_ENV, "torch")
    assert fused.choose_backend(rows, None, [acc]) == "torch"


def test_cli_refuses_an_unknown_backend_with_exit_code_2(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, backend_settings.BACKEND_ENV: "gpu"}
    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--sample", "--metrics", "uniformity",
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: EMBSPACE_BACKEND: unknown backend 'gpu'; choose one of auto, torch, triton"
    assert not out.exists()


def test_measure_records_the_backend_and_hands_it_to_every_pairwise_pass(monkeypatch):
    """On the CPU ``auto``, ``torch`` and no choice all resolve to torch; an unknown backend is refused."""
    from embspace.measure import measure

    monkeypatch.delenv(backend_settings.BACKEND_ENV, raising=False)
    x, y = ref.paired_data("random", 30, 8, seed=1)
    for backend in (None, "auto", "torch"):
        assert measure(image=x, text=y, metrics="gap", backend=backend).settings["backend"] == "torch"
    with pytest.raises(InputError, match="backend: unknown backend 'gpu'"):
        measure(image=x, text=y, metrics="gap", backend="gpu")


def test_a_forced_triton_backend_reaches_every_pairwise_pass(monkeypatch):
    """A forced ``triton`` reaches the pairwise passes (the fused path, stood in for by a recorder that runs the
    torch path) and is recorded. The check of which reductions have a kernel reads the kernels' limits from the
    Triton module, so this needs Triton installed (not a GPU)."""
    needs_triton()
    from embspace.measure import measure

    monkeypatch.delenv(backend_settings.BACKEND_ENV, raising=False)
    x, y = ref.paired_data("random", 30, 8, seed=1)
    calls = []

    def recorder(x_rows, y_rows, reductions, *, tile, progress=None):
        calls.append(y_rows is None)
        stream_pairs(x_rows, y_rows, reductions, tile=tile, progress=progress, backend="torch")

    monkeypatch.setattr(fused, "why_not_on", lambda device: None)
    monkeypatch.setattr(fused, "stream_fused", recorder)
    report = measure(image=x, text=y, metrics="uniformity", backend="triton", precision="fp32")
    assert report.settings["backend"] == "triton"
    assert sorted(calls) == [False, True, True]  # image and text within, then image against text
    assert abs(report["uniformity.image"] - ref.uniformity(x)) < 1e-5
    assert backend_settings.requested_backend(None)[0] == "auto"  # the choice does not outlive the call


def test_auto_fuses_the_reductions_that_have_kernels_and_runs_the_rest_on_torch(monkeypatch):
    """A histogram wider than the kernels' limit does not send the exp-sum that shares its pass to torch: under
    auto the exp-sum goes to the fused path (here a stand-in that records it and runs torch) and the histogram gets
    a torch pass of its own; both end as an all-torch call leaves them."""
    needs_triton()
    from embspace.kernels import triton as kernels
    from embspace.kernels.pairwise import Histogram

    monkeypatch.delenv(backend_settings.BACKEND_ENV, raising=False)
    x, y = ref.paired_data("random", 40, 8, seed=6)
    rx, ry = (prepare_rows(v, torch.device("cpu"), torch.float32) for v in (x, y))
    handed = []

    def records(x_rows, y_rows, reductions, *, tile, progress=None, backend=None):
        handed.extend(reductions)
        stream_pairs(x_rows, y_rows, reductions, tile=tile, progress=progress, backend="torch")

    def reductions():
        return [ExpSum(2.0, symmetric=False, exclude_diagonal=True),
                Histogram(kernels.MAX_BINS + 1, symmetric=False)]

    reference = reductions()
    stream_pairs(rx, ry, reference, tile=16, backend="torch")
    assert fused.fusable_part(rx, ry, reference) == []  # on the CPU auto is torch throughout
    monkeypatch.setattr(fused, "_auto_runs_fused", lambda rows: True)  # as on a CUDA device
    monkeypatch.setattr(fused, "why_not_on", lambda device: None)
    monkeypatch.setattr(fused, "stream_fused", records)
    mine = reductions()
    assert fused.fusable_part(rx, ry, mine) == [mine[0]]
    assert fused.fusable_part(rx, ry, mine[:1]) == []  # all of a call fusable: the whole call is fused
    stream_pairs(rx, ry, mine, tile=16, backend="auto")
    assert handed == [mine[0]]
    assert mine[0].log_sum() == reference[0].log_sum() and mine[1].counts() == reference[1].counts()


def test_the_report_counts_the_passes_each_path_really_ran(monkeypatch):
    """Uniformity of a pair is three tiled passes (X within, Y within, X against Y), and so are uniformity,
    retrieval and histograms together; gap alone is none."""
    from embspace.measure import measure

    monkeypatch.delenv(backend_settings.BACKEND_ENV, raising=False)
    x, y = ref.paired_data("random", 30, 8, seed=2)
    assert measure(image=x, text=y, metrics="uniformity").settings["pairwise_passes"] == {"torch": 3}
    assert measure(image=x, text=y, metrics="gap").settings["pairwise_passes"] == {}
    # every exact N² family shares the same three passes: each tile feeds all the reductions that need it
    every = measure(image=x, text=y, metrics="uniformity,retrieval,hubness,histograms")
    assert every.settings["pairwise_passes"] == {"torch": 3}
    assert "uniformity+retrieval+histograms" in every.timings  # one timing for the shared pass
    assert measure(image=x, metrics="uniformity,histograms").settings["pairwise_passes"] == {"torch": 1}


def test_a_pass_the_fused_path_hands_to_torch_is_counted_as_torch(monkeypatch):
    """When the fused path hands a pass to torch (here a stand-in that does exactly that), the count says torch."""
    needs_triton()
    from embspace.measure import measure

    monkeypatch.delenv(backend_settings.BACKEND_ENV, raising=False)
    x, y = ref.paired_data("random", 30, 8, seed=2)

    def hands_to_torch(x_rows, y_rows, reductions, *, tile, progress=None):
        stream_pairs(x_rows, y_rows, reductions, tile=tile, progress=progress, backend="torch")

    monkeypatch.setattr(fused, "why_not_on", lambda device: None)
    monkeypatch.setattr(fused, "stream_fused", hands_to_torch)
    report = measure(image=x, text=y, metrics="uniformity", backend="triton", precision="fp32")
    assert report.settings["backend"] == "triton"
    assert report.settings["pairwise_passes"] == {"torch": 3}


def test_cli_refuses_triton_without_cuda_or_interpreter_in_one_line(tmp_path):
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", backend_settings.BACKEND_ENV)}
    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--sample", "--metrics", "uniformity",
                           "--backend", "triton", "--json", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --backend triton: "), done.stderr  # the API's backend=
    assert "CUDA" in lines[0] or "Triton cannot be imported" in lines[0]
    assert not out.exists()


def test_matmul_precision_uses_one_tf32_api_and_tells_the_fused_path():
    """User code that set torch's new ``fp32_precision`` API (or ``set_float32_matmul_precision("high")``) must not
    make ``matmul_precision`` raise (torch refuses reads of the legacy flag after the new one was set), and only
    ``precision="tf32"`` turns tf32 on, for cuBLAS and the fused kernels alike; the previous setting comes back."""
    from embspace.kernels.backend import matmul_precision

    matmul = torch.backends.cuda.matmul
    previous = torch.get_float32_matmul_precision(), matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        with matmul_precision("fp32"):
            assert matmul.fp32_precision == "ieee" and not backend_settings.tf32_enabled()
        assert matmul.fp32_precision == "tf32"
        torch.set_float32_matmul_precision("high")
        matmul.fp32_precision = "none"
        with matmul_precision("tf32"):
            assert matmul.fp32_precision == "tf32" and backend_settings.tf32_enabled()
        assert matmul.fp32_precision == "none" and not backend_settings.tf32_enabled()
        with matmul_precision("fp16"):
            assert matmul.fp32_precision == "ieee" and not backend_settings.tf32_enabled()
    finally:
        torch.set_float32_matmul_precision(previous[0])
        matmul.fp32_precision = previous[1]
