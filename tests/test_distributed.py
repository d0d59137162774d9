"""Sharded measurement across processes (gloo on the CPU; NCCL variants marked gpu) against one process.

The schedule tests are pure: every pair of items is covered exactly once, for many N, K and tiles. The process
tests start 2 and 3 ranks (torchrun, or plain processes with torchrun's environment, as srun starts them) and
compare every number with the single-process report of the same data. Tolerances: with fp64 tiles 1e-10
(float64 sums in a different order); with the default fp32 tiles the sums of exponentials are summed per tile in
float32 and tiles differ between one process and K shards, so uniformity agrees to 1e-6 (measured: ~1e-7);
counts (histograms, recall, k-occurrence) and the separability probe agree exactly; everything else to 1e-9.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import embspace
from embspace.distributed import exact_estimate, shard_bounds
from embspace.distributed.plan import ring_steps, visits
from embspace.distributed.shards import PickedRows
from embspace.errors import InputError
from embspace.metrics.separability import gather_rows
from embspace.report import flatten

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 120  # seconds a whole multi-process run may take before the test fails


# --- the plan, without processes --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 7, 100, 101, 1000])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_are_balanced_contiguous_and_cover_every_row(n, world):
    bounds = shard_bounds(n, world)
    assert len(bounds) == world
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


def covered(n: int, world: int, symmetric: bool) -> np.ndarray:
    """How often each pair (i, j) is computed by the ring schedule (pairs i < j only for symmetric problems)."""
    bounds = shard_bounds(n, world)
    count = np.zeros((n, n), dtype=np.int64)
    for rank in range(world):
        r0, r1 = bounds[rank]
        for visit in visits(rank, world, symmetric):
            c0, c1 = bounds[visit.shard]
            if visit.own:  # stream_pairs on the own shard: its upper triangle (symmetric) or the whole block
                block = np.triu(np.ones((r1 - r0, r1 - r0), dtype=np.int64), 1) if symmetric else 1
                count[r0:r1, r0:r1] += block
                continue
            a, b, c, d = visit.block(r1 - r0, c1 - c0)
            count[r0 + a : r0 + b, c0 + c : c0 + d] += 1
    return count


@pytest.mark.parametrize("n", [2, 5, 13, 40, 41, 64])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 5, 6, 8])
def test_ring_schedule_computes_every_pair_exactly_once_and_evenly(n, world):
    sym = covered(n, world, symmetric=True)
    unordered = sym + sym.T  # a pair computed as (j, i) counts for {i, j}
    off = ~np.eye(n, dtype=bool)
    assert (unordered[off] == 1).all() and (np.diag(sym) == 0).all()
    assert (covered(n, world, symmetric=False) == 1).all()
    work = pairs_per_rank(n, world)
    if n % (2 * world) == 0:  # equal shards of an even size: exactly the same number of pairs on every rank
        assert len(set(work)) == 1
    assert max(work) - min(work) <= n  # otherwise within a row or column of a shard per step


def pairs_per_rank(n: int, world: int) -> list[int]:
    """How many pairs each rank multiplies in a symmetric pass."""
    bounds = shard_bounds(n, world)
    work = []
    for rank, (start, stop) in enumerate(bounds):
        total = 0
        for visit in visits(rank, world, True):
            if visit.own:
                total += (stop - start) * (stop - start - 1) // 2
            else:
                r0, r1, c0, c1 = visit.block(stop - start, bounds[visit.shard][1] - bounds[visit.shard][0])
                total += (r1 - r0) * (c1 - c0)
        work.append(total)
    return work
    assert len(visits(0, world, True)) == ring_steps(world, True) == world // 2 + 1
    assert len(visits(0, world, False)) == world


def test_picked_rows_serve_the_separability_gather():
    data = torch.arange(40, dtype=torch.float64).reshape(20, 2)
    index = np.array([1, 2, 3, 7, 12, 13, 19])
    picked = PickedRows("x", 20, 2, torch.device("cpu"), torch.float64, max_rows=2, index=index, data=data[index])
    np.testing.assert_array_equal(gather_rows(picked, index[[0, 2, 3, 6]]), data[index[[0, 2, 3, 6]]].numpy())
    with pytest.raises(IndexError):
        picked.block(3, 5)


def test_sampled_estimates_are_refused_across_ranks():
    assert exact_estimate("auto") == exact_estimate("exact") == "exact"
    with pytest.raises(InputError, match="--estimate"):
        exact_estimate("sampled")


def test_several_dumps_are_refused_under_torchrun(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from embspace.cli import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["measure", "--sample", "--all-steps", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "run in one process" in result.output
    assert not (tmp_path / "out").exists()


# --- processes --------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "EMBSPACE_DIST_TIMEOUT": "30", **extra}
    env.pop("WORLD_SIZE", None)
    return env


def torchrun(world: int, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world), "--master-addr",
               "127.0.0.1", "--master-port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env or environment(),
                          timeout=RUN_TIMEOUT)


def ranks(world: int, *args: str, cwd: Path, env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """``world`` plain processes with torchrun's environment (as ``srun`` starts them with a rendezvous)."""
    port, procs = str(free_port()), []
    for rank in range(world):
        rank_env = {**(env or environment()), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
                    "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world)}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=cwd, env=rank_env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    for proc in procs:
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
        out.append((proc.returncode, err))
    return out


SHARDED_LEFT_OUT = {  # report keys a sharded run leaves out, by the setting that says why
    ("retrieval", "tie conventions"): ("recall_pessimistic@", "recall_expected@", "tied_partner"),
    ("retrieval", "margins"): ("margin_",),
    ("structure", "mutual_knn"): ("mutual_knn",),
    ("modality_bias", "sharded run"): ("modality_bias",)}


def sharded_left_out(sharded: dict, want: dict) -> set[str]:
    """The single-process keys a sharded report leaves out; each one's reason must be in its settings."""
    out = set()
    for (family, what), prefixes in SHARDED_LEFT_OUT.items():
        keys = {key for key in want if key.startswith(prefixes)}
        if keys:
            assert what in sharded["settings"][family]["left_out"], (family, what)
            out |= keys
    return out


def assert_same_report(sharded: dict, single: dict, world: int, uniformity_tol: float, tol: float,
                       hubness_tol: float | None = None) -> None:
    assert sharded["settings"]["distributed"]["world_size"] == world
    assert sharded["settings"]["distributed"]["schedule"] == "ring"
    assert sum(sharded["settings"]["distributed"]["shard_rows"]) == next(iter(single["inputs"].values()))["n"]
    single_inputs = {name: {k: v for k, v in entry.items() if k != "duplicate_rows"}
                     for name, entry in single["inputs"].items()}  # rank 0 hashes rows for the content hash only
    assert sharded["inputs"] == single_inputs
    got, want = flatten(sharded["metrics"]), flatten(single["metrics"])
    left_out = sharded_left_out(sharded, want)
    assert got.keys() == want.keys() - left_out, sorted(want.keys() - left_out - got.keys())
    for key, value in want.items():
        if key in left_out:
            continue
        if key.startswith(("recall@", "linear_separability")):
            assert got[key] == value, key  # counts and the same probe on the same rows: exact
        elif key.startswith("uniformity"):
            assert got[key] == pytest.approx(value, abs=uniformity_tol), key
        elif key.startswith("hubness"):
            assert got[key] == pytest.approx(value, rel=tol, abs=hubness_tol or tol, nan_ok=True), key
        else:
            assert got[key] == pytest.approx(value, rel=tol, abs=tol, nan_ok=True), key
    margins_left_out = "margin" in sharded["settings"].get("histograms", {}).get("left_out", {})
    assert sharded["histograms"] == {key: value for key, value in single["histograms"].items()
                                     if not (key == "margin" and margins_left_out)}
    for name, spectra in single["spectra"].items():
        for kind, values in spectra.items():
            np.testing.assert_allclose(sharded["spectra"][name][kind], values, rtol=tol, atol=tol)
    if "gap_direction" in single["vectors"]:
        np.testing.assert_allclose(sharded["vectors"]["gap_direction"], single["vectors"]["gap_direction"], atol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("world", [3])
def test_cli_sample_across_ranks_equals_one_process(world, tmp_path):
    result = torchrun(world, "-m", "embspace.cli", "measure", "--sample", "--json", "report.json", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("uniformity") == 1  # only rank 0 prints
    single = embspace.measure(embspace.load_sample(), precision="fp32").to_dict()
    sharded = json.loads((tmp_path / "report.json").read_text())
    # The sample repeats 5 texts and 1 image: ties for the k-th slot go to the lower global row index in one process
    # as in K, so hubness is the same number.
    assert_same_report(sharded, single, world, uniformity_tol=1e-6, tol=1e-9)
    assert flatten(sharded["metrics"])["hubness.image->text"] == flatten(single["metrics"])["hubness.image->text"]
    assert flatten(sharded["metrics"])["hubness.text->image"] == flatten(single["metrics"])["hubness.text->image"]
    assert sharded["settings"]["distributed"]["shard_rows"] == [334, 333, 333]


API_SCRIPT = """
import json, os
import numpy as np
import embspace
from embspace.distributed import is_main

x, y = np.load("x.npy"), np.load("y.npy")
options = {"tile": 8, "precision": "fp64", "drop_invalid": True, "hubness_k": 5}
stored, reads = embspace.Embeddings.from_array(x, "<image: ndarray>"), []

def read(start, stop):  # the rows of x this rank reads
    reads.append((start, stop))
    return stored.read(start, stop)

logged = embspace.Embeddings(stored.source, stored.n, stored.dim, stored.dtype, read)
paired = embspace.measure(image=logged, text=y, **options)
json.dump(reads, open(f"reads{os.environ['RANK']}.json", "w"))
single = embspace.measure(image=x, **options)
tiny = embspace.measure(image=x[:2], text=y[:2], **options)  # 2 rows: with 3 ranks one shard is empty
if is_main():
    reports = {"paired": paired.to_dict(), "single": single.to_dict(), "tiny": tiny.to_dict()}
    json.dump(reports, open("reports.json", "w"))
"""


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> Path:
    """103 pairs (not divisible by 2 or 3), two rows with NaN to drop, and a script that measures them."""
    root = tmp_path_factory.mktemp("uneven")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(103, 12)) + 0.8
    y = x + rng.normal(scale=0.9, size=x.shape) - 0.5
    x[40, 3], y[90, 0] = np.nan, np.inf
    np.save(root / "x.npy", x.astype(np.float32))
    np.save(root / "y.npy", y.astype(np.float32))
    (root / "measure.py").write_text(textwrap.dedent(API_SCRIPT))
    return root


@pytest.mark.parametrize("world", [2, 3])
def test_api_uneven_shards_equal_one_process(world, uneven, tmp_path):
    for name in ("x.npy", "y.npy", "measure.py"):
        (tmp_path / name).write_bytes((uneven / name).read_bytes())
    for code, err in finish(ranks(world, "measure.py", cwd=tmp_path)):
        assert code == 0, err[-3000:]
    reports = json.loads((tmp_path / "reports.json").read_text())
    x, y = np.load(uneven / "x.npy"), np.load(uneven / "y.npy")
    options = {"tile": 8, "precision": "fp64", "drop_invalid": True, "hubness_k": 5}
    paired = embspace.measure(image=x, text=y, **options).to_dict()
    assert paired["inputs"]["image"]["n"] == 101 and paired["inputs"]["image"]["dropped"] == 2
    assert_same_report(reports["paired"], paired, world, uniformity_tol=1e-10, tol=1e-10)
    assert_same_report(reports["single"], embspace.measure(image=x, **options).to_dict(), world, 1e-10, 1e-10)
    tiny = embspace.measure(image=x[:2], text=y[:2], **options).to_dict()
    assert_same_report(reports["tiny"], tiny, world, 1e-10, 1e-10)
    # Ranks other than 0 (which hashes every row for the report) read only their own rows: the shard they validate,
    # then the span of their shard of the rows kept after dropping rows 40 and 90.
    keep = np.setdiff1d(np.arange(103), [40, 90])
    for rank in range(1, world):
        lo, hi = shard_bounds(101, world)[rank]
        allowed = [shard_bounds(103, world)[rank], (int(keep[lo]), int(keep[hi - 1]) + 1)]
        reads = json.loads((tmp_path / f"reads{rank}.json").read_text())
        assert reads and all(any(a <= start and stop <= b for a, b in allowed) for start, stop in reads if stop > start)


FUSED_SCRIPT = """
import json
import numpy as np
import embspace
from embspace.distributed import is_main

x, y = np.load("x.npy"), np.load("y.npy")
report = embspace.measure(image=x, text=y, metrics="uniformity,histograms", precision="fp32", tile=32,
                          drop_invalid=True)
if is_main():
    json.dump(report.to_dict(), open("fused.json", "w"))
"""


def test_fused_kernels_across_ranks_under_the_interpreter(uneven, tmp_path):
    """Every block, own or visiting, through the Triton kernels (interpreted on the CPU), against one torch process."""
    pytest.importorskip("triton")
    for name in ("x.npy", "y.npy"):
        (tmp_path / name).write_bytes((uneven / name).read_bytes())
    (tmp_path / "fused.py").write_text(textwrap.dedent(FUSED_SCRIPT))
    env = environment(TRITON_INTERPRET="1", EMBSPACE_BACKEND="triton")
    for code, err in finish(ranks(2, "fused.py", cwd=tmp_path, env=env)):
        assert code == 0, err[-3000:]
    sharded = json.loads((tmp_path / "fused.json").read_text())
    x, y = np.load(uneven / "x.npy"), np.load(uneven / "y.npy")
    single = embspace.measure(image=x, text=y, metrics="uniformity,histograms", precision="fp32", tile=32,
                              drop_invalid=True).to_dict()  # the torch path (the rows are on the CPU)
    assert_same_report(sharded, single, 2, uniformity_tol=1e-6, tol=1e-9)


DUPLICATES_SCRIPT = """
import json
import numpy as np
import embspace
from embspace.distributed import is_main

x, y = np.load("x.npy"), np.load("y.npy")
report = embspace.measure(image=x, text=y, metrics="retrieval,hubness", precision="fp64", tile=8, hubness_k=5)
if is_main():
    json.dump(report.to_dict()["metrics"], open("duplicates.json", "w"))
"""


def duplicated_pairs(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """97 pairs built from 12 distinct images and 9 distinct captions: almost every similarity is tied.

    Rows of ±¼ in 16 dimensions: unit norm and every product exact, so the ties are ties whatever the BLAS's
    summation order (MKL on AMD EPYC rounds one dot product differently by its position in a tile)."""
    rng = np.random.default_rng(seed)
    images, captions = rng.choice([-0.25, 0.25], size=(12, 16)), rng.choice([-0.25, 0.25], size=(9, 16))
    return images[rng.integers(0, 12, 97)], captions[rng.integers(0, 9, 97)]


@pytest.mark.parametrize("world", [2, 3])
def test_ties_give_bit_identical_discrete_results_for_any_number_of_ranks(world, tmp_path):
    """Duplicated rows tie everywhere: top-k sets break ties by global row index, so recall and hubness are the
    same numbers in 1, 2 and 3 processes and with any tile."""
    x, y = duplicated_pairs()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "duplicates.py").write_text(textwrap.dedent(DUPLICATES_SCRIPT))
    for code, err in finish(ranks(world, "duplicates.py", cwd=tmp_path)):
        assert code == 0, err[-3000:]
    sharded = json.loads((tmp_path / "duplicates.json").read_text())
    for tile in (8, 5, 97):
        single = embspace.measure(image=x, text=y, metrics="retrieval,hubness", precision="fp64", tile=tile,
                                  hubness_k=5).to_dict()["metrics"]
        left_out = {key for key in single if key.startswith(("recall_pessimistic@", "recall_expected@",
                                                              "tied_partner", "margin_"))}
        assert left_out and sharded == {k: v for k, v in single.items() if k not in left_out}, tile


DYING_SCRIPT = """
import os, sys
import embspace.distributed.executor as run
from embspace.cli import main

real = run.stream_between

def stream_between(*args, **kwargs):
    if os.environ["RANK"] == "1":
        os._exit(1)  # this rank dies in the middle of a ring pass
    return real(*args, **kwargs)

run.stream_between = stream_between
sys.argv = ["embspace", *sys.argv[1:]]
main()
"""


PROGRESS_SCRIPT = """
import numpy as np
import embspace

x, y = np.load("x.npy"), np.load("y.npy")
embspace.measure(image=x, text=y, metrics="uniformity,retrieval,hubness,histograms", tile=8, drop_invalid=True,
                 progress=True)
"""


def test_rank_zero_alone_shows_progress_by_ring_step(uneven, tmp_path):
    """Rank 0's bar counts the shards it visits: with 3 ranks, 2 per symmetric pass and 3 per cross pass; uniformity,
    retrieval, hubness and histograms share one ring pass per pair space (as in one process): 2 + 2 + 3 = 7 steps."""
    for name in ("x.npy", "y.npy"):
        (tmp_path / name).write_bytes((uneven / name).read_bytes())
    (tmp_path / "progress.py").write_text(textwrap.dedent(PROGRESS_SCRIPT))
    result = torchrun(3, "progress.py", cwd=tmp_path, env=environment(TQDM_MININTERVAL="0"))  # draw every step
    assert result.returncode == 0, result.stderr[-3000:]
    assert "measuring (rank 0 of 3)" in result.stderr and "| 7/7 [" in result.stderr
    assert "rank 1 of 3" not in result.stderr and "rank 2 of 3" not in result.stderr


def test_a_dead_rank_ends_the_run_without_a_report(tmp_path):
    (tmp_path / "dying.py").write_text(textwrap.dedent(DYING_SCRIPT))
    env = environment(EMBSPACE_DIST_TIMEOUT="20")
    start = time.monotonic()
    results = finish(ranks(2, "dying.py", "measure", "--sample", "--metrics", "uniformity", "--json", "report.json",
                           "-q", cwd=tmp_path, env=env))
    assert time.monotonic() - start < 20 + 15
    (code0, err0), (code1, _) = results
    assert code1 == 1 and code0 not in (0, 2), err0
    assert "lost contact with the other ranks" in err0 and "Traceback" not in err0
    assert not (tmp_path / "report.json").exists()


def test_a_shard_that_cannot_be_read_ends_every_rank_with_one_message(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    rows = [list(map(float, r)) for r in rng.normal(size=(60, 4))]
    rows[47] = None  # rank 1 of 2 holds rows 30–59; only it reads this row group
    pq.write_table(pa.table({"img": pa.array(rows, type=pa.list_(pa.float32()))}), tmp_path / "emb.parquet",
                   row_group_size=10)
    results = finish(ranks(2, "-m", "embspace.cli", "measure", "image=emb.parquet:img", "--json", "report.json",
                           cwd=tmp_path))
    assert [code for code, _ in results] == [2, 2]
    # the message one process gives for the same file, once
    assert results[0][1].strip().splitlines() == ["error: emb.parquet:img: row 47 is null; every row needs 4 values"]
    assert results[1][1].strip() == ""  # the rank that found it stays quiet: rank 0 tells
    assert not (tmp_path / "report.json").exists()


# --- GPUs -------------------------------------------------------------------------------------------------------

def cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(cuda_devices() < 1, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["nccl", "gloo"])
def test_gpu_ranks_equal_one_process(backend, uneven, tmp_path):
    """Two ranks on CUDA: NCCL needs one GPU per rank; gloo (CPU messages, CUDA compute) may share one GPU."""
    if backend == "nccl" and cuda_devices() < 2:
        pytest.skip("NCCL refuses two ranks on one GPU; needs 2 CUDA devices")
    for name in ("x.npy", "y.npy", "measure.py"):
        (tmp_path / name).write_bytes((uneven / name).read_bytes())
    result = torchrun(2, "measure.py", cwd=tmp_path, env=environment(EMBSPACE_DIST_BACKEND=backend))
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads((tmp_path / "reports.json").read_text())
    assert reports["paired"]["settings"]["device"] == "cuda"
    assert reports["paired"]["settings"]["distributed"]["backend"] == backend
    x, y = np.load(uneven / "x.npy"), np.load(uneven / "y.npy")
    options = {"tile": 8, "precision": "fp64", "drop_invalid": True, "hubness_k": 5, "device": "cpu"}
    assert_same_report(reports["paired"], embspace.measure(image=x, text=y, **options).to_dict(), 2, 1e-10, 1e-10)
