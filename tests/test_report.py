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
                                       "dropped": 0, "duplicate_rows": 0}
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


# ---- every mutation of a report: read, or refused in one line, by compare, the tables and the figures --------------

_MUTANTS = [None, "x", [], {"a": 1}, 10**399, True, -1, 1.5, [1, "a"]]


def _paths(tree, prefix=(), depth=3):
    """Every key path of a report's JSON down to ``depth`` (the first element of lists included)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*prefix, key)
            if len(prefix) + 1 < depth:
                yield from _paths(value, (*prefix, key), depth)
    elif isinstance(tree, list) and tree and len(prefix) < depth:
        yield (*prefix, 0)
        yield from _paths(tree[0], (*prefix, 0), depth)


def _mutations(data):
    """(label, mutated JSON) for every path × every wrong value, and every key deleted."""
    import copy

    for path in _paths(data):
        for value in [*_MUTANTS, "<deleted>"]:
            mutated = copy.deepcopy(data)
            parent = mutated
            for key in path[:-1]:
                parent = parent[key]
            if value == "<deleted>":
                if not isinstance(parent, dict):
                    continue
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            yield f"{'.'.join(map(str, path))}={value!r:.20}", mutated


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    x, y = ref.paired_data("random", 30, 6, seed=3)
    path = tmp_path_factory.mktemp("mutants") / "good.json"
    embspace.measure(image=x, text=y, histogram_bins=8).to_json(path)
    return path


def test_every_mutation_of_a_report_is_read_or_refused_in_one_line(full_report, tmp_path):
    """~2,000 generated reports (every field of a full report, to depth 3, set to a wrong type, a 400-digit number,
    or deleted): compare, the plain table and the flags either work or raise one InputError line — never another
    exception."""
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    import embspace.plot as figures
    from embspace.errors import InputError

    good = json.loads(full_report.read_text())
    bad = tmp_path / "bad.json"
    count, crashes = 0, []
    for label, data in _mutations(good):
        bad.write_text(json.dumps(data))
        count += 1
        checks = [lambda: embspace.compare(str(bad), str(full_report)).to_dict(),
                  lambda: embspace.compare(str(full_report), str(bad)).to_dict(),
                  lambda: Report.from_json(bad).table(), lambda: Report.from_json(bad).flags()]
        if label.split(".")[0].split("=")[0] in ("settings", "spectra", "histograms", "inputs"):
            checks += [lambda: figures.plane([str(bad), str(full_report)]),
                       lambda: figures.spectrum([str(bad)]),
                       lambda: figures.histograms(Report.from_json(bad)),
                       lambda: figures.before_after(Report.from_json(bad), Report.from_json(full_report))]
        for check in checks:
            try:
                check()
            except InputError as exc:
                assert "\n" not in str(exc), (label, str(exc))
            except Exception as exc:
                crashes.append((label, type(exc).__name__, str(exc)[:80]))
            finally:
                plt.close("all")
    assert count > 1500
    assert not crashes, sorted({(label.split("=")[0], kind, text) for label, kind, text in crashes})[:20]


@pytest.mark.parametrize("test_pairs", [1, 5, 13, 100, 4000])
def test_a_separability_below_chance_is_flagged(test_pairs):
    """Flagged exactly when the accuracy is below 0.5 − 2√(0.25 / 2m) on m test pairs, in Report.table and in the
    CLI table; 0.255 on 13 test pairs (26 held-out rows) is flagged."""
    from rich.console import Console

    from embspace.cli import measure as cli_measure

    bound = 0.5 - 2 * (0.25 / (2 * test_pairs)) ** 0.5
    for value in np.linspace(0.0, 1.0, 41):
        report = Report(inputs={"image": {"source": "a", "n": 10, "dim": 2, "dtype": "float32"}},
                        settings={"t": 2.0, "alpha": 2.0, "device": "cpu", "precision": "fp32",
                                  "separability": {"test_pairs": test_pairs}},
                        metrics={"linear_separability": float(value)})
        flagged = value < bound
        assert ("linear_separability" in report.flags()) == flagged, (value, bound)
        assert ("BELOW CHANCE" in report.table()) == flagged
        console = Console(record=True, width=300)
        original, cli_measure.out = cli_measure.out, console
        try:
            cli_measure.print_report(report)
        finally:
            cli_measure.out = original
        assert ("BELOW CHANCE" in console.export_text()) == flagged
    assert "linear_separability" in Report(inputs={}, settings={"separability": {"test_pairs": 13}},
                                           metrics={"linear_separability": 0.255}).flags()
