"""`--memory` end to end: a dump twice the budget is measured by the CLI in a subprocess whose peak resident memory,
above the fixed cost of starting up (the same command on a tiny dump), stays under the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import reference as ref

BUDGET = 64 << 20
N, DIM = 32_768, 512  # a (2, N, D) float32 stack: 128 MiB, twice the budget
EXACT_BUDGET = 8 << 20
EXACT_N, EXACT_DIM = 8_192, 256  # 16 MiB, twice EXACT_BUDGET; N² = 6.7·10⁷ pairs per pass


_LAUNCH = """
import atexit, runpy, sys

def record(path):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])

atexit.register(record, sys.argv.pop(1))
runpy.run_module("embspace.cli", run_name="__main__")
"""


def peak_rss(*args: str, cwd: Path) -> tuple[int, int, str]:
    """Run ``embspace`` in a child process; (exit code, the child's peak RSS in bytes, stderr).

    The peak is the child's own VmHWM, read as it exits: ``ru_maxrss`` would also count the memory this process
    held when it spawned the child.
    """
    err_path, peak_path = cwd / "stderr.txt", cwd / "vmhwm.txt"
    with open(err_path, "w") as err:
        child = subprocess.run([sys.executable, "-c", _LAUNCH, str(peak_path), *args], stdout=subprocess.DEVNULL,
                               stderr=err, cwd=cwd, check=False)
    return child.returncode, int(peak_path.read_text()) * 1024, err_path.read_text()


def write_big_and_tiny(folder: Path, n: int, dim: int, seed: int) -> Path:
    """A (2, n, dim) float32 cone-shaped stack as big.npy, and its first 256 pairs as tiny.npy (the baseline run)."""
    x, y = ref.paired_data("cone", n, dim, seed=seed)
    stack = np.stack([x, y]).astype(np.float32)
    np.save(folder / "big.npy", stack)
    np.save(folder / "tiny.npy", stack[:, :256])
    return folder / "big.npy"


@pytest.mark.slow
def test_a_dump_twice_the_budget_completes_under_the_budget(tmp_path):
    big = write_big_and_tiny(tmp_path, N, DIM, seed=4)
    assert big.stat().st_size >= 2 * BUDGET
    before = big.read_bytes()[-4096:]
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


@pytest.mark.slow
def test_the_exact_pass_of_a_dump_twice_the_budget_stays_under_the_budget(tmp_path):
    """Every pair (uniformity, recall, hubness, histograms): tiles, top-k tables, rank counts, matched similarities
    and streamed row blocks together stay under the budget. Only the N² families are asked for, so that no import
    (scikit-learn, scipy) sets a higher peak in both runs and hides the pass."""
    big = write_big_and_tiny(tmp_path, EXACT_N, EXACT_DIM, seed=5)
    assert big.stat().st_size >= 2 * EXACT_BUDGET
    common = ["--memory", str(EXACT_BUDGET), "--estimate", "exact", "-q",
              "--metrics", "gap,uniformity,retrieval,hubness,histograms"]
    code, baseline, err = peak_rss("measure", "pairs=tiny.npy", *common, "--json", "tiny.json", cwd=tmp_path)
    assert code == 0, err
    code, peak, err = peak_rss("measure", "pairs=big.npy", *common, "--json", "big.json", cwd=tmp_path)
    assert code == 0, err
    print(f"exact pass: peak {peak / 2**20:.1f} MiB, baseline {baseline / 2**20:.1f} MiB")
    assert peak - baseline < EXACT_BUDGET, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"
    report = json.loads((tmp_path / "big.json").read_text())
    assert report["settings"]["memory"]["streamed"] == ["image", "text"]
    assert report["settings"]["estimate"]["method"] == "exact"
    assert sum(report["histograms"]["unmatched"]) == EXACT_N * (EXACT_N - 1)
    assert sum(report["histograms"]["within"]["image"]) == EXACT_N * (EXACT_N - 1) // 2
    assert report["uncertainty"]["hubness.image->text"]["method"] == "exact"


def test_per_row_state_comes_out_of_the_budget_before_the_tiles():
    from embspace.kernels.budget import MIN_TILE, TILE_BYTES_PER_PAIR, plan, tile_within
    from embspace.metrics.retrieval import state_bytes

    layout = plan(64 << 20, 512, 4096)
    assert layout.tile == 512  # 512² pairs · 32 bytes = 8 MiB ≤ a quarter of 64 MiB
    assert tile_within(layout, 0) == 512
    reserved = state_bytes(1_000_000, 1_000_000, 10)  # 1M rows: top-k tables alone are 320 MB
    assert reserved >= 2 * 1_000_000 * 10 * (8 + 8)
    assert tile_within(layout, reserved) == MIN_TILE  # nothing left: the smallest tiles
    left = (64 - 40) << 20
    tile = tile_within(layout, 40 << 20)
    assert tile * tile * TILE_BYTES_PER_PAIR <= left // 4 < (2 * tile) ** 2 * TILE_BYTES_PER_PAIR


def test_matched_similarities_are_the_diagonal_of_the_tile_products():
    import torch

    from embspace.kernels.pairwise import matched_similarities
    from embspace.kernels.rows import prepare_rows

    x, y = ref.paired_data("cone", 300, 8, seed=6)
    rows = [prepare_rows(a, torch.device("cpu"), torch.float64) for a in (x, y)]
    expected = np.einsum("ij,ij->i", *(a / np.linalg.norm(a, axis=1, keepdims=True) for a in (x, y)))
    got = matched_similarities(*rows, tile=64)
    assert got.shape == (300,) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


READER_BUDGET = 16 << 20
READER_N, READER_DIM = 8_192, 1024  # 32 MiB of float32 per modality: twice the budget


def _write_inputs(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    folder.mkdir()
    save_file({"x": x}, str(folder / "image.safetensors"))
    column = pa.FixedSizeListArray.from_arrays(pa.array(y.reshape(-1)), y.shape[1])
    pq.write_table(pa.table({"emb": column}), folder / "text.parquet", row_group_size=1024)


@pytest.mark.slow
def test_safetensors_and_parquet_stream_under_the_budget(tmp_path):
    """Rows are read from the file on request, not through a memory map whose touched pages would stay resident
    (before: the whole of both files ended up in the process's resident memory)."""
    x, y = ref.paired_data("cone", READER_N, READER_DIM, seed=7)
    x, y = x.astype(np.float32), y.astype(np.float32)
    _write_inputs(tmp_path / "big", x, y)
    _write_inputs(tmp_path / "tiny", x[:2048], y[:2048])
    assert (tmp_path / "big" / "image.safetensors").stat().st_size >= 2 * READER_BUDGET
    assert (tmp_path / "big" / "text.parquet").stat().st_size >= 2 * READER_BUDGET
    xn, yn = (a.astype(np.float64) / np.linalg.norm(a.astype(np.float64), axis=1, keepdims=True) for a in (x, y))
    gap = float(np.linalg.norm(xn.mean(0) - yn.mean(0)))
    del x, y, xn, yn  # the child's peak counts what this process holds when it forks
    peaks = {}
    for size in ("tiny", "big"):
        code, peaks[size], err = peak_rss("measure", f"image={size}/image.safetensors", f"text={size}/text.parquet",
                                          "--memory", str(READER_BUDGET), "--metrics", "gap,alignment,cone", "-q",
                                          "--json", f"{size}.json", cwd=tmp_path)
        assert code == 0, err
    print(f"readers: peak {peaks['big'] / 2**20:.1f} MiB, baseline {peaks['tiny'] / 2**20:.1f} MiB")
    assert peaks["big"] - peaks["tiny"] < READER_BUDGET
    report = json.loads((tmp_path / "big.json").read_text())
    assert report["settings"]["memory"]["streamed"] == ["image", "text"]
    assert report["metrics"]["gap"] == pytest.approx(gap, rel=1e-5)
