"""Structure between two spaces: streamed linear CKA (biased, unbiased) against float64 brute forces written from the
published formulas (Song et al. 2012 eq. 5 on N×N kernels, Kornblith et al.'s feature-space debiased form, tr(KHLH))
and a dense reference at N = 2,000; mutual-kNN against a dense brute force (platonic-rep's masks); Procrustes against
scipy; the structure family in measure; compare_spaces and `embspace compare --spaces` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.errors import InputError
from embspace.kernels.rows import prepare_rows
from embspace.spaces import cka_from_sums, neighbours_of, overlap, procrustes_from_sums, self_neighbours, stream_sums
from embspace.spaces.compare import compare_spaces
from tests import reference as ref

CPU = torch.device("cpu")


# --------------------------------------------------------------------------------- float64 references, N×N
def hsic_song(k: np.ndarray, g: np.ndarray) -> float:
    """Song et al. 2012, eq. 5, on kernels with zeroed diagonals (the N×N matrices), as printed."""
    m = len(k)
    kt, lt = k.copy(), g.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    ones = np.ones(m)
    return float((np.trace(kt @ lt) + (ones @ kt @ ones) * (ones @ lt @ ones) / ((m - 1) * (m - 2))
                  - 2 / (m - 2) * ones @ kt @ lt @ ones) / (m * (m - 3)))


def hsic_gretton(k: np.ndarray, g: np.ndarray) -> float:
    m = len(k)
    h = np.eye(m) - 1 / m
    return float(np.trace(k @ h @ g @ h))


def hsic_song_n2(k: np.ndarray, g: np.ndarray) -> float:
    """Eq. 5 again with O(N²) work on the same N×N matrices: tr(K̃L̃) = Σ K̃∘L̃, 1ᵀK̃L̃1 = (K̃1)·(L̃1)."""
    m = len(k)
    kt, lt = k - np.diag(np.diag(k)), g - np.diag(np.diag(g))
    rk, rl = kt.sum(1), lt.sum(1)
    return float(((kt * lt).sum() + rk.sum() * rl.sum() / ((m - 1) * (m - 2)) - 2 / (m - 2) * rk @ rl)
                 / (m * (m - 3)))


def hsic_gretton_n2(k: np.ndarray, g: np.ndarray) -> float:
    """tr(KHLH) = Σ (HKH)∘L with O(N²) work."""
    centred = k - k.mean(0) - k.mean(1)[:, None] + k.mean()
    return float((centred * g).sum())


def cka_dense(a: np.ndarray, b: np.ndarray, hsic) -> float:
    k, g = a @ a.T, b @ b.T
    return hsic(k, g) / np.sqrt(hsic(k, k) * hsic(g, g))


def cka_kornblith_debiased(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s feature-space debiased linear CKA (centred features; written from their formula)."""
    x, y = x - x.mean(0), y - y.mean(0)
    n = len(x)

    def helper(xty, rx, ry, nx, ny):
        return xty - n / (n - 2.0) * rx @ ry + nx * ny / ((n - 1) * (n - 2))

    rx, ry = (x * x).sum(1), (y * y).sum(1)
    xy = helper(np.linalg.norm(x.T @ y) ** 2, rx, ry, rx.sum(), ry.sum())
    xx = np.sqrt(helper(np.linalg.norm(x.T @ x) ** 2, rx, rx, rx.sum(), rx.sum()))
    yy = np.sqrt(helper(np.linalg.norm(y.T @ y) ** 2, ry, ry, ry.sum(), ry.sum()))
    return float(xy / (xx * yy))


def knn_dense(a: np.ndarray, k: int) -> np.ndarray:
    """platonic-rep's compute_nearest_neighbors on unit rows, ties to the lower index (stable sort)."""
    s = ref.unit(a) @ ref.unit(a).T
    np.fill_diagonal(s, -1e8)
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def mutual_knn_dense(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """platonic-rep's mutual_knn: N×N masks of each row's neighbours, mean of |∩|/k."""
    n = len(a)
    mask_a, mask_b = np.zeros((n, n)), np.zeros((n, n))
    rows = np.arange(n)[:, None]
    mask_a[rows, knn_dense(a, k)] = 1
    mask_b[rows, knn_dense(b, k)] = 1
    return float(((mask_a * mask_b).sum(1) / k).mean())


def spaces(kind: str, n: int, seed: int = 0, dims: tuple[int, int] = (12, 7)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dims[0]))
    if kind == "cone":
        a += 4.0 * rng.normal(size=dims[0])  # a narrow cone: raw sums far from the centred ones
    b = a @ rng.normal(size=dims) + 0.8 * rng.normal(size=(n, dims[1]))
    if kind == "cone":
        b += 3.0
    return a, b


# ------------------------------------------------------------------------------------------------------- CKA
@pytest.mark.parametrize("kind", ["random", "cone"])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_cka_matches_published_formulas(kind, chunk):
    a, b = spaces(kind, 157)
    ua, ub = ref.unit(a), ref.unit(b)
    sums, _, _ = stream_sums(a, b, chunk_rows=chunk)
    got = cka_from_sums(sums)
    assert got["unbiased"] == pytest.approx(cka_dense(ua, ub, hsic_song), abs=1e-10)
    assert got["unbiased"] == pytest.approx(cka_kornblith_debiased(ua, ub), abs=1e-10)
    assert got["biased"] == pytest.approx(cka_dense(ua, ub, hsic_gretton), abs=1e-10)


def test_cka_dense_reference_at_2000_rows():
    a, b = spaces("cone", 2000, seed=3, dims=(32, 24))
    got = cka_from_sums(stream_sums(a.astype(np.float32), b.astype(np.float32), chunk_rows=333)[0])
    ua, ub = ref.unit(a.astype(np.float32).astype(np.float64)), ref.unit(b.astype(np.float32).astype(np.float64))
    small = slice(0, 150)  # the O(N²) forms are eq. 5 and tr(KHLH) themselves
    assert hsic_song_n2(ua[small] @ ua[small].T, ub[small] @ ub[small].T) == pytest.approx(
        hsic_song(ua[small] @ ua[small].T, ub[small] @ ub[small].T), rel=1e-10)
    assert hsic_gretton_n2(ua[small] @ ua[small].T, ub[small] @ ub[small].T) == pytest.approx(
        hsic_gretton(ua[small] @ ua[small].T, ub[small] @ ub[small].T), rel=1e-10)
    assert got["unbiased"] == pytest.approx(cka_dense(ua, ub, hsic_song_n2), abs=1e-9)
    assert got["biased"] == pytest.approx(cka_dense(ua, ub, hsic_gretton_n2), abs=1e-9)


def test_cka_invariances():
    a, b = spaces("random", 120, seed=5, dims=(9, 9))
    rotation = np.linalg.qr(np.random.default_rng(9).normal(size=(9, 9)))[0]
    same = cka_from_sums(stream_sums(a, ref.unit(a) @ rotation)[0])
    assert same["unbiased"] == pytest.approx(1.0, abs=1e-12) and same["biased"] == pytest.approx(1.0, abs=1e-12)
    there, back = (cka_from_sums(stream_sums(x, y)[0]) for x, y in ((a, b), (b, a)))
    assert there["unbiased"] == pytest.approx(back["unbiased"], abs=1e-12)
    independent = np.random.default_rng(11).normal(size=(4000, 9))
    assert abs(cka_from_sums(stream_sums(a[:1] + independent, np.random.default_rng(12).normal(
        size=(4000, 9)))[0])["unbiased"]) < 0.01  # unbiased: ≈ 0 for independent spaces


def test_cka_refuses_mismatched_rows():
    with pytest.raises(InputError, match="rows"):
        stream_sums(np.ones((10, 3)), np.ones((9, 3)))


# ------------------------------------------------------------------------------------------------ Procrustes
@pytest.mark.parametrize("dims", [(6, 6), (8, 5)])
def test_procrustes_matches_scipy(dims):
    a, b = spaces("cone", 90, seed=2, dims=dims)
    ca, cb = ref.unit(a) - ref.unit(a).mean(0), ref.unit(b) - ref.unit(b).mean(0)
    ca, cb = ca / np.linalg.norm(ca), cb / np.linalg.norm(cb)
    width = max(dims)
    pa, pb = np.pad(ca, ((0, 0), (0, width - dims[0]))), np.pad(cb, ((0, 0), (0, width - dims[1])))
    rotation, _ = orthogonal_procrustes(pa, pb)
    expected = float(((pa @ rotation - pb) ** 2).sum())
    sums = stream_sums(a, b, chunk_rows=11)[0]
    assert procrustes_from_sums(sums) == pytest.approx(expected, abs=1e-10)
    assert procrustes_from_sums(sums, exact=False) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------------ mutual kNN
@pytest.mark.parametrize("tile", [7, 64, 4096])
def test_self_neighbours_match_brute_force(tile):
    a, _ = spaces("random", 203, seed=4)
    rows = prepare_rows(a, CPU, torch.float64)
    np.testing.assert_array_equal(self_neighbours(rows, 10, tile=tile).numpy(), knn_dense(a, 10))


def test_self_neighbours_ties_and_small_n():
    a = np.repeat(np.random.default_rng(0).normal(size=(5, 4)), 3, axis=0)  # every row three times
    got = self_neighbours(prepare_rows(a, CPU, torch.float64), 2, tile=4).numpy()
    np.testing.assert_array_equal(np.sort(got, 1), np.sort(knn_dense(a, 2), 1))
    assert neighbours_of(np.eye(3), 10).shape == (3, 2)  # k capped at N − 1


@pytest.mark.parametrize("k", [1, 5, 10])
def test_mutual_knn_matches_platonic_form(k):
    a, b = spaces("random", 150, seed=6)
    got = float(overlap(neighbours_of(a, k, tile=32), neighbours_of(b, k, tile=32)).mean())
    assert got == pytest.approx(mutual_knn_dense(a, b, k), abs=1e-12)


# ---------------------------------------------------------------------------------------- the family in measure
def test_structure_family_in_measure():
    a, b = spaces("cone", 180, seed=8, dims=(10, 10))
    report = embspace.measure({"image": a, "text": b}, metrics="structure", progress=False)
    ua, ub = ref.unit(a), ref.unit(b)
    assert report.metrics["cka"]["unbiased"] == pytest.approx(cka_dense(ua, ub, hsic_song), abs=1e-6)
    assert report.metrics["cka"]["biased"] == pytest.approx(cka_dense(ua, ub, hsic_gretton), abs=1e-6)
    assert report.metrics["mutual_knn"] == pytest.approx(mutual_knn_dense(a, b, 10), abs=1e-12)
    assert set(report.conventions) >= {"cka", "mutual_knn", "procrustes"}


# --------------------------------------------------------------------------------------------- compare_spaces
def test_compare_spaces_rotation_keeps_everything():
    a = np.random.default_rng(0).normal(size=(300, 16))
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0]
    result = compare_spaces({"image": a}, {"image": ref.unit(a) @ rotation}, resamples=20)
    change = result.changes["image"]
    assert change.values["cka_unbiased"] == pytest.approx(1.0, abs=1e-10)
    assert change.values["mutual_knn"] == 1.0
    assert change.values["procrustes"] == pytest.approx(0.0, abs=1e-9)


def test_compare_spaces_values_intervals_and_moved_rows():
    a, b = spaces("random", 400, seed=7, dims=(8, 8))
    captions = [f"item {i}" for i in range(400)]
    result = compare_spaces({"text": a}, {"text": b}, k=5, resamples=60, captions=captions, moved=4)
    change = result.changes["text"]
    ua, ub = ref.unit(a), ref.unit(b)
    assert change.values["cka_unbiased"] == pytest.approx(cka_dense(ua, ub, hsic_song), abs=1e-10)
    assert change.values["mutual_knn"] == pytest.approx(mutual_knn_dense(a, b, 5), abs=1e-12)
    for metric, (low, high) in change.intervals.items():
        assert low < change.values[metric] < high, metric
    kept = (knn_dense(a, 5)[:, :, None] == knn_dense(b, 5)[:, None, :]).any(2).sum(1) / 5
    expected = np.argsort(kept, kind="stable")[:4]
    assert [m.row for m in change.moved] == expected.tolist()
    assert [m.caption for m in change.moved] == [captions[i] for i in expected]
    assert json.loads(json.dumps(result.to_dict()))["modalities"]["text"]["moved"][0]["row"] == int(expected[0])


def test_compare_spaces_bad_inputs():
    with pytest.raises(InputError, match="rows"):
        compare_spaces({"image": np.ones((10, 3))}, {"image": np.ones((12, 3))}, resamples=10)
    with pytest.raises(InputError, match="in common"):
        compare_spaces({"image": np.ones((10, 3))}, {"text": np.ones((10, 3))}, resamples=10)


def test_cli_compare_with_spaces(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 6)), rng.normal(size=(120, 6))
    captions = np.array([f"caption {i}" for i in range(120)])
    before, after = tmp_path / "before.npz", tmp_path / "after.npz"
    np.savez(before, image=x, text=y, captions=captions)
    np.savez(after, image=x + 0.3 * rng.normal(size=x.shape), text=y, captions=captions)
    runner = CliRunner()
    reports = []
    for path in (before, after):
        out = tmp_path / f"{path.stem}.json"
        assert runner.invoke(app, ["measure", f"image={path}:image", f"text={path}:text", "--metrics", "gap",
                                   "--json", str(out), "-q"]).exit_code == 0
        reports.append(out)
    data = [[f"--data-{side}", f"image={path}:image", f"--data-{side}", f"text={path}:text"]
            for side, path in (("before", before), ("after", after))]
    result = runner.invoke(app, ["compare", *map(str, reports), *data[0], *data[1], "--resamples", "50",
                                 "--space-resamples", "20", "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert "cka_unbiased" in result.output and "caption" in result.output
    spaces_json = json.loads((tmp_path / "c.json").read_text())["spaces"]["modalities"]
    assert spaces_json["text"]["mutual_knn"] == 1.0 and spaces_json["image"]["mutual_knn"] < 1.0
    assert spaces_json["image"]["moved"][0]["caption"].startswith("caption ")


def test_plot_space_structure_from_results_and_cli(tmp_path):
    import embspace.plot

    a, b = spaces("random", 120, seed=1, dims=(6, 6))
    results = {"a→b": compare_spaces({"image": a}, {"image": b}, resamples=10),
               "a→a": compare_spaces({"image": a}, {"image": a}, resamples=10)}
    fig = embspace.plot.space_structure(results)
    lines = fig.axes[0].get_lines()
    drawn = {tuple(np.round(np.asarray(line.get_ydata(), dtype=float), 6)) for line in lines
             if len(line.get_ydata()) == 2}
    kept = results["a→b"].changes["image"].values
    assert (round(kept["mutual_knn"], 6), 1.0) in drawn
    assert (round(kept["cka_unbiased"], 6), 1.0) in drawn
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"changes": []}))
    result = CliRunner().invoke(app, ["plot", "spaces", str(report), "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 2 and "holds no 'spaces'" in result.output and not (tmp_path / "f.png").exists()
    report.write_text(json.dumps({"spaces": results["a→b"].to_dict()}))
    assert CliRunner().invoke(app, ["plot", "spaces", str(report), "--out", str(tmp_path / "f.png")]).exit_code == 0
    assert (tmp_path / "f.png").stat().st_size > 0
