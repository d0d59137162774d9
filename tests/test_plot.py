"""Figures: what is drawn (lines, points, patches, their data) against the reports it was drawn from."""

from __future__ import annotations

import os
import re

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle, StepPatch

import embspace
import embspace.plot as plot
from embspace.errors import InputError
from embspace.plot._histograms import normalised
from tests import reference as ref

METRICS = "gap,alignment,cone,rmg,uniformity,spectrum,retrieval,histograms"


def run(shift: float, name: str) -> embspace.Trajectory:
    x, y = ref.paired_data("cone", 80, 8, seed=0)
    dumps = {step: {"image": x, "text": ref.unit(y + shift * step * x)} for step in (0, 2, 10)}
    return embspace.measure_trajectory(dumps, metrics=METRICS, name=name, histogram_bins=40)


@pytest.fixture(scope="module")
def runs() -> dict[str, embspace.Trajectory]:
    return {"A": run(0.3, "A"), "B": run(0.1, "B")}


def legend_texts(ax) -> list[str]:
    """The entries of the Axes' legend, or of its figure's legend (the map puts its legend below the axes)."""
    legend = ax.get_legend() or next(iter(ax.get_figure().legends), None)
    return [t.get_text() for t in legend.get_texts()]


def visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


# ---- curves ----------------------------------------------------------------------------------------------------
def test_curves_one_panel_per_metric_with_the_trajectory_values(runs):
    a = runs["A"]
    fig = plot.curves(a, ["gap", "uniformity"])
    assert isinstance(fig, Figure)
    gap_ax, uni_ax = visible_axes(fig)
    (line,) = gap_ax.get_lines()
    assert line.get_xdata().tolist() == [0, 2, 10]
    np.testing.assert_allclose(line.get_ydata(), a.values("gap"))
    assert gap_ax.get_xlabel() == "step" and "gap" in gap_ax.get_ylabel() and gap_ax.get_title() == "gap"
    assert len(uni_ax.get_lines()) == 5 and legend_texts(uni_ax) == ["image", "text", "mean", "joint", "cross"]
    assert uni_ax.get_ylabel() == "uniformity (t=2)"
    mean = next(ln for ln in uni_ax.get_lines() if ln.get_label() == "mean")
    np.testing.assert_allclose(mean.get_ydata(), a.values("uniformity.mean"))


def test_curves_overlay_several_runs_with_a_legend(runs):
    fig = plot.curves(runs, "uniformity.joint")
    (ax,) = visible_axes(fig)
    assert legend_texts(ax) == ["A", "B"]
    a_line, b_line = ax.get_lines()
    np.testing.assert_allclose(b_line.get_ydata(), runs["B"].values("uniformity.joint"))
    assert a_line.get_color() != b_line.get_color()
    fig = plot.curves(list(runs.values()), ["cone"])
    assert legend_texts(visible_axes(fig)[0]) == ["A · image", "A · text", "B · image", "B · text"]


def test_curves_into_a_given_axes_and_bad_metric(runs):
    fig = Figure()
    ax = fig.add_subplot()
    assert plot.curves(runs["A"], ["gap", "recall@1"], ax=ax) is fig
    assert [ln.get_label() for ln in ax.get_lines()] == ["gap", "recall@1.image->text", "recall@1.text->image"]
    assert ax.get_title() == "gap, recall@1"
    with pytest.raises(InputError, match="no such metric"):
        plot.curves(runs["A"], "gapp")


# ---- uniformity–alignment plane --------------------------------------------------------------------------------
def test_plane_points_are_alignment_and_uniformity_with_arrows_along_steps(runs):
    a = runs["A"]
    fig = plot.plane(a)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), a.values("alignment"))
    np.testing.assert_allclose(line.get_ydata(), a.values("uniformity.mean"))
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == len(a) - 1
    assert [t.get_text() for t in ax.texts] == ["step 0", "step 10"]
    assert ax.get_xlabel().startswith("alignment (α=2)") and "uniformity [mean] (t=2)" in ax.get_ylabel()


def test_plane_one_point_per_report_and_chosen_uniformity(runs):
    reports = {"start": runs["A"].reports[0], "end": runs["A"].reports[-1]}
    fig = plot.plane(reports, uniformity="joint")
    ax = fig.axes[0]
    assert legend_texts(ax) == ["start", "end"] and not ax.patches
    assert [ln.get_ydata()[0] for ln in ax.get_lines()] == [r["uniformity.joint"] for r in reports.values()]
    x, _ = ref.paired_data("random", 20, 4, seed=0)
    with pytest.raises(InputError, match="alignment"):
        plot.plane(embspace.measure(image=x, metrics="uniformity"))


# ---- spectrum --------------------------------------------------------------------------------------------------
def test_spectrum_is_log_log_with_rankme_and_effective_rank_marked(runs):
    report = runs["A"].reports[-1]
    fig = plot.spectrum(report)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2 * 3  # per modality: the spectrum, a RankMe mark, an effective-rank mark
    sigma = np.asarray(report.spectra["image"]["singular_values"])
    np.testing.assert_allclose(lines[0].get_ydata(), sigma[sigma > 0])
    assert lines[0].get_xdata()[0] == 1
    k = np.arange(1, len(sigma) + 1)
    for mark, metric in ((lines[1], "rankme.image"), (lines[2], "effective_rank.image")):
        assert list(mark.get_xdata()) == [report[metric]] and mark.get_linestyle() == "None"
        # on the spectrum line: its height is the spectrum at k = the rank (log–log interpolation)
        at = np.exp(np.interp(np.log(report[metric]), np.log(k), np.log(sigma)))
        assert mark.get_ydata()[0] == pytest.approx(at, rel=1e-12)
        assert mark.get_markeredgecolor() == lines[0].get_color()
    assert lines[1].get_marker() != lines[2].get_marker()
    assert (f"image (RankMe {report['rankme.image']:.1f}, effective rank {report['effective_rank.image']:.1f})"
            in legend_texts(ax))
    # one legend entry per line and one per kind of mark (not one per mark: 2 reports × 2 modalities give 6, not 12)
    assert legend_texts(ax)[-2:] == ["RankMe (marked on each line)", "effective rank (marked on each line)"]
    assert len(legend_texts(plot.spectrum({"a": report, "b": runs["A"].reports[0]}).axes[0])) == 2 * 2 + 2
    assert "singular value" in ax.get_ylabel() and ax.get_xlabel() == "index k"


def test_spectrum_normalised_and_centred():
    x, y = ref.paired_data("cone", 50, 6, seed=1)
    report = embspace.measure(image=x, text=y, metrics="spectrum")
    ax = plot.spectrum(report, centered=True, normalize=True).axes[0]
    first = ax.get_lines()[0].get_ydata()
    assert first[0] == pytest.approx(1.0) and ax.get_ylabel() == "σ_k / σ_1 (centred)"
    assert len(ax.get_lines()) == 2 * 2  # no RankMe (uncentred by definition), the centred effective rank
    assert legend_texts(ax)[-1] == "effective rank (centred) (marked on each line)"
    assert not [t for t in legend_texts(plot.spectrum(report, marks=False).axes[0]) if "rank" in t.lower()]


# ---- histograms ------------------------------------------------------------------------------------------------
def test_histograms_are_the_reports_counts(runs):
    report = runs["A"].reports[0]
    fig = plot.histograms(report, density=False, coarsen=1)
    ax = fig.axes[0]
    stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(stairs) == 4  # matched, unmatched, within image, within text
    h = report.histograms
    expected = [h["matched"], h["unmatched"], h["within"]["image"], h["within"]["text"]]
    for patch, counts in zip(stairs, expected, strict=True):
        data = patch.get_data()
        np.testing.assert_array_equal(data.values, counts)
        np.testing.assert_allclose(data.edges, h["edges"])
    assert legend_texts(ax)[0].startswith("matched pairs (i = j")
    assert ax.get_xlabel().startswith("cosine similarity") and ax.get_ylabel() == "pairs per bin"


def test_histogram_density_and_coarsening(runs):
    report = runs["A"].reports[-1]
    ax = plot.histograms(report, kinds=["matched"], coarsen=4).axes[0]
    (patch,) = ax.patches
    data = patch.get_data()
    merged = np.asarray(report.histograms["matched"]).reshape(-1, 4).sum(1)
    np.testing.assert_allclose(data.values, normalised(merged, data.edges))
    assert np.sum(data.values * np.diff(data.edges)) == pytest.approx(1.0) and ax.get_ylabel() == "density"
    auto = plot.histograms(report).axes[0].patches[0].get_data()
    assert len(auto.edges) - 1 <= 40 and 40 % (len(auto.edges) - 1) == 0
    with pytest.raises(InputError, match="must divide"):
        plot.histograms(report, coarsen=3)
    with pytest.raises(InputError, match="no histograms"):
        plot.histograms(embspace.measure(image=ref.unit(np.eye(4)), metrics="cone"))


# ---- 2-D map ---------------------------------------------------------------------------------------------------
def test_map_pca_points_pairs_and_gap_arrow():
    from sklearn.decomposition import PCA

    x, y = ref.paired_data("cone", 120, 8, seed=2)
    fig = plot.embedding_map({"image": x, "text": y}, pairs=15)
    ax = fig.axes[0]
    clouds = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_label() for c in clouds] == ["image (120)", "text (120)"]
    expected = PCA(2).fit_transform(np.concatenate([ref.unit(x), ref.unit(y)]))
    for cloud, part in zip(clouds, np.split(expected, 2), strict=True):
        np.testing.assert_allclose(np.abs(cloud.get_offsets()), np.abs(part), atol=1e-9)
    (pairs,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(pairs.get_segments()) == 15
    (arrow,) = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    start, end = arrow._posA_posB
    np.testing.assert_allclose(start, clouds[0].get_offsets().mean(0))
    np.testing.assert_allclose(end, clouds[1].get_offsets().mean(0))
    assert ax.get_xlabel().startswith("PC 1 (") and "gap direction" in " ".join(legend_texts(ax))


def test_map_subsamples_embeddings_and_refuses_bad_methods(tmp_path):
    x, y = ref.paired_data("random", 300, 6, seed=3)
    np.save(tmp_path / "stack.npy", np.stack([x, y]))
    fig = plot.embedding_map(embspace.load(f"pairs={tmp_path / 'stack.npy'}"), max_points=50, pairs=0)
    clouds = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in clouds] == [50, 50]
    assert not [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    with pytest.raises(InputError, match="unknown map method"):
        plot.embedding_map({"image": x, "text": y}, method="tsne")


def test_map_refuses_what_measure_refuses_naming_file_and_row(tmp_path):
    x, y = ref.paired_data("random", 40, 6, seed=4)
    bad = x.copy()
    bad[[7, 30], 2] = np.nan
    with pytest.raises(InputError, match=r"^<image: ndarray>: 2 rows contain NaN or Inf \(first at row 7\)"):
        plot.embedding_map({"image": bad, "text": y})
    zero = y.copy()
    zero[11] = 0.0
    with pytest.raises(InputError, match=r"<text: ndarray>: 1 row has zero norm .*first at row 11"):
        plot.embedding_map({"image": x, "text": zero})
    np.save(tmp_path / "inf.npy", np.where(np.arange(40)[:, None] == 3, np.inf, x).astype(np.float32))
    with pytest.raises(InputError, match=r"inf\.npy: 1 row contains NaN or Inf \(first at row 3\)"):
        plot.embedding_map(embspace.load(f"image={tmp_path / 'inf.npy'}"))  # one modality is checked too
    with pytest.raises(InputError, match=r"has 40 rows but .* has 39"):
        plot.embedding_map({"image": x, "text": y[:39]})
    with pytest.raises(InputError, match=r"has 6 dims but .* has 5"):
        plot.embedding_map({"image": x, "text": y[:, :5]})
    with pytest.raises(InputError, match="expected a 2-D array"):
        plot.embedding_map({"image": x[0], "text": y[0]})


def test_map_drop_invalid_drops_rows_with_their_partners():
    from sklearn.decomposition import PCA

    x, y = ref.paired_data("cone", 50, 8, seed=5)
    bad_x, bad_y = x.copy(), y.copy()
    bad_x[4, 0], bad_y[9] = np.inf, 0.0
    fig = plot.embedding_map({"image": bad_x, "text": bad_y}, drop_invalid=True, pairs=0)
    clouds = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert [c.get_label() for c in clouds] == [f"{name} (48; 2 invalid rows dropped)" for name in ("image", "text")]
    keep = np.setdiff1d(np.arange(50), [4, 9])
    expected = PCA(2).fit_transform(np.concatenate([ref.unit(x[keep]), ref.unit(y[keep])]))
    for cloud, part in zip(clouds, np.split(expected, 2), strict=True):
        np.testing.assert_allclose(np.abs(cloud.get_offsets()), np.abs(part), atol=1e-9)


def test_map_umap_is_optional():
    x, y = ref.paired_data("random", 30, 4, seed=3)
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"embspace\[umap\]"):
            plot.embedding_map({"image": x, "text": y}, method="umap")
    else:
        fig = plot.embedding_map({"image": x, "text": y}, method="umap")
        assert fig.axes[0].get_xlabel() == "UMAP 1"


# ---- before / after --------------------------------------------------------------------------------------------
def test_before_after_bars_are_the_values_and_histograms_overlay(runs):
    before, after = runs["A"].reports[0], runs["A"].reports[-1]
    fig = plot.before_after(before, after, metrics=["gap", "alignment", "recall@1"])
    bars_ax, hist_ax = fig.axes
    bars = [p for p in bars_ax.patches if isinstance(p, Rectangle)]
    paths = ["gap", "alignment", "recall@1.image->text", "recall@1.text->image"]
    assert len(bars) == 2 * len(paths)
    np.testing.assert_allclose([b.get_width() for b in bars[: len(paths)]], [before[p] for p in paths])
    np.testing.assert_allclose([b.get_width() for b in bars[len(paths):]], [after[p] for p in paths])
    assert [t.get_text() for t in bars_ax.get_yticklabels()] == paths
    assert legend_texts(bars_ax) == ["before", "after"]
    assert len([p for p in hist_ax.patches if isinstance(p, StepPatch)]) == 4
    assert legend_texts(hist_ax)[0].startswith("before: matched")
    assert fig.get_suptitle() == "before vs after"


def test_before_after_from_json_paths_without_histograms(tmp_path):
    x, y = ref.paired_data("cone", 40, 6, seed=4)
    embspace.measure(image=x, text=y, metrics="gap,alignment").to_json(tmp_path / "a.json")
    embspace.measure(image=x, text=ref.unit(x + y), metrics="gap,alignment").to_json(tmp_path / "b.json")
    fig = plot.before_after(tmp_path / "a.json", str(tmp_path / "b.json"), labels=("frozen", "tuned"))
    assert len(fig.axes) == 1 and legend_texts(fig.axes[0]) == ["frozen", "tuned"]


# ---- every figure ----------------------------------------------------------------------------------------------
def test_figures_render_in_jupyter_without_pyplot(runs):
    png = plot.curves(runs["A"], "gap")._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    sources = Path(plot.__file__).parent.glob("*.py")
    uses = re.compile(r"matplotlib\.pyplot|from matplotlib import pyplot|\bplt\.")
    assert not [p.name for p in sources if uses.search(p.read_text())]


# ---- geometry: legends and labels off the data, styles, layout -------------------------------------------------
# Checked on the drawn figure (Agg), in display coordinates, from the artists themselves: the data are sampled along
# their display paths (Path.interpolated of the transformed vertices), bars and texts taken as their extents.
def rendered(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig) if not isinstance(fig.canvas, FigureCanvasAgg) else fig.canvas
    canvas.draw()
    return canvas.get_renderer()


def drawn_points(ax, renderer) -> tuple[np.ndarray, list]:
    """Display-coordinate samples of every line, step patch, arrow, scatter and line collection of ``ax``, and
    the extents of its bars and texts."""
    from matplotlib.path import Path as MplPath

    def along(vertices):
        vertices = np.asarray(vertices, dtype=float)
        vertices = vertices[np.isfinite(vertices).all(1)]
        return MplPath(vertices).interpolated(50).vertices if len(vertices) > 1 else vertices

    points, boxes = [np.empty((0, 2))], []
    for line in ax.get_lines():
        xy = line.get_transform().transform(line.get_path().vertices)
        points.append(along(xy) if line.get_linestyle() != "None" else xy)
    for patch in ax.patches:
        if isinstance(patch, Rectangle):
            boxes.append(patch.get_window_extent(renderer))
        else:
            points += [along(p) for p in patch.get_path().to_polygons(patch.get_transform(), closed_only=False)]
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            points += [along(collection.get_transform().transform(s)) for s in collection.get_segments()]
        else:
            points.append(collection.get_offset_transform().transform(collection.get_offsets()))
    boxes += [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
    return np.vstack(points), boxes


def covered(box, points: np.ndarray, boxes: list) -> list:
    """The points inside ``box`` and the boxes overlapping it."""
    inside = points[(points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0)
                    & (points[:, 1] < box.y1)]
    return [*inside.tolist(), *[b for b in boxes if box.overlaps(b)]]


def assert_legends_clear(fig: Figure, axes=None) -> int:
    """No legend (of an Axes or of the figure) covers data of any Axes; returns how many legends were checked."""
    renderer = rendered(fig)
    axes = fig.axes if axes is None else axes
    legends = [(ax.get_legend(), ax) for ax in axes if ax.get_legend() is not None] + [(g, None) for g in fig.legends]
    for legend, _ in legends:
        box = legend.get_window_extent(renderer)
        for ax in axes:
            points, boxes = drawn_points(ax, renderer)
            assert not covered(box, points, boxes), (ax.get_title(), [t.get_text() for t in legend.get_texts()][:2])
    return len(legends)


@pytest.fixture(scope="module")
def sample_reports() -> dict[str, embspace.Report]:
    """The bundled sample at its first and last step: real histograms (a narrow matched peak at the right)."""
    from embspace.data import sample_steps

    first, last = sample_steps()[0], sample_steps()[-1]
    return {f"step {s}": embspace.measure(embspace.load_sample(s), metrics=METRICS) for s in (first, last)}


def test_legends_cover_no_data_in_any_figure(runs, sample_reports):
    first, last = sample_reports.values()
    figures = {
        "histograms": plot.histograms(last),
        "before_after": plot.before_after(first, last),
        "spectrum": plot.spectrum({"first": first, "last": last}, normalize=True),
        "map": plot.embedding_map(embspace.load_sample(), pairs=150),
        "curves": plot.curves(runs, ["uniformity", "cone", "recall@1"]),
        "plane": plot.plane(runs),
    }
    for name, fig in figures.items():
        assert assert_legends_clear(fig) >= 1, name
    # into given Axes: a small one beside another
    fig = Figure(figsize=(8, 3), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot.histograms(last, ax=left)
    plot.histograms(first, ax=right)
    assert assert_legends_clear(fig) == 2
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    plot.embedding_map(embspace.load_sample(), ax=ax)
    assert assert_legends_clear(fig) == 1


def test_the_map_legend_is_below_the_axes_and_the_arrow_is_an_arrow():
    x = ref.unit(np.random.default_rng(7).standard_normal((300, 16)))
    for gap, head in ((0.02, "fitted"), (1.0, "full")):
        y = ref.unit(x + gap * np.eye(16)[0] + 0.05 * np.random.default_rng(8).standard_normal(x.shape))
        fig = plot.embedding_map({"image": x, "text": y})
        renderer = rendered(fig)
        ax = fig.axes[0]
        (legend,) = fig.legends
        assert legend.get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0
        (arrow,) = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        start, end = (ax.transData.transform(p) for p in arrow._posA_posB)
        length = np.hypot(*(end - start)) * 72 / fig.dpi  # points
        assert arrow.get_mutation_scale() <= 0.3 * length + 1e-9 or arrow.get_mutation_scale() == 1.0, gap
        assert (arrow.get_mutation_scale() == 18) == (head == "full"), (gap, arrow.get_mutation_scale(), length)
        assert f"{np.hypot(*(np.array(arrow._posA_posB[1]) - arrow._posA_posB[0])):.3g} in this plane" in \
            legend_texts(ax)[-1]


def test_curves_give_a_key_one_style_in_every_panel_and_runs_one_colour(runs):
    fig = plot.curves(runs, ["uniformity", "cone", "recall@1"])
    styles: dict[str, set] = {}
    colours: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            run_name, key = line.get_label().split(" · ")
            dashes = getattr(line, "_unscaled_dash_pattern", None)
            styles.setdefault(key, set()).add((line.get_linestyle(), str(dashes), line.get_marker()))
            colours.setdefault(run_name, set()).add(line.get_color())
    assert set(styles) == {"image", "text", "mean", "joint", "cross", "image->text", "text->image"}
    assert all(len(s) == 1 for s in styles.values()), styles  # the same in every panel
    patterns = [next(iter(s))[1] for s in styles.values()]
    assert len(set(patterns)) == len(patterns)  # no two keys share a dash pattern
    assert len({next(iter(s))[2] for s in styles.values()}) == len(styles)  # nor a marker
    assert all(len(c) == 1 for c in colours.values()) and len({next(iter(c)) for c in colours.values()}) == 2


def test_curves_one_run_two_coinciding_keys_stay_visible_and_keep_their_colour(runs):
    fig = plot.curves(runs["A"], ["uniformity", "cone"])
    uni, cone = fig.axes
    by_key = {ax.get_title(): {ln.get_label(): ln for ln in ax.get_lines()} for ax in (uni, cone)}
    for key in ("image", "text"):
        assert by_key["uniformity"][key].get_color() == by_key["cone"][key].get_color()
    image, text = by_key["cone"]["image"], by_key["cone"]["text"]
    assert (image.get_linestyle(), image.get_marker()) != (text.get_linestyle(), text.get_marker())


@pytest.mark.parametrize(("n", "ncols", "shape"), [(1, 3, (1, 1)), (2, 3, (1, 2)), (3, 3, (1, 3)), (4, 3, (2, 2)),
                                                   (5, 3, (2, 3)), (6, 3, (2, 3)), (7, 3, (3, 3)), (4, 4, (1, 4))])
def test_curves_have_one_axes_per_metric_in_a_grid_that_fits(runs, n, ncols, shape):
    metrics = ["gap", "alignment", "rmg", "uniformity.mean", "uniformity.joint", "cone", "recall@1"][:n]
    fig = plot.curves(runs["A"], metrics, ncols=ncols)
    assert len(fig.axes) == n and all(ax.get_visible() for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == metrics
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {shape}


def test_plane_labels_sit_inside_the_axes_off_every_point_and_arrow(runs, sample_reports):
    from embspace.trajectory import sample_snapshots

    sample = embspace.measure_trajectory(sample_snapshots(), metrics="alignment,uniformity", name="sample")
    for items in (runs["A"], runs, sample):
        fig = plot.plane(items)
        renderer = rendered(fig)
        ax = fig.axes[0]
        frame = ax.get_window_extent(renderer)
        assert ax.texts
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, \
                text.get_text()
            points, boxes = drawn_points(ax, renderer)
            assert not covered(box, points, [b for b in boxes if b.bounds != box.bounds]), text.get_text()
        assert assert_legends_clear(fig) == 1


def test_histogram_bins_follow_freedman_diaconis_per_histogram():
    """The default width of each histogram is the Freedman–Diaconis width 2·IQR·n^(−1/3) of its own values (here
    computed from the raw cosines), rounded down to a multiple of the stored 0.01 that divides the 200 bins."""
    rng = np.random.default_rng(11)
    x = ref.unit(rng.standard_normal((60, 32)))
    y = ref.unit(x + 0.9 * ref.unit(rng.standard_normal((60, 32))))
    report = embspace.measure(image=x, text=y, metrics="histograms")
    ax = plot.histograms(report, kinds=["matched", "unmatched"]).axes[0]
    cos = x @ y.T
    divisors = [f for f in range(1, 201) if 200 % f == 0]
    for patch, values in zip(ax.patches, (np.diag(cos), cos[~np.eye(60, dtype=bool)]), strict=True):
        q1, q3 = np.percentile(values, [25, 75])
        fd = 2 * (q3 - q1) * len(values) ** (-1 / 3)
        width = float(np.diff(patch.get_data().edges)[0])
        expected = max([f for f in divisors if f * 0.01 <= fd], default=1) * 0.01
        # the binned IQR differs from the raw one by under a bin: the width is the expected one or a neighbour
        neighbours = {round(f * 0.01, 6) for f in divisors if abs(f * 0.01 - expected) <= 0.011 or f * 0.01 == expected}
        assert round(width, 6) in neighbours, (width, fd, expected)
    widths = [float(np.diff(p.get_data().edges)[0]) for p in ax.patches]
    assert widths[0] > widths[1]  # 60 matched pairs get wider bins than 3,540 unmatched ones


def test_a_narrow_matched_peak_keeps_its_resolution(sample_reports):
    """CLIP-like: the matched cosines of the sample's last step lie within ~0.2; with the default bins that peak
    spans at least 10 of them (bins of 0.05 gave it 5)."""
    report = sample_reports["step 800"]
    ax = plot.histograms(report, kinds=["matched"]).axes[0]
    data = ax.patches[0].get_data()
    assert np.count_nonzero(data.values) >= 10 and np.diff(data.edges)[0] <= 0.02 + 1e-12
