"""The anatomy of the gap against float64 brute force: the split of the alignment, the per-dimension shares and
dims_90, the part of Δ inside each modality's principal subspace, and the modality bias of the pooled gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import embspace
from embspace.kernels.pairwise import TopK, stream_torch
from embspace.kernels.rows import prepare_rows
from embspace.metrics.gap_anatomy import merged_symmetric
from tests import reference as ref

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "mind-the-gap" / "features_clip.npy"
KINDS = ("random", "cone", "clustered")


def brute_anatomy(x: np.ndarray, y: np.ndarray, k: int = 10) -> dict[str, object]:
    """Every quantity from its definition, float64, dense."""
    xu, yu = ref.unit(x), ref.unit(y)
    delta = xu.mean(0) - yu.mean(0)
    r = xu - yu - delta
    shares = delta**2 / (delta @ delta)
    cumulative = np.cumsum(np.sort(shares)[::-1])
    out = {"squared": np.mean(np.sum((xu - yu) ** 2, axis=1)), "centroid": delta @ delta,
           "residual": np.mean(np.sum(r**2, axis=1)), "shares": shares,
           "dims_90": int(np.argmax(cumulative >= 0.9 - 1e-15) + 1), "top_share": shares.max()}
    for name, rows in (("image", xu), ("text", yu)):
        _, _, vt = np.linalg.svd(rows - rows.mean(0), full_matrices=False)  # principal directions, largest first
        inside = vt[:k].T @ (vt[:k] @ delta)
        out[f"inside.{name}"] = inside @ inside
        out[f"outside.{name}"] = (delta - inside) @ (delta - inside)
    return out


def brute_bias(x: np.ndarray, y: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Own-modality share of each query's k nearest in the pooled 2N gallery (self excluded, ties by index)."""
    pooled = np.concatenate([ref.unit(x), ref.unit(y)])
    n = len(x)
    sims = pooled @ pooled.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # stable: lower gallery index first among equals
    own = np.where(np.arange(2 * n)[:, None] < n, top < n, top >= n)
    return float(own[:n].mean()), float(own[n:].mean())


@pytest.mark.parametrize("kind", KINDS)
def test_anatomy_identities_hold_to_1e9_in_float64(kind):
    x, y = ref.paired_data(kind, 300, 24, seed=5)
    report = embspace.measure(image=x, text=y, metrics="alignment,gap_split,gap_anatomy", device="cpu",
                              precision="fp64")
    want = brute_anatomy(x, y)
    assert want["centroid"] + want["residual"] == pytest.approx(want["squared"], abs=1e-12)  # the identity itself
    assert report["gap_split.centroid"] + report["gap_split.residual"] == pytest.approx(report["alignment"], abs=1e-9)
    assert report["gap_split.centroid"] == pytest.approx(want["centroid"], abs=1e-9)
    assert report["gap_split.residual"] == pytest.approx(want["residual"], abs=1e-9)
    shares = np.array(report.vectors["gap_shares"])
    assert shares.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(shares, want["shares"], atol=1e-9)
    assert report["gap_anatomy.dims_90"] == want["dims_90"]
    assert report["gap_anatomy.top_share"] == pytest.approx(want["top_share"], abs=1e-9)
    for name in ("image", "text"):
        inside, outside = want[f"inside.{name}"], want[f"outside.{name}"]
        assert inside + outside == pytest.approx(want["centroid"], abs=1e-12)
        assert report[f"gap_subspace.{name}"] == pytest.approx(inside / want["centroid"], abs=1e-9)
        assert 0 <= report[f"gap_subspace.{name}"] <= 1 + 1e-12  # the part inside never exceeds ‖Δ‖²


def test_subspace_part_and_its_complement_add_up():
    from embspace.metrics.gap_anatomy import principal_directions, subspace_part
    from embspace.metrics.spectrum import Gram

    x, y = ref.paired_data("clustered", 200, 12, seed=8)
    rows = prepare_rows(x, torch.device("cpu"), torch.float64)
    delta = ref.unit(x).mean(0) - ref.unit(y).mean(0)
    for k in (0, 1, 5, 12, 40):
        inside, outside = subspace_part(delta, principal_directions(Gram.of_rows(rows), k))
        assert inside + outside == pytest.approx(delta @ delta, abs=1e-12)
        assert -1e-15 <= inside <= delta @ delta + 1e-12
    assert subspace_part(delta, principal_directions(Gram.of_rows(rows), 12))[1] == pytest.approx(0.0, abs=1e-12)


def test_dims_90_of_a_gap_planted_in_three_dimensions():
    rng = np.random.default_rng(0)
    n, d = 400, 32
    x = ref.unit(rng.normal(size=(n, d)))
    offset = np.zeros(d)
    offset[[3, 7, 11]] = [2.0, 1.5, 1.0]
    y = ref.unit(ref.unit(x + 0.2 * rng.normal(size=(n, d))) + offset)
    report = embspace.measure(image=x, text=y, metrics="gap_anatomy", device="cpu", precision="fp64")
    top = np.argsort(report.vectors["gap_shares"])[::-1][:3]
    assert set(top.tolist()) == {3, 7, 11}
    assert report["gap_anatomy.dims_90"] == brute_anatomy(x, y)["dims_90"] <= 4


@pytest.mark.parametrize("kind,tile", [("random", 7), ("cone", 64), ("clustered", 4096)])
def test_modality_bias_against_a_brute_force(kind, tile):
    x, y = ref.paired_data(kind, 150, 12, seed=3)
    report = embspace.measure(image=x, text=y, metrics="modality_bias", device="cpu", precision="fp64", tile=tile)
    image, text = brute_bias(x, y)
    assert report["modality_bias.image"] == pytest.approx(image, abs=1e-12)
    assert report["modality_bias.text"] == pytest.approx(text, abs=1e-12)
    assert report["modality_bias.chance"] == pytest.approx(149 / 299, abs=1e-15)


def test_modality_bias_with_ties_and_duplicates():
    rng = np.random.default_rng(1)
    base = ref.unit(rng.normal(size=(12, 5)))
    x = base[rng.integers(0, 12, 80)]  # repeated rows: ties everywhere, also across modalities
    y = base[rng.integers(0, 12, 80)]
    report = embspace.measure(image=x, text=y, metrics="modality_bias", device="cpu", precision="fp64", tile=16)
    image, text = brute_bias(x, y)
    assert report["modality_bias.image"] == pytest.approx(image, abs=1e-12)
    assert report["modality_bias.text"] == pytest.approx(text, abs=1e-12)


def test_no_gap_gives_chance_and_a_large_gap_gives_one():
    rng = np.random.default_rng(2)
    mixed = ref.unit(rng.normal(size=(1200, 8)))
    even = embspace.measure(image=mixed[::2], text=mixed[1::2], metrics="modality_bias", device="cpu")
    assert even["modality_bias.image"] == pytest.approx(even["modality_bias.chance"], abs=0.03)
    x, y = ref.paired_data("cone", 200, 16, seed=4)
    pole = 10.0 * np.eye(16)[0]  # the modalities at opposite poles: every neighbour is of the query's own modality
    apart = embspace.measure(image=ref.unit(x + pole), text=ref.unit(y - pole), metrics="modality_bias", device="cpu")
    assert apart["modality_bias.image"] == apart["modality_bias.text"] == 1.0


def test_symmetric_top_k_tables_cover_every_item():
    x = ref.unit(np.random.default_rng(4).normal(size=(53, 6)))
    rows = prepare_rows(x, torch.device("cpu"), torch.float64)
    top = TopK(53, 53, 4, torch.device("cpu"))
    stream_torch(rows, None, [top], tile=10)  # symmetric: tiles on and above the diagonal
    values, index = merged_symmetric(top.row_values, top.row_index, top.col_values, top.col_index, 4)
    sims = x @ x.T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(index.numpy(), want)
    np.testing.assert_allclose(values.numpy(), np.take_along_axis(sims, want, 1), atol=1e-12)


def test_compare_bootstraps_the_profile(tmp_path):
    x, y = ref.paired_data("cone", 200, 16, seed=6)
    after = ref.unit(y + 0.5 * x)
    comparison = embspace.compare(embspace.measure(image=x, text=y, metrics="gap_anatomy", device="cpu"),
                                  embspace.measure(image=x, text=after, metrics="gap_anatomy", device="cpu"),
                                  data_before={"image": x, "text": y}, data_after={"image": x, "text": after},
                                  resamples=200)
    tested = comparison.significance.metrics
    assert {"gap_anatomy.dims_90", "gap_anatomy.top_share"} <= set(tested)
    share = tested["gap_anatomy.top_share"]
    assert share.change == pytest.approx(max(brute_anatomy(x, after)["shares"]) - max(brute_anatomy(x, y)["shares"]),
                                         abs=1e-5)
    subspace = tested["gap_subspace.image"]  # half-sampled (tests/test_compare_half_samples.py)
    new, old = brute_anatomy(x, after), brute_anatomy(x, y)
    want = new["inside.image"] / new["centroid"] - old["inside.image"] / old["centroid"]
    assert subspace.interval == "jackknife" and subspace.change == pytest.approx(want, abs=1e-5)


@pytest.mark.skipif(not CLIP.exists(), reason="the Mind-the-Gap embeddings are not here")
def test_mind_the_gap_clip_anatomy():
    pairs = np.load(CLIP).astype(np.float64)
    report = embspace.measure(image=pairs[0], text=pairs[1], metrics="alignment,gap_split,gap_anatomy,modality_bias",
                              device="cpu")
    want = brute_anatomy(pairs[0], pairs[1])
    assert report["gap_split.centroid"] == pytest.approx(0.7248, abs=5e-5)
    assert report["alignment"] == pytest.approx(1.3802, abs=5e-5)
    assert report["gap_split.centroid_share"] == pytest.approx(0.525, abs=5e-4)
    assert report["gap_anatomy.dims_90"] == want["dims_90"]
    image, text = brute_bias(pairs[0], pairs[1])
    assert report["modality_bias.image"] == pytest.approx(image, abs=1e-12)
    assert report["modality_bias.text"] == pytest.approx(text, abs=1e-12)


def test_gap_profile_figure_draws_the_sorted_shares_and_their_sum(tmp_path):
    from typer.testing import CliRunner

    import embspace.plot
    from embspace.cli import app

    x, y = ref.paired_data("cone", 200, 16, seed=6)
    report = embspace.measure(image=x, text=y, metrics="gap_anatomy", device="cpu", precision="fp64")
    fig = embspace.plot.gap_profile({"run": report})
    ax = fig.axes[0]
    want = np.sort(brute_anatomy(x, y)["shares"])[::-1]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, want, atol=1e-9)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.cumsum(want), atol=1e-9)
    assert f"{report['gap_anatomy.dims_90']} dims carry 90%" in ax.get_legend().get_texts()[0].get_text()
    report.to_json(tmp_path / "r.json")
    result = CliRunner().invoke(app, ["plot", "gap-profile", str(tmp_path / "r.json"), "--out",
                                      str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "g.png").stat().st_size > 0


def test_gap_matrix_of_three_modalities_holds_every_pairwise_figure():
    rng = np.random.default_rng(9)
    base = rng.normal(size=(120, 12))
    three = {name: ref.unit(base + 0.5 * rng.normal(size=base.shape) + shift * np.eye(12)[i])
             for i, (name, shift) in enumerate((("video", 1.0), ("text", 0.0), ("audio", 2.0)))}
    gaps = embspace.gap_matrix(three, device="cpu", precision="fp64")
    gap = gaps.matrix("gap")
    for i, a in enumerate(three):
        for j, b in enumerate(three):
            if i != j:
                assert gap[i, j] == pytest.approx(ref.gap(three[a], three[b]), abs=1e-9)
                bias = gaps.matrix("modality_bias.{a}")[i, j]
                want = brute_bias(three[a], three[b])[0] if i < j else brute_bias(three[b], three[a])[1]
                assert bias == pytest.approx(want, abs=1e-12)
    assert np.isnan(np.diag(gap)).all() and np.allclose(gap, gap.T, equal_nan=True)
    assert set(gaps.to_dict()["pairs"]) == {"video|text", "video|audio", "text|audio"}
    with pytest.raises(embspace.InputError, match="at least two"):
        embspace.gap_matrix({"video": three["video"]})
