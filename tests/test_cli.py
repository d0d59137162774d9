"""`embspace measure` and `embspace compare` end to end, as a user runs them (a real subprocess)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import reference as ref

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mind-the-gap"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embspace.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dumps")
    x, y = ref.paired_data("cone", 120, 16, seed=0)
    np.savez(root / "coco.npz", img=x.astype(np.float16), txt=y.astype(np.float32))
    np.save(root / "stack.npy", np.stack([x, y]).astype(np.float32))
    return root


def test_measure_named_modalities_prints_table_and_writes_json(dumps, tmp_path):
    out = tmp_path / "report.json"
    result = run("measure", f"image={dumps / 'coco.npz'}:img", f"text={dumps / 'coco.npz'}:txt", "--json", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("gap", "uniformity", "cone", "rankme", "recall@1", "hubness", "linear_separability"):
        assert name in result.stdout
    report = json.loads(out.read_text())
    assert report["schema"] == "embspace.report/1"
    assert set(report["inputs"]) == {"image", "text"}
    assert report["inputs"]["image"]["dtype"] == "float16"
    x = np.load(dumps / "coco.npz")["img"].astype(np.float64)
    y = np.load(dumps / "coco.npz")["txt"].astype(np.float64)
    assert report["metrics"]["gap"] == pytest.approx(ref.gap(x, y), abs=1e-6)
    assert report["metrics"]["uniformity"]["joint"] == pytest.approx(ref.uniformity_joint(x, y), abs=1e-6)
    assert set(report["metrics"]["recall@1"]) == {"image->text", "text->image"}
    assert report["uncertainty"]["uniformity.image"] == {"method": "exact"}
    assert "Wang & Isola" in report["conventions"]["uniformity"]


def test_measure_pairs_stack_with_names_and_metric_subset(dumps):
    result = run("measure", f"pairs={dumps / 'stack.npy'}", "--names", "photo,caption", "--metrics",
                 "uniformity,gap", "--json", "-")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["inputs"]) == {"photo", "caption"}
    assert set(report["metrics"]) == {"gap", "centroid_cosine", "uniformity"}
    assert set(report["metrics"]["uniformity"]) == {"photo", "caption", "mean", "joint", "cross"}


def test_single_modality_gets_single_modality_metrics(dumps):
    result = run("measure", f"image={dumps / 'coco.npz'}:img", "--json", "-")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert set(metrics) == {"cone", "uniformity", "rankme", "rankme_covariance", "effective_rank",
                            "effective_rank_centered", "participation_ratio", "alpha_req"}


def test_compare_shows_each_change(dumps, tmp_path):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    x, y = ref.paired_data("cone", 120, 16, seed=0)
    np.save(tmp_path / "closer.npy", np.stack([x, ref.unit(x + 0.3 * y)]))
    assert run("measure", f"pairs={dumps / 'stack.npy'}", "--metrics", "gap", "--json", str(before)).returncode == 0
    assert run("measure", f"pairs={tmp_path / 'closer.npy'}", "--metrics", "gap", "--json",
               str(after)).returncode == 0
    result = run("compare", str(before), str(after))
    assert result.returncode == 0, result.stderr
    old = json.loads(before.read_text())["metrics"]["gap"]
    new = json.loads(after.read_text())["metrics"]["gap"]
    assert f"{new - old:+.4f}" in result.stdout


def test_compare_warns_when_settings_differ(dumps, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("measure", f"pairs={dumps / 'stack.npy'}", "--metrics", "uniformity", "--json", str(a)).returncode == 0
    assert run("measure", f"pairs={dumps / 'stack.npy'}", "--metrics", "uniformity", "--t", "3",
               "--json", str(b)).returncode == 0
    result = run("compare", str(a), str(b))
    assert result.returncode == 0
    assert "setting 't' differs" in result.stderr


@pytest.mark.skipif(not (SHARED / "features_clip.npy").exists(), reason="../shared/data/mind-the-gap is absent")
def test_real_clip_embeddings_match_an_independent_computation():
    x, y = np.load(SHARED / "features_clip.npy").astype(np.float64)
    result = run("measure", f"pairs={SHARED / 'features_clip.npy'}", "--json", "-")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["gap"] == pytest.approx(ref.gap(x, y), abs=1e-6)
    assert metrics["cone"]["image"] == pytest.approx(ref.cone(x), abs=1e-6)
    assert metrics["cone"]["text"] == pytest.approx(ref.cone(y), abs=1e-6)
    assert metrics["uniformity"]["image"] == pytest.approx(ref.uniformity(x), abs=1e-6)
    assert metrics["uniformity"]["cross"] == pytest.approx(ref.uniformity_cross(x, y), abs=1e-6)
    assert metrics["recall@1"]["image->text"] == pytest.approx(ref.recall(x, y, 1), abs=1e-12)
    assert metrics["rankme"]["image"] == pytest.approx(ref.rankme(x), rel=1e-6)
    # the published picture: a large gap between two narrow cones (Liang et al. 2022)
    assert metrics["gap"] > 0.7 and metrics["cone"]["image"] > 0.4 and metrics["linear_separability"] == 1.0


# ---- bad input: one line, exit code 2, nothing written, input untouched ----------------------------------------

BAD = {
    "missing file": lambda d: ["measure", f"image={d / 'nope.npy'}"],
    "unknown key": lambda d: ["measure", f"image={d / 'coco.npz'}:nokey"],
    "no NAME=": lambda d: ["measure", str(d / "stack.npy")],
    "unknown metric": lambda d: ["measure", f"pairs={d / 'stack.npy'}", "--metrics", "gapp"],
    "unknown precision": lambda d: ["measure", f"pairs={d / 'stack.npy'}", "--precision", "fp8"],
    "cuda without cuda": lambda d: ["measure", f"pairs={d / 'stack.npy'}", "--device", "cuda"],
    "three modalities": lambda d: ["measure", f"a={d / 'coco.npz'}:img", f"b={d / 'coco.npz'}:txt",
                                   f"c={d / 'coco.npz'}:img"],
    "output folder is a file": lambda d: ["measure", f"pairs={d / 'stack.npy'}", "--json",
                                          str(d / "stack.npy" / "r.json")],
    "report is not json": lambda d: ["compare", str(d / "stack.npy"), str(d / "stack.npy")],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_line_and_exit_code_2(dumps, case):
    import torch

    if case == "cuda without cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    before = {p.name: sha(p) for p in dumps.iterdir()}
    result = run(*BAD[case](dumps))
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: sha(p) for p in dumps.iterdir()} == before


def test_nan_rows_are_refused_then_dropped_on_request(tmp_path):
    x, y = ref.paired_data("random", 50, 8, seed=1)
    x[[3, 17]] = np.nan
    np.save(tmp_path / "stack.npy", np.stack([x, y]))
    refused = run("measure", f"pairs={tmp_path / 'stack.npy'}", "--json", str(tmp_path / "r.json"))
    assert refused.returncode == 2
    assert "row 3" in refused.stderr and "--drop-invalid" in refused.stderr
    assert not (tmp_path / "r.json").exists()
    dropped = run("measure", f"pairs={tmp_path / 'stack.npy'}", "--drop-invalid", "--metrics", "gap", "--json", "-")
    assert dropped.returncode == 0, dropped.stderr
    report = json.loads(dropped.stdout)
    assert report["inputs"]["image"]["n"] == 48 and report["inputs"]["image"]["dropped"] == 2
    keep = np.setdiff1d(np.arange(50), [3, 17])
    assert report["metrics"]["gap"] == pytest.approx(ref.gap(x[keep], y[keep]), abs=1e-6)


def test_require_normalized_refuses_unnormalised_rows(dumps, tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 4)) * 3
    np.save(tmp_path / "raw.npy", x)
    result = run("measure", f"image={tmp_path / 'raw.npy'}", "--require-normalized")
    assert result.returncode == 2
    assert "row 0" in result.stderr and "norm" in result.stderr


@pytest.mark.slow
def test_measure_the_bundled_sample():
    """The README's main job: every metric family on the bundled real sample."""
    result = run("measure", "--sample", "--json", "-")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["inputs"]["image"]["n"] == report["inputs"]["text"]["n"] >= 500
    for family in ("gap", "uniformity", "cone", "rankme", "recall@1", "hubness", "linear_separability", "rmg"):
        assert family in report["metrics"]
    # a trained joint space: pairs retrieve each other far above chance, the gap is smaller than at step 0
    assert report["metrics"]["recall@1"]["image->text"] > 0.1
    first = json.loads(run("measure", "--sample", "--step", "0", "--metrics", "gap", "--json", "-").stdout)
    assert first["metrics"]["gap"] > report["metrics"]["gap"]
