"""The label families against independent references: float64 brute force, scikit-learn, torchmetrics' ECE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import embspace
from embspace.errors import InputError
from embspace.finetune.zeroshot import zero_shot_accuracy
from embspace.metrics import calibration
from embspace.metrics.classes import KMEANS_N_INIT

from . import reference as ref


def labelled(n=240, d=12, c=6, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    centres = rng.normal(size=(c, d))
    x = centres[labels] + noise * rng.normal(size=(n, d))
    y = centres[labels] + 0.7 + noise * rng.normal(size=(n, d))
    prompts = centres + 0.3 * rng.normal(size=(c, d))
    return x, y, labels, prompts


def top_k_reference(x, prompts, labels, k):
    s = ref.unit(x) @ ref.unit(prompts).T
    hits = 0
    for i, row in enumerate(s):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))  # ties to the lower class index
        hits += labels[i] in order[:k]
    return hits / len(x)


def ece_reference(logits, labels, bins=15):
    """Top-label L1 ECE written from the definition, float64, a loop over the bins (p = 1 in a bin of its own)."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    conf, correct = p.max(1), (p.argmax(1) == labels).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for b in range(bins + 1):
        inside = (conf >= edges[b]) & (conf < edges[b + 1]) if b < bins else conf >= 1.0
        if inside.any():
            total += inside.sum() / len(conf) * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_zero_shot_top1_top5_match_a_brute_force_and_the_finetune_helper():
    x, y, labels, prompts = labelled(noise=2.0)
    report = embspace.measure(image=x, text=y, labels=labels, prompts=prompts, metrics="zeroshot", precision="fp64")
    for name, rows in (("image", x), ("text", y)):
        for k in (1, 5):
            assert report[f"zero_shot@{k}.{name}"] == pytest.approx(top_k_reference(rows, prompts, labels, k),
                                                                    abs=1e-12)
        assert report[f"zero_shot@1.{name}"] == pytest.approx(zero_shot_accuracy(rows, prompts, labels), abs=1e-12)
    assert 0.2 < report["zero_shot@1.image"] < 0.99  # a case that tells right from wrong


def test_zero_shot_ties_go_to_the_lower_class_index():
    from embspace.metrics.zeroshot import true_class_ranks

    scores = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1]], dtype=torch.float64)
    assert true_class_ranks(scores, torch.tensor([0, 1])).tolist() == [0, 1]


def test_ece_by_hand():
    """Four rows, two bins used: confidences 0.9, 0.9 (one right) and 0.6, 0.6 (both right)."""
    conf = torch.tensor([0.9, 0.9, 0.6, 0.6], dtype=torch.float64)
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    table = calibration.reliability(conf, correct)
    # bin [0.8667, 0.9333): |0.5 − 0.9| · 2/4; bin [0.6, 0.6667): |1 − 0.6| · 2/4
    assert table.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.4, abs=1e-15)
    assert sum(table.count) == 4 and table.count[13] == 2 and table.count[9] == 2
    one = calibration.reliability(torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor([1.0, 0.0]))
    assert one.count[15] == 1 and one.ece == pytest.approx(0.5 * 0.5, abs=1e-15)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_ece_matches_a_float64_reference_and_torchmetrics(scale):
    x, _, labels, prompts = labelled(n=400, noise=2.5, seed=3)
    logits = scale * ref.unit(x) @ ref.unit(prompts).T
    ours = calibration.expected_calibration_error(torch.from_numpy(logits), torch.from_numpy(labels))
    assert ours == pytest.approx(ece_reference(logits, labels), abs=1e-12)
    torchmetrics = pytest.importorskip("torchmetrics")
    theirs = torchmetrics.functional.classification.multiclass_calibration_error(
        torch.softmax(torch.from_numpy(logits), 1).float(), torch.from_numpy(labels), num_classes=prompts.shape[0],
        n_bins=15, norm="l1")
    assert ours == pytest.approx(float(theirs), abs=2e-6)  # torchmetrics bins float32 confidences


def test_measured_ece_and_temperature_follow_their_definitions():
    x, y, labels, prompts = labelled(n=300, noise=2.0, seed=5)
    report = embspace.measure(image=x, text=y, labels=labels, prompts=prompts, metrics="zeroshot", logit_scale=50,
                              seed=7, precision="fp64")
    logits = 50 * ref.unit(x) @ ref.unit(prompts).T
    assert report["ece.image"] == pytest.approx(ece_reference(logits, labels), abs=1e-12)
    order = np.random.default_rng(7).permutation(len(x))
    fit, held = np.sort(order[:150]), np.sort(order[150:])

    def nll(t):
        z = logits[fit] / t
        z = z - z.max(1, keepdims=True)
        return -(z[np.arange(len(fit)), labels[fit]] - np.log(np.exp(z).sum(1))).mean()

    grid = np.exp(np.linspace(-4, 4, 8001))
    best = grid[np.argmin([nll(t) for t in grid])]
    assert report["temperature.image"] == pytest.approx(best, rel=2e-3)
    assert report["ece_held_out.image"] == pytest.approx(ece_reference(logits[held], labels[held]), abs=1e-12)
    tuned = ece_reference(logits[held] / report["temperature.image"], labels[held])
    assert report["ece_temperature_scaled.image"] == pytest.approx(tuned, abs=1e-9)
    table = report.vectors["reliability.image"]
    assert sum(table["at_scale"]["count"]) == len(held) and table["temperature_scaled"]["ece"] == pytest.approx(tuned)


def test_class_structure_matches_a_brute_force_and_scikit_learn():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, v_measure_score

    x, y, labels, _ = labelled(n=200, c=5, seed=2)
    report = embspace.measure(image=x, text=y, labels=labels, metrics="classes", seed=3, precision="fp64")
    for name, rows in (("image", ref.unit(x)), ("text", ref.unit(y))):
        mu = rows.mean(0)
        between = sum((labels == c).sum() * np.sum((rows[labels == c].mean(0) - mu) ** 2) for c in range(5)) / 200
        within = sum(np.sum((rows[labels == c] - rows[labels == c].mean(0)) ** 2) for c in range(5)) / 200
        assert between + within == pytest.approx(np.sum((rows - mu) ** 2) / 200, abs=1e-12)
        assert report[f"class_variance_ratio.{name}"] == pytest.approx(between / within, abs=1e-12)
        means = [rows[labels == c].mean(0) for c in range(5)]
        cosines = [means[a] @ means[b] / np.linalg.norm(means[a]) / np.linalg.norm(means[b])
                   for a in range(5) for b in range(5) if a != b]
        assert report[f"class_centroid_cosine.{name}"] == pytest.approx(np.mean(cosines), abs=1e-12)
        matrix = np.array(report.vectors[f"class_centroid_cosine.{name}"]["matrix"])
        assert matrix.shape == (5, 5) and matrix[0, 1] == pytest.approx(cosines[0], abs=1e-12)
        clusters = KMeans(n_clusters=5, n_init=KMEANS_N_INIT, random_state=3).fit_predict(rows)
        assert report[f"kmeans_v_measure.{name}"] == pytest.approx(v_measure_score(labels, clusters), abs=1e-12)
        assert report[f"kmeans_ami.{name}"] == pytest.approx(adjusted_mutual_info_score(labels, clusters), abs=1e-12)
    ux, uy = ref.unit(x), ref.unit(y)
    gaps = [np.linalg.norm(ux[labels == c].mean(0) - uy[labels == c].mean(0)) for c in range(5)]
    assert report["class_gap.mean"] == pytest.approx(np.mean(gaps), abs=1e-12)
    assert report["class_gap.median"] == pytest.approx(np.median(gaps), abs=1e-12)
    assert report["class_gap.max"] == pytest.approx(np.max(gaps), abs=1e-12)
    assert report.vectors["class_gap"]["2"] == pytest.approx(gaps[2], abs=1e-12)


def test_few_shot_probe_matches_scikit_learn_refits():
    from sklearn.linear_model import LogisticRegression

    x, y, labels, _ = labelled(n=150, c=4, seed=4, noise=1.5)
    report = embspace.measure(image=x, text=y, labels=labels, metrics="probe", seed=2, precision="fp64")
    rows = ref.unit(x)
    for k in (1, 4):
        accuracies = []
        for seed in range(2, 7):
            rng = np.random.default_rng(seed)
            train = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                            for c in range(4)]))
            test = np.setdiff1d(np.arange(150), train)
            model = LogisticRegression(C=1.0, max_iter=1000).fit(rows[train], labels[train])
            accuracies.append((model.predict(rows[test]) == labels[test]).mean())
        assert report[f"few_shot@{k}.mean"] == pytest.approx(np.mean(accuracies), abs=1e-12)
        assert report[f"few_shot@{k}.std"] == pytest.approx(np.std(accuracies, ddof=1), abs=1e-12)


def test_label_families_are_left_out_without_labels_and_refused_by_name_when_asked():
    x, y, labels, _ = labelled(n=60)
    report = embspace.measure(image=x, text=y)
    assert not any(k.startswith(("zero_shot", "ece", "class_", "kmeans", "few_shot")) for k in report.metrics)
    assert "zeroshot" not in report.settings["metrics"]
    with pytest.raises(InputError, match="zeroshot needs labels= and prompts="):
        embspace.measure(image=x, text=y, metrics="zeroshot", precision="fp64")
    with pytest.raises(InputError, match="zeroshot needs"):
        embspace.measure(image=x, text=y, labels=labels, metrics="zeroshot")  # labels but no prompts
    only = embspace.measure(image=x, text=y, labels=labels)  # classes and probe without prompts
    assert "class_variance_ratio" in only.metrics and "zero_shot@1" not in only.metrics
    assert set(only.metrics) <= set(only.conventions)


def test_one_labelled_modality_and_prompts_of_its_dimension():
    x, _, labels, prompts = labelled(n=80, d=8)
    text = np.random.default_rng(1).normal(size=(80, 5))
    report = embspace.measure(image=x, text=text, labels={"image": labels}, prompts=prompts,
                              metrics="zeroshot,classes")
    assert "zero_shot@1.image" in report.flat() and "zero_shot@1.text" not in report.flat()
    assert report.settings["labels"]["zero_shot_on"] == ["image"] and "class_gap" not in report.metrics


@pytest.mark.parametrize(("labels", "prompts", "message"), [
    (np.zeros(79, dtype=int), None, "expected 80 labels"),
    (np.full(80, 0.5), None, "integer classes"),
    (np.array(["a"] * 80), None, "integer classes"),
    (np.r_[np.zeros(79, dtype=int), -1], None, "row 79 has class -1"),
    (np.r_[np.zeros(79, dtype=int), 6], "ok", "row 79 has class 6, which has no prompt"),
    (np.zeros(80, dtype=int), np.ones((6, 3)), "prompts have dimension 3"),
])
def test_bad_label_inputs_are_refused_in_one_line(labels, prompts, message):
    x, y, _, good = labelled(n=80, d=8)
    with pytest.raises(InputError, match=message) as info:
        embspace.measure(image=x, text=y, labels=labels, prompts=good if isinstance(prompts, str) else prompts)
    assert "\n" not in str(info.value)


def test_cli_labels_prompts_table_json_and_bad_input(tmp_path):
    from typer.testing import CliRunner

    from embspace.cli import app

    x, y, labels, prompts = labelled(n=90, d=8, seed=6)
    np.savez(tmp_path / "d.npz", img=x.astype(np.float32), txt=y.astype(np.float32), labels=labels,
             prompts=prompts.astype(np.float32))
    d = tmp_path / "d.npz"
    runner = CliRunner()
    result = runner.invoke(app, ["measure", f"image={d}:img", f"text={d}:txt", f"labels={d}:labels",
                                 f"prompts={d}:prompts", "--logit-scale", "30", "--metrics", "zeroshot,classes",
                                 "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "zero_shot@1" in result.output and "class_variance_ratio" in result.output
    report = embspace.Report.from_json(tmp_path / "r.json")
    api = embspace.measure(image=x.astype(np.float32), text=y.astype(np.float32), labels=labels,
                           prompts=prompts.astype(np.float32), logit_scale=30, metrics="zeroshot,classes")
    assert report["zero_shot@1.image"] == api["zero_shot@1.image"] and report["ece.text"] == api["ece.text"]
    assert report.settings["labels"]["logit_scale"] == 30
    np.save(tmp_path / "short.npy", labels[:10])
    bad = runner.invoke(app, ["measure", f"image={d}:img", f"text={d}:txt", f"labels={tmp_path / 'short.npy'}",
                              "--json", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "short.npy" in bad.output and "expected 90 labels" in bad.output
    assert not (tmp_path / "bad.json").exists() and "Traceback" not in bad.output


def test_weighted_zero_shot_at_unit_weights_is_the_measured_metric_and_a_weighted_brute_force():
    from embspace.compare import _Resampled
    from embspace.label_changes import bootstrap_settings

    x, y, labels, prompts = labelled(n=120, d=10, noise=2.0, seed=8)
    report = embspace.measure(image=x, text=y, labels=labels, prompts=prompts, metrics="zeroshot")
    tx, ty = (torch.from_numpy(ref.unit(a)).float() for a in (x, y))
    side, _ = bootstrap_settings({"t": 2.0, "alpha": 2.0, "recall_ks": (1,)}, labels, (prompts, prompts), 100.0,
                                 ("image", "text"), 120, (10, 10))
    found = _Resampled("pairs", tx, ty, ("image", "text"), side)
    w = torch.from_numpy(np.random.default_rng(0).integers(0, 3, size=(2, 120))).float()
    values = found.values(torch.ones(1, 120))
    for path in ("zero_shot@1.image", "zero_shot@5.text", "ece.image", "ece.text"):
        assert values[path][0] == pytest.approx(report[path], abs=1e-6), path
    weighted = found.values(w)
    logits = 100 * ref.unit(tx.double().numpy()) @ ref.unit(prompts).T
    for b in range(2):  # weights as repeated rows: the metric on the resampled rows
        rows = np.repeat(np.arange(120), w[b].long().numpy())
        assert weighted["ece.image"][b] == pytest.approx(ece_reference(logits[rows], labels[rows]), abs=1e-6)
        hits = np.argmax(logits[rows], 1) == labels[rows]
        assert weighted["zero_shot@1.image"][b] == pytest.approx(hits.mean(), abs=1e-12)


def test_compare_flags_a_zero_shot_loss_and_a_calibration_loss_beyond_noise():
    x, y, labels, prompts = labelled(n=300, d=12, noise=1.0, seed=9)
    worse = x + np.random.default_rng(1).normal(scale=2.0, size=x.shape)  # fine-tuning that blurred the classes
    before = embspace.measure(image=x, text=y, labels=labels, prompts=prompts, metrics="zeroshot,gap")
    after = embspace.measure(image=worse, text=y, labels=labels, prompts=prompts, metrics="zeroshot,gap")
    comparison = embspace.compare(before, after, data_before={"image": x, "text": y},
                                  data_after={"image": worse, "text": y}, labels=labels, prompts_before=prompts,
                                  prompts_after=prompts, resamples=200)
    tests = comparison.significance.metrics
    assert tests["zero_shot@1.image"].significant and tests["zero_shot@1.image"].ci[1] < 0
    assert not tests["zero_shot@1.text"].significant  # the text rows did not change: a change of exactly 0
    assert any(w.startswith("ZERO-SHOT LOSS beyond noise: zero_shot@1.image") for w in comparison.warnings)
    assert tests["ece.image"].ci[0] > 0 and not tests["ece.text"].significant
    assert any(w.startswith("CALIBRATION LOSS beyond noise: ece.image") for w in comparison.warnings)
    plain = embspace.compare(before, after, data_before={"image": x, "text": y},
                             data_after={"image": worse, "text": y}, resamples=50)
    assert "zero_shot@1.image" not in plain.significance.metrics


def test_cli_compare_flags_the_zero_shot_loss(tmp_path):
    from typer.testing import CliRunner

    from embspace.cli import app

    x, y, labels, prompts = labelled(n=200, d=8, noise=1.0, seed=9)
    worse = x + np.random.default_rng(1).normal(scale=2.0, size=x.shape)
    np.savez(tmp_path / "c.npz", labels=labels, prompts=prompts)
    runner = CliRunner()
    for name, image in (("before", x), ("after", worse)):
        np.save(tmp_path / f"{name}.npy", np.stack([image, y]))
        result = runner.invoke(app, ["measure", f"pairs={tmp_path / name}.npy", f"labels={tmp_path}/c.npz:labels",
                                     f"prompts={tmp_path}/c.npz:prompts", "--metrics", "zeroshot",
                                     "--json", str(tmp_path / f"{name}.json")])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["compare", str(tmp_path / "before.json"), str(tmp_path / "after.json"),
                                 "--data-before", f"pairs={tmp_path}/before.npy", "--data-after",
                                 f"pairs={tmp_path}/after.npy", "--labels", f"{tmp_path}/c.npz:labels",
                                 "--prompts-before", f"{tmp_path}/c.npz:prompts", "--prompts-after",
                                 f"{tmp_path}/c.npz:prompts", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    assert "ZERO-SHOT LOSS beyond noise: zero_shot@1.image" in result.output


def test_reliability_diagram_draws_each_report_at_both_scales(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from typer.testing import CliRunner

    import embspace.plot
    from embspace.cli import app

    x, y, labels, prompts = labelled(n=200, d=8, noise=1.5, seed=3)
    worse = x + np.random.default_rng(1).normal(scale=2.0, size=x.shape)
    before, after = (embspace.measure(image=a, text=y, labels=labels, prompts=prompts, metrics="zeroshot")
                     for a in (x, worse))
    fig = embspace.plot.reliability({"before": before, "after": after})
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.lines) == 1 + 2 * 2  # the diagonal, then given and temperature-scaled per report
    assert f"before, given scale: ECE {before.vectors['reliability.image']['at_scale']['ece']:.3f}" in texts
    assert any(t.startswith("after, temperature-scaled: ECE") for t in texts)
    table = after.vectors["reliability.image"]["at_scale"]
    used = np.asarray(table["count"]) > 0
    np.testing.assert_allclose(ax.lines[3].get_xdata(), np.asarray(table["confidence"])[used])
    with pytest.raises(InputError, match="no reliability tables"):
        embspace.plot.reliability(embspace.measure(image=x, text=y, metrics="gap"))
    before.to_json(tmp_path / "b.json")
    after.to_json(tmp_path / "a.json")
    result = CliRunner().invoke(app, ["plot", "reliability", str(tmp_path / "b.json"), str(tmp_path / "a.json"),
                                      "--out", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_finetune_reports_zero_shot_and_ece_every_epoch():
    from embspace.finetune import FitConfig, fit

    rng = np.random.default_rng(0)
    n, c = 160, 4
    labels = rng.integers(0, c, n)
    image_centres, text_centres = rng.normal(size=(c, 12)), rng.normal(size=(c, 10))
    image = (image_centres[labels] + rng.normal(size=(n, 12))).astype(np.float32)
    text = (text_centres[labels] + rng.normal(size=(n, 10))).astype(np.float32)
    raw_prompts = text_centres.astype(np.float32)
    result = fit({"image": image[:100], "text": text[:100]}, {"image": image[100:], "text": text[100:]},
                 config=FitConfig(loss="clip", epochs=2, dim=8, batch_size=50, eval_metrics="gap"),
                 labels=labels[100:], prompts=raw_prompts, resamples=20, progress=False)
    assert len(result.reports) == 3
    assert all("zero_shot@1.image" in r.flat() and "ece.image" in r.flat() for r in result.reports)
    with torch.no_grad():
        prompts = result.model.text(torch.from_numpy(raw_prompts)).numpy()
    last = result.reports[-1]
    assert last["zero_shot@1.image"] == pytest.approx(top_k_reference(result.image, prompts, labels[100:], 1),
                                                      abs=1e-12)
    assert last.settings["labels"]["logit_scale"] == pytest.approx(float(result.model.scale().detach()))
    assert "zero_shot@1.image" in result.comparison.significance.metrics


SAMPLE_PROMPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "finetune_prompts.npz"


def sample_classes():
    from embspace.data import load_sample

    sample, classes = load_sample(), np.load(SAMPLE_PROMPTS)
    index = {oc: k for k, oc in enumerate(zip(classes["origins"].tolist(), classes["categories"].tolist(),
                                              strict=True))}
    labels = np.array([index.get(oc, -1) for oc in zip(sample["origin"].tolist(), sample["categories"].tolist(),
                                                        strict=True)])
    keep = labels >= 0
    return sample["text_features"][keep].astype(np.float64), labels[keep], classes["features"].astype(np.float64)


def test_on_the_bundled_sample_captions_zero_shot_and_ece_match_the_references():
    pytest.importorskip("embspace.data")
    text, labels, prompts = sample_classes()
    report = embspace.measure(text=text, labels=labels, prompts=prompts, metrics="zeroshot", precision="fp64")
    assert report["zero_shot@1.text"] == pytest.approx(zero_shot_accuracy(text, prompts, labels), abs=1e-12)
    assert report["zero_shot@5.text"] == pytest.approx(top_k_reference(text, prompts, labels, 5), abs=1e-12)
    logits = 100 * ref.unit(text) @ ref.unit(prompts).T
    assert report["ece.text"] == pytest.approx(ece_reference(logits, labels), abs=1e-12)
    assert 0.1 < report["zero_shot@1.text"] < 0.9 and report["ece_temperature_scaled.text"] < report["ece.text"]


@pytest.mark.parametrize(("content", "message"), [
    ("floats", "labels must be integer classes"),
    ("wide_prompts", "prompts have dimension 9"),
    ("few_prompts", "which has no prompt"),
])
def test_cli_bad_label_files_exit_2_naming_the_file(tmp_path, content, message):
    from typer.testing import CliRunner

    from embspace.cli import app

    x, y, labels, prompts = labelled(n=40, d=8, c=4)
    arrays = {"img": x, "txt": y, "labels": labels, "prompts": prompts}
    if content == "floats":
        arrays["labels"] = labels + 0.5
    elif content == "wide_prompts":
        arrays["prompts"] = np.ones((4, 9))
    else:
        arrays["prompts"] = prompts[:2]
        arrays["labels"] = np.r_[labels[:-1], 3]
    np.savez(tmp_path / "d.npz", **arrays)
    d = tmp_path / "d.npz"
    result = CliRunner().invoke(app, ["measure", f"image={d}:img", f"text={d}:txt", f"labels={d}:labels",
                                      f"prompts={d}:prompts", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and message in result.output and "d.npz" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "r.json").exists()


def test_cli_finetune_reports_zero_shot_per_epoch_and_refuses_labels_of_the_wrong_length(tmp_path):
    import json

    from typer.testing import CliRunner

    from embspace.cli import app

    rng = np.random.default_rng(0)
    n, c = 120, 3
    labels = rng.integers(0, c, n)
    image_centres, text_centres = rng.normal(size=(c, 6)), rng.normal(size=(c, 5))
    image = image_centres[labels] + rng.normal(size=(n, 6))
    text = text_centres[labels] + rng.normal(size=(n, 5))
    np.savez(tmp_path / "d.npz", train_img=image[:80], train_txt=text[:80], eval_img=image[80:],
             eval_txt=text[80:], labels=labels[80:], short=labels[:5], prompts=text_centres)
    d = tmp_path / "d.npz"
    common = ["finetune", f"image={d}:train_img", f"text={d}:train_txt", f"image={d}:eval_img", f"text={d}:eval_txt",
              "--loss", "clip", "--epochs", "1", "--dim", "4", "--batch-size", "40", "--metrics", "gap",
              "--resamples", "20", "--baseline", "none", "--prompts", f"{d}:prompts"]
    runner = CliRunner()
    result = runner.invoke(app, [*common, "--labels", f"{d}:labels", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    epoch = json.loads((tmp_path / "run" / "epoch_1.json").read_text())
    assert "zero_shot@1" in epoch["metrics"] and "ece" in epoch["metrics"] and "zero_shot@1.image" in result.output
    bad = runner.invoke(app, [*common, "--labels", f"{d}:short", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "d.npz:short" in bad.output and "expected 40 labels" in bad.output, bad.output
    assert not (tmp_path / "bad").exists()
