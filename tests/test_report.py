"""The Report object: JSON contract, round trip, table, HTML, pandas frame; the Python API around it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import embspace
from embspace.report import SCHEMA, Report
from tests import reference as ref


@pytest.fixture(scope="module")
def report() -> Report:
    x, y = ref.paired_data("cone", 150, 12, seed=3)
    return embspace.measure(image=x, text=torch.from_numpy(y).float(), device="cpu")


def test_json_follows_the_contract(report):
    data = json.loads(report.to_json())
    assert data["schema"] == SCHEMA
    assert data["embspace_version"] == embspace.__version__
    assert set(data) >= {"inputs", "settings", "metrics", "uncertainty", "timings", "created"}
    assert data["inputs"]["image"].pop("content_hash").startswith("blake2b-256:")  # tests/test_reproducibility.py
    assert data["inputs"]["image"] == {"source": "<image: ndarray>", "n": 150, "dim": 12, "dtype": "float64",
                                       "dropped": 0}
    assert data["inputs"]["text"]["dtype"] == "float32"
    for key in ("t", "alpha", "device", "precision", "normalize"):
        assert key in data["settings"]
    metrics = data["metrics"]
    for scalar in ("gap", "centroid_cosine", "alignment", "matched_cosine", "rmg", "linear_separability"):
        assert isinstance(metrics[scalar], float)
    assert set(metrics["uniformity"]) == {"image", "text", "mean", "joint", "cross"}
    assert set(metrics["cone"]) == {"image", "text"}
    assert set(metrics["recall@5"]) == {"image->text", "text->image"}
    assert set(metrics["hubness"]) == {"image->text", "text->image"}
    assert set(data["uncertainty"]) == set(report.flat())
    assert len(data["vectors"]["gap_direction"]) == 12
    assert len(data["spectra"]["image"]["singular_values"]) == 12


def test_round_trip_through_a_file(report, tmp_path):
    path = tmp_path / "r.json"
    report.to_json(path)
    again = Report.from_json(path)
    assert again.flat() == report.flat()
    assert again.settings == json.loads(json.dumps(report.settings))
    assert Report.from_json(report.to_json()).flat() == report.flat()


def test_views(report):
    frame = report.to_frame()
    assert list(frame.columns) == ["metric", "key", "value", "method"]
    assert len(frame) == len(report.flat())
    row = frame[(frame.metric == "uniformity") & (frame.key == "joint")]
    assert row.value.item() == report["uniformity.joint"]
    html = report._repr_html_()
    assert html.count("<tr>") == len(report.flat()) + 1 and "uniformity" in html
    text = report.table()
    assert "uniformity [joint]" in text and f"{report['gap']:.4f}" in text


def test_plain_table_shows_the_interval_of_sampled_numbers():
    """Sampled numbers carry their 95 % interval and sample size in ``table()`` (as in the CLI's table); exact
    numbers carry none."""
    hand = Report(
        inputs={"image": {"source": "a.npy", "n": 10, "dim": 4, "dtype": "float32"}},
        settings={}, metrics={"gap": 0.25, "uniformity": {"image": -1.8, "text": -1.7}},
        uncertainty={"gap": {"method": "exact"},
                     "uniformity.image": {"method": "sampled", "samples": 5000, "ci": [-1.81234, -1.78766],
                                          "confidence": 0.95},
                     "uniformity.text": {"method": "sampled", "samples": 1_000_000, "ci": [-1.7001, -1.6999],
                                         "confidence": 0.95}})
    lines = {line.split()[0] + (" " + line.split()[1] if "[" in line.split()[1] else ""): line
             for line in hand.table().splitlines()[2:]}
    assert lines["uniformity [image]"].split()[2:] == ["-1.8000", "95", "%", "[-1.8123,", "-1.7877]", "n=5,000",
                                                       "(sampled)"]
    assert lines["uniformity [text]"].endswith("95 % [-1.7001, -1.6999]  n=1,000,000  (sampled)")
    assert lines["gap"].split() == ["gap", "0.2500"]


def test_lookup(report):
    assert report["uniformity"]["mean"] == report["uniformity.mean"]
    with pytest.raises(KeyError, match="no metric 'gapp'"):
        report["gapp"]


def test_from_json_refuses_what_is_not_a_report(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "other/1"}')
    with pytest.raises(embspace.InputError, match="not an embspace report"):
        Report.from_json(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(embspace.InputError, match="invalid JSON at line 1"):
        Report.from_json(tmp_path / "bad.json")


def test_measure_accepts_opened_dumps_and_a_mapping(tmp_path):
    x, y = ref.paired_data("random", 80, 6, seed=0)
    np.savez(tmp_path / "d.npz", img=x, txt=y)
    opened = embspace.load(f"image={tmp_path / 'd.npz'}:img", f"text={tmp_path / 'd.npz'}:txt")
    from_files = embspace.measure(opened, metrics="gap", device="cpu")
    assert from_files.inputs["image"]["source"].endswith("d.npz:img")
    assert from_files["gap"] == pytest.approx(ref.gap(x, y), abs=1e-6)


def test_metric_names_and_aliases():
    x, y = ref.paired_data("random", 60, 6, seed=0)
    report = embspace.measure(image=x, text=y, metrics=["recall", "rankme"], device="cpu")
    assert report.settings["metrics"] == ["spectrum", "retrieval"]
    assert "recall@1" in report.metrics and "hubness" not in report.metrics
    with pytest.raises(embspace.InputError, match="unknown metric 'nope'"):
        embspace.measure(image=x, text=y, metrics="nope")


def test_refusals():
    x, y = ref.paired_data("random", 60, 6, seed=0)
    with pytest.raises(embspace.InputError, match="one modality or two"):
        embspace.measure(a=x, b=y, c=x)
    with pytest.raises(embspace.InputError):
        embspace.measure(image=x, text=y[:50])
    with pytest.raises(embspace.InputError, match="integer"):
        embspace.measure(image=np.arange(20).reshape(10, 2))
    with pytest.raises(embspace.InputError, match="need at least 2"):
        embspace.measure(image=x[:1])
