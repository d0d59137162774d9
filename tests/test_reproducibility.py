"""Same input and settings, same numbers, bit for bit; a report says what it was made from; compare says when two
reports were not made alike."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.report import Report
from tests import reference as ref

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = "gap,alignment,cone,rmg,uniformity,spectrum,retrieval,hubness,separability,histograms"


def blake2b_of_rows(array: np.ndarray, dtype_name: str) -> str:
    """The documented content hash, computed here independently: header line, then little-endian C-order bytes."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(f"{dtype_name} {array.shape[0]} {array.shape[1]}\n".encode())
    digest.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return "blake2b-256:" + digest.hexdigest()


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    x, y = ref.paired_data("cone", 300, 24, seed=3)
    return x.astype(np.float32), y.astype(np.float32)


def test_two_runs_give_bitwise_identical_metrics(pair) -> None:
    x, y = pair
    first = embspace.measure(image=x, text=y, metrics=FAMILIES, tile=64)
    second = embspace.measure(image=x.copy(), text=y.copy(), metrics=FAMILIES, tile=64)
    assert json.dumps(first.to_dict()["metrics"]) == json.dumps(second.to_dict()["metrics"])
    assert first.histograms == second.histograms and first.spectra == second.spectra
    assert first.inputs == second.inputs


@pytest.mark.slow
def test_two_processes_write_identical_metrics(pair, tmp_path: Path) -> None:
    x, y = pair
    np.save(tmp_path / "stack.npy", np.stack([x, y]))
    texts = []
    for run in range(2):
        out = tmp_path / f"r{run}.json"
        done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", f"pairs={tmp_path / 'stack.npy'}",
                               "--json", str(out), "-q"], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        texts.append(json.loads(out.read_text()))
    for key in ("metrics", "inputs", "histograms", "spectra", "vectors", "environment"):
        assert texts[0][key] == texts[1][key], key
    settings = [{k: v for k, v in text["settings"].items() if k != "memory"} for text in texts]
    assert settings[0] == settings[1]  # the memory budget records the free memory of the moment
    assert texts[0]["inputs"]["image"]["content_hash"] == blake2b_of_rows(x, "float32")


def test_content_hash_is_the_documented_blake2b_of_the_rows(pair, tmp_path: Path) -> None:
    x, _ = pair
    expected = blake2b_of_rows(x, "float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x_big_endian.npy", x.astype(">f4"))
    pq.write_table(pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])}),
                   tmp_path / "x.parquet", row_group_size=70)
    torch.save({"x": torch.from_numpy(x)}, tmp_path / "x.pt")
    for spec in ("x.npy", "x_big_endian.npy", "x.parquet", "x.pt:x"):
        report = embspace.measure(embspace.load(f"image={tmp_path / spec}"), metrics="cone")
        assert report.inputs["image"]["content_hash"] == expected, spec
    assert embspace.measure(image=x, metrics="cone").inputs["image"]["content_hash"] == expected
    flipped = x.copy()
    flipped.view(np.uint32)[123, 5] ^= 1  # one bit of one value
    assert embspace.measure(image=flipped, metrics="cone").inputs["image"]["content_hash"] != expected
    as64 = embspace.measure(image=x.astype(np.float64), metrics="cone").inputs["image"]["content_hash"]
    assert as64 == blake2b_of_rows(x.astype(np.float64), "float64") != expected
    bf16 = torch.from_numpy(x).to(torch.bfloat16)
    save_file({"x": bf16}, str(tmp_path / "x.safetensors"))
    digest = hashlib.blake2b(f"bfloat16 {x.shape[0]} {x.shape[1]}\n".encode(), digest_size=32)
    digest.update(bf16.view(torch.int16).numpy().astype("<i2").tobytes())
    report = embspace.measure(embspace.load(f"image={tmp_path / 'x.safetensors'}"), metrics="cone")
    assert report.inputs["image"]["content_hash"] == "blake2b-256:" + digest.hexdigest()


def test_report_records_versions_device_and_precision(pair) -> None:
    x, y = pair
    report = embspace.measure(image=x, text=y, metrics="gap", precision="fp64")
    env = report.environment
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["python"] == platform.python_version() and env["threads"] == torch.get_num_threads()
    assert report.settings["device"] == "cpu" and report.settings["precision"] == "fp64"
    assert report.embspace_version == embspace.__version__
    again = Report.from_json(report.to_json())
    assert again.environment == env and again.inputs == report.inputs


def test_undefined_metrics_are_written_as_null(tmp_path: Path) -> None:
    """Identical rows leave the α-ReQ slope undefined: the report says null, the CLI writes it, no crash."""
    rows = np.ones((20, 6), dtype=np.float32)
    np.save(tmp_path / "same.npy", np.stack([rows, rows]))
    result = CliRunner().invoke(app, ["measure", f"pairs={tmp_path / 'same.npy'}", "--json", str(tmp_path / "r.json"),
                                      "-q"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["metrics"]["alpha_req"] == {"image": None, "text": None}
    assert data["metrics"]["gap"] == pytest.approx(0.0, abs=1e-7)
    assert Report.from_json(tmp_path / "r.json")["alpha_req.image"] is None


# ---- compare: what it says about how two reports were made ----------------------------------------------------


@pytest.fixture(scope="module")
def base(pair) -> Report:
    x, y = pair
    return embspace.measure(image=x, text=y, metrics="gap,uniformity,retrieval")


def test_same_inputs_and_settings_give_no_warning(pair, base) -> None:
    x, y = pair
    again = embspace.measure(image=x, text=y, metrics="gap,uniformity,retrieval")
    assert embspace.compare(base, again).warnings == []


def test_compare_warns_on_other_data_settings_device_and_versions(pair, base) -> None:
    x, y = pair
    other = embspace.measure(image=x[::-1].copy(), text=y, metrics="gap,uniformity,retrieval")
    assert embspace.compare(base, other).warnings == []  # other data from elsewhere: a before/after comparison
    hotter = embspace.measure(image=x, text=y, metrics="gap,uniformity,retrieval", t=3.0)
    assert any("setting 't' differs: 2.0 before, 3.0 after" in w for w in embspace.compare(base, hotter).warnings)
    moved = dataclasses.replace(base, settings={**base.settings, "device": "cuda"},
                                environment={**base.environment, "torch": "2.11.0"})
    warnings = embspace.compare(base, moved).warnings
    assert any("device differs: cpu before, cuda after" in w for w in warnings)
    assert any(f"torch version differs: {torch.__version__} before, 2.11.0 after" in w for w in warnings)


def test_compare_warns_when_a_file_changed_between_reports(pair, tmp_path: Path) -> None:
    x, y = pair
    np.save(tmp_path / "img.npy", x)
    np.save(tmp_path / "txt.npy", y)
    specs = (f"image={tmp_path / 'img.npy'}", f"text={tmp_path / 'txt.npy'}")
    before = embspace.measure(embspace.load(*specs), metrics="gap")
    np.save(tmp_path / "img.npy", x[::-1].copy())  # same name, other rows
    after = embspace.measure(embspace.load(*specs), metrics="gap")
    warnings = embspace.compare(before, after).warnings
    assert len(warnings) == 1, warnings
    assert f"input 'image' ({tmp_path / 'img.npy'}) holds different data" in warnings[0]
    assert before.inputs["image"]["content_hash"][:24] in warnings[0]


def test_compare_flags_numbers_that_were_not_reproduced(base, tmp_path: Path) -> None:
    data = json.loads(base.to_json())
    data["metrics"]["uniformity"]["image"] += 1e-12
    tampered = Report.from_dict(data)
    warnings = embspace.compare(base, tampered).warnings
    assert warnings == ["not reproduced: the same inputs and settings gave different values (uniformity.image)"]
    base.to_json(tmp_path / "a.json")
    tampered.to_json(tmp_path / "b.json")
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == 0 and "warning: not reproduced" in result.stderr
