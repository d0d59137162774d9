"""`embspace finetune`, `embspace shift` and `embspace compare --data-*` end to end; bad input in one line."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embspace.cli import app
from tests import reference as ref


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embspace.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 6))
    image = z @ rng.normal(size=(6, 12)) + 0.2 * rng.normal(size=(200, 12)) + 1.5
    text = z @ rng.normal(size=(6, 12)) + 0.2 * rng.normal(size=(200, 12)) - 1.0
    np.save(root / "train.npy", np.stack([image[:160], text[:160]]).astype(np.float32))
    np.save(root / "eval.npy", np.stack([image[160:], text[160:]]).astype(np.float32))
    np.savez(root / "split.npz", img=image[:160].astype(np.float16), txt=text[:160, :8], img_eval=image[160:],
             txt_eval=text[160:, :8])
    return root


def test_finetune_writes_reports_embeddings_and_the_noise_check(dumps, tmp_path):
    out = tmp_path / "run"
    result = run("finetune", f"pairs={dumps / 'train.npy'}", f"pairs={dumps / 'eval.npy'}", "--loss", "m2mix",
                 "--epochs", "3", "--dim", "8", "--batch-size", "64", "--resamples", "100", "--metrics",
                 "gap,alignment,uniformity,retrieval", "--loss-option", "weight=0.05", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "beyond noise" in result.stdout and "gap" in result.stdout
    assert {f"epoch_{k}.json" for k in range(4)} <= {p.name for p in out.iterdir()}
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["significance"]["resamples"] == 100 and "gap" in comparison["significance"]["metrics"]
    assert json.loads((out / "config.json").read_text())["loss_options"] == {"weight": 0.05}
    assert np.load(out / "eval_adapted.npy").shape == (2, 40, 8)
    # the clip run of the same seed, and the second comparison: clip baseline → m2mix
    assert "clip baseline → m2mix" in result.stdout
    assert json.loads((out / "baseline_clip" / "config.json").read_text())["loss"] == "clip"
    assert "gap" in json.loads((out / "comparison_baseline.json").read_text())["significance"]["metrics"]
    # the run is complete: without --resume the folder is refused, with it nothing is retrained
    again = cli("finetune", f"pairs={dumps / 'train.npy'}", f"pairs={dumps / 'eval.npy'}", "--out", out)
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = cli("finetune", f"pairs={dumps / 'train.npy'}", f"pairs={dumps / 'eval.npy'}", "--loss", "m2mix",
                  "--epochs", "3", "--dim", "8", "--batch-size", "64", "--resamples", "100", "--metrics",
                  "gap,alignment,uniformity,retrieval", "--loss-option", "weight=0.05", "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output


def test_finetune_named_specs_and_a_single_split_dump(dumps, tmp_path):
    split = dumps / "split.npz"
    result = cli("finetune", f"image={split}:img", f"text={split}:txt", f"image={split}:img_eval",
                 f"text={split}:txt_eval", "--loss", "cua", "--epochs", "2", "--dim", "4", "--resamples", "50",
                 "--metrics", "gap", "--out", tmp_path / "named")
    assert result.exit_code == 0, result.output
    result = cli("finetune", f"pairs={dumps / 'eval.npy'}", "--eval-fraction", "0.25", "--adapter", "--epochs", "1",
                 "--resamples", "50", "--metrics", "gap", "--out", tmp_path / "single", "--baseline", "none")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "single" / "comparison_baseline.json").exists() and "clip baseline" not in result.output
    assert np.load(tmp_path / "single" / "eval_adapted.npy").shape == (2, 10, 12)


def test_shift_and_center_write_stacks_and_reports(dumps, tmp_path):
    result = cli("shift", f"pairs={dumps / 'eval.npy'}", "--lam", "0.5", "--out", tmp_path / "s.npy", "--json",
                 tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    x, y = np.load(dumps / "eval.npy")
    shifted = np.load(tmp_path / "s.npy")
    assert shifted.shape == (2, 40, 12) and shifted.dtype == np.float32
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["metrics"]["gap"] == pytest.approx(ref.gap(*shifted), abs=1e-5)
    assert report["metrics"]["gap"] < 0.2 * ref.gap(x, y)
    assert report["settings"]["shift"]["lam"] == 0.5
    centred = cli("shift", f"pairs={dumps / 'eval.npy'}", "--center", "--out", tmp_path / "c.npy")
    assert centred.exit_code == 0, centred.output
    assert abs(ref.cone(np.load(tmp_path / "c.npy")[0])) < 0.05


def test_compare_with_embeddings_adds_the_significance_block(tmp_path):
    x, y = ref.paired_data("cone", 80, 12, seed=1)
    scrambled = y.copy()
    scrambled[:40] = y[:40][::-1]  # half the captions re-paired: recall drops
    np.save(tmp_path / "before.npy", np.stack([x, y]))
    np.save(tmp_path / "after.npy", np.stack([x, scrambled]))
    for name in ("before", "after"):
        assert cli("measure", f"pairs={tmp_path / f'{name}.npy'}", "--metrics", "gap,retrieval", "--json",
                   tmp_path / f"{name}.json").exit_code == 0
    result = cli("compare", tmp_path / "before.json", tmp_path / "after.json", "--data-before",
                 f"pairs={tmp_path / 'before.npy'}", "--data-after", f"pairs={tmp_path / 'after.npy'}", "--resamples",
                 "300", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    assert "RETRIEVAL LOSS" in result.output
    block = json.loads((tmp_path / "c.json").read_text())["significance"]
    assert "recall@1.image->text" in block["retrieval_losses"] and block["resamples"] == 300


# ---- bad input: one line, exit code 2, nothing written ---------------------------------------------------------

BAD = {
    "no --out": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"pairs={d / 'eval.npy'}"],
    "unknown loss": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"pairs={d / 'eval.npy'}", "--loss", "mix",
                                  "--out", o],
    "bad loss option": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"pairs={d / 'eval.npy'}",
                                     "--loss-option", "wieght=1", "--out", o],
    "out inside a file": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"pairs={d / 'eval.npy'}",
                                       "--out", d / "train.npy" / "run"],
    "eval dims differ": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"image={d / 'split.npz'}:img_eval",
                                      f"text={d / 'split.npz'}:txt_eval", "--out", o],
    "partner missing": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"image={d / 'split.npz'}:img",
                                     "--out", o],
    "baseline not a run": lambda d, o: ["finetune", f"pairs={d / 'train.npy'}", f"pairs={d / 'eval.npy'}",
                                        "--baseline", d, "--out", o],
    "three dumps": lambda d, o: ["finetune", *[f"pairs={d / 'train.npy'}"] * 3, "--out", o],
    "adapter on unequal dims": lambda d, o: ["finetune", f"image={d / 'split.npz'}:img",
                                             f"text={d / 'split.npz'}:txt", "--adapter", "--out", o],
    "shift not npy": lambda d, o: ["shift", f"pairs={d / 'eval.npy'}", "--out", o.with_suffix(".npz")],
    "shift unequal dims": lambda d, o: ["shift", f"image={d / 'split.npz'}:img", f"text={d / 'split.npz'}:txt",
                                        "--out", o.with_suffix(".npy")],
    "shift nothing": lambda d, o: ["shift", "--out", o.with_suffix(".npy")],
    "compare one side": lambda d, o: ["compare", d / "x.json", d / "x.json", "--data-before",
                                      f"pairs={d / 'eval.npy'}"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_line_and_exit_code_2(dumps, tmp_path, case):
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dumps.iterdir()}
    result = cli(*BAD[case](dumps, tmp_path / "out"))
    assert result.exit_code == 2, (case, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert list(tmp_path.iterdir()) == []
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dumps.iterdir()} == before
