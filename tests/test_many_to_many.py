"""Many-to-many pairs (pair_ids): CLIP_benchmark-style recall, the tie conventions, ranks, margins, hubness and the
pair families against float64 brute force; the mapping's forms (array, .npy, .npz:KEY, .parquet:COLUMN, shared item
ids) agree; bad mappings are refused in one line (exit code 2 from the CLI)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import skew
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.errors import InputError

KS = (1, 2, 5)


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def clip_benchmark_recall(scores: torch.Tensor, positive: torch.Tensor, k: int) -> float:
    """LAION-AI/CLIP_benchmark's recall@k (metrics/zeroshot_retrieval.py): nb_true_positive / nb_positive over the
    top-k of torch.topk, a hit when > 0, averaged over the queries."""
    topk = torch.topk(scores, k, dim=1)[1]
    onehot = torch.nn.functional.one_hot(topk, num_classes=scores.shape[1])
    true_positive = (onehot * positive.view(len(scores), 1, -1)).sum(dim=(1, 2))
    return float((true_positive / positive.sum(1) > 0).double().mean())


def brute(scores: np.ndarray, positive: np.ndarray, ks) -> dict[str, np.ndarray | dict]:
    """Per query, from sorting: the best relevant item's rank with ties for it (optimistic) or against it
    (pessimistic), the expected hit under random tie order by counting arrangements, and the margin."""
    out = {"optimistic": {}, "pessimistic": {}, "expected": {}}
    first_opt, first_pess, expected, margin, tied = [], [], {k: [] for k in ks}, [], []
    for s, pos in zip(scores, positive, strict=True):
        opt = np.lexsort((~pos, -s))  # descending score, relevant first among equals
        pess = np.lexsort((pos, -s))  # relevant last among equals
        first_opt.append(int(np.flatnonzero(pos[opt])[0]))
        first_pess.append(int(np.flatnonzero(pos[pess])[0]))
        p = s[pos].max()
        above, t, m = int(((s > p) & ~pos).sum()), int(((s == p) & ~pos).sum()), int(((s == p) & pos).sum())
        tied.append(t > 0)
        for k in ks:
            x = k - above  # slots left for the tie group of t + m items; the m relevant take random positions
            if x <= 0:
                expected[k].append(0.0)
            elif x > t:
                expected[k].append(1.0)
            else:  # P(all m relevant among the last t + m − x positions)
                expected[k].append(1 - math.comb(t + m - x, m) / math.comb(t + m, m))
        margin.append(p - s[~pos].max())
    first_opt, first_pess = np.array(first_opt), np.array(first_pess)
    for k in ks:
        out["optimistic"][k] = float((first_opt < k).mean())
        out["pessimistic"][k] = float((first_pess < k).mean())
        out["expected"][k] = float(np.mean(expected[k]))
    ranks = first_opt + 1.0
    out.update(median_rank=float(np.median(ranks)), mean_rank=float(ranks.mean()), mrr=float((1 / ranks).mean()),
               margin=np.array(margin), tied=int(np.sum(tied)))
    return out


def tied_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """14 images, 36 captions of ±1/4 entries (D = 16): exact similarities with many ties."""
    pool_a = rng.choice([-0.25, 0.25], size=(6, 16))
    pool_b = np.where(rng.random(size=(8, 16)) < 0.8, pool_a[rng.integers(0, 6, size=8)], -pool_a[0])
    image = pool_a[rng.integers(0, 6, size=14)]
    owner = np.concatenate([np.arange(14), rng.integers(0, 14, size=22)])
    text = pool_b[rng.integers(0, 8, size=len(owner))]
    return image, text, owner


@pytest.fixture(scope="module")
def captions_of_images():
    """40 images, 130 captions (every image at least one, some five), no ties."""
    rng = np.random.default_rng(3)
    image = unit(rng.normal(size=(40, 12)))
    owner = np.concatenate([np.arange(40), rng.integers(0, 40, size=90)])
    rng.shuffle(owner)
    text = unit(image[owner] + 0.9 * rng.normal(size=(len(owner), 12)))
    return image, text, owner


def test_recall_matches_clip_benchmark(captions_of_images, one_thread):
    image, text, owner = captions_of_images
    report = embspace.measure(image=image, text=text, pair_ids=owner, recall_ks=KS, precision="fp64",
                              metrics="retrieval", device="cpu")
    scores = torch.from_numpy(text @ image.T)  # (captions, images), as CLIP_benchmark's texts_emb @ images_emb.T
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(scores)), torch.from_numpy(owner)] = True
    for k in KS:
        assert report[f"recall@{k}.text->image"] == pytest.approx(clip_benchmark_recall(scores, positive, k), abs=0)
        assert report[f"recall@{k}.image->text"] == pytest.approx(clip_benchmark_recall(scores.T, positive.T, k),
                                                                  abs=0)


def test_ranks_margins_and_pair_families(captions_of_images, one_thread):
    image, text, owner = captions_of_images
    report = embspace.measure(image=image, text=text, pair_ids=owner, recall_ks=KS, precision="fp64", device="cpu",
                              metrics="gap,alignment,gap_split,rmg,cone,retrieval,hubness,histograms",
                              histogram_bins=20, hubness_k=3)
    scores = text @ image.T
    positive = owner[:, None] == np.arange(len(image))[None, :]
    for direction, s, pos in (("text->image", scores, positive), ("image->text", scores.T, positive.T)):
        ref = brute(s, pos, KS)
        for key in ("median_rank", "mean_rank", "mrr"):
            assert report[f"{key}.{direction}"] == pytest.approx(ref[key], rel=1e-12)
        assert report[f"margin_mean.{direction}"] == pytest.approx(ref["margin"].mean(), abs=1e-12)
        assert report[f"margin_median.{direction}"] == pytest.approx(np.median(ref["margin"]), abs=1e-12)
        assert report[f"margin_negative.{direction}"] == pytest.approx((ref["margin"] < 0).mean(), abs=0)
        counts = np.histogram(np.clip(ref["margin"], -2, 2), bins=20, range=(-2, 2))[0]
        assert report.histograms["margin"][direction] == counts.tolist()
        # hubness: k-occurrence of the candidates in each query's top 3 (ties: none in this data)
        top = np.argsort(-s, axis=1, kind="stable")[:, :3]
        occurrence = np.bincount(top.ravel(), minlength=s.shape[1])
        assert report[f"hubness.{direction}"] == pytest.approx(skew(occurrence, bias=True), rel=1e-9)
    x, y = image[owner], text  # every relevant (image, caption) pair once
    assert report["alignment"] == pytest.approx(((x - y) ** 2).sum(1).mean(), rel=1e-12)
    assert report["matched_cosine"] == pytest.approx((x * y).sum(1).mean(), rel=1e-12)
    assert report["gap"] == pytest.approx(np.linalg.norm(image.mean(0) - text.mean(0)), rel=1e-12)
    delta = x.mean(0) - y.mean(0)
    assert report["gap_split.centroid"] == pytest.approx(delta @ delta, rel=1e-12)
    assert report["gap_split.residual"] == pytest.approx(((x - y - delta) ** 2).sum(1).mean(), rel=1e-12)

    def cone(a):
        g = a @ a.T
        return (g.sum() - np.trace(g)) / (len(a) * (len(a) - 1))

    assert report["cone.image"] == pytest.approx(cone(image), rel=1e-10)
    assert report["cone.text"] == pytest.approx(cone(text), rel=1e-10)
    d_m = max(1 - ((x * y).sum(1).mean() + 1) / 2, 1e-3)
    d_a, d_b = 1 - (cone(image) + 1) / 2, 1 - (cone(text) + 1) / 2
    assert report["rmg"] == pytest.approx(d_m / (d_m + (d_a + d_b) / 2), rel=1e-9)
    matched = np.histogram((x * y).sum(1), bins=20, range=(-1, 1))[0]
    unmatched = np.histogram(scores[~positive], bins=20, range=(-1, 1))[0]
    assert report.histograms["matched"] == matched.tolist()
    assert report.histograms["unmatched"] == unmatched.tolist()
    assert report.settings["pairs"]["pairs"] == len(owner) and report.settings["pairs"]["items"] == len(image)
    assert "any of its captions" in report.conventions["recall@1"]


def test_tie_conventions_against_brute_force(one_thread):
    """Rows of ±1/4 in 16 dimensions (unit norm, every similarity a multiple of 1/16, exact in any summation order),
    some duplicated: many ties between relevant and other candidates."""
    image, text, owner = tied_rows(np.random.default_rng(11))
    report = embspace.measure(image=image, text=text, pair_ids=owner, recall_ks=KS, precision="fp64",
                              metrics="retrieval", device="cpu", normalize=False)
    scores = text @ image.T
    positive = owner[:, None] == np.arange(len(image))[None, :]
    seen_ties = 0
    for direction, s, pos in (("text->image", scores, positive), ("image->text", scores.T, positive.T)):
        ref = brute(s, pos, KS)
        seen_ties += ref["tied"]
        assert report[f"tied_partner.{direction}"] == ref["tied"]
        for k in KS:
            assert report[f"recall@{k}.{direction}"] == pytest.approx(ref["optimistic"][k], abs=0)
            assert report[f"recall_pessimistic@{k}.{direction}"] == pytest.approx(ref["pessimistic"][k], abs=0)
            assert report[f"recall_expected@{k}.{direction}"] == pytest.approx(ref["expected"][k], abs=1e-12)
        assert report[f"mrr.{direction}"] == pytest.approx(ref["mrr"], rel=1e-12)
    assert seen_ties > 10  # the data really has ties
    assert report["recall_pessimistic@1.text->image"] < report["recall@1.text->image"]


def test_mapping_forms_agree(captions_of_images, tmp_path, one_thread):
    import pyarrow as pa
    import pyarrow.parquet as pq

    image, text, owner = captions_of_images
    np.save(tmp_path / "owner.npy", owner)
    np.savez(tmp_path / "ids.npz", image_row=owner, other=np.arange(3))
    pq.write_table(pa.table({"image_id": owner, "caption": [f"c{i}" for i in range(len(owner))]}),
                   tmp_path / "coco.parquet")
    ids = np.random.default_rng(0).permutation(1000)[: len(image)] * 7  # arbitrary shared item ids
    shared = {"image": ids, "text": ids[owner]}
    options = dict(metrics="alignment,retrieval", precision="fp64", device="cpu", recall_ks=KS)
    reports = [embspace.measure(image=image, text=text, pair_ids=p, **options)
               for p in (owner, str(tmp_path / "owner.npy"), f"{tmp_path / 'ids.npz'}:image_row",
                         f"{tmp_path / 'coco.parquet'}:image_id", shared, torch.from_numpy(owner))]
    first = reports[0].metrics
    for report in reports[1:]:
        assert report.metrics == first


def test_one_to_one_mapping_equals_the_paired_run(one_thread):
    rng = np.random.default_rng(5)
    image, text = unit(rng.normal(size=(60, 8))), unit(rng.normal(size=(60, 8)))
    options = dict(metrics="gap,alignment,retrieval", precision="fp64", device="cpu", recall_ks=KS)
    paired = embspace.measure(image=image, text=text, **options)
    grouped = embspace.measure(image=image, text=text, pair_ids=np.arange(60), **options)
    for key, value in paired.flat().items():
        assert grouped[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize(("ids", "says"), [
    (np.arange(129) % 40, "has 129 ids"),
    (np.where(np.arange(130) == 7, 40, np.arange(130) % 40), "row 7: id 40 is not a row of image"),
    (np.where(np.arange(130) % 40 == 3, 4, np.arange(130) % 40), "image row 3 has no partner"),
    (np.arange(130) % 40 + 0.5, "must be integers"),
])
def test_bad_mappings_are_refused(captions_of_images, ids, says):
    image, text, _ = captions_of_images
    with pytest.raises(InputError, match=says):
        embspace.measure(image=image, text=text, pair_ids=ids, metrics="retrieval")


def test_shared_ids_without_partner_are_refused(captions_of_images):
    image, text, owner = captions_of_images
    ids = np.arange(len(image))
    with pytest.raises(InputError, match="text row 0: id 999 has no row in the other modality"):
        embspace.measure(image=image, text=text, pair_ids={"image": ids, "text": np.where(
            np.arange(len(owner)) == 0, 999, owner)}, metrics="retrieval")


@pytest.mark.parametrize(("ids", "says"), [
    (np.arange(129) % 40, "has 129 ids"),
    (np.where(np.arange(130) % 40 == 3, 4, np.arange(130) % 40), "image row 3 has no partner"),
])
def test_cli_refuses_a_bad_mapping_in_one_line(captions_of_images, tmp_path, ids, says):
    image, text, _ = captions_of_images
    np.save(tmp_path / "image.npy", image.astype(np.float32))
    np.save(tmp_path / "text.npy", text.astype(np.float32))
    np.save(tmp_path / "ids.npy", ids)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["measure", f"image={tmp_path / 'image.npy'}", f"text={tmp_path / 'text.npy'}",
                                      "--pair-ids", str(tmp_path / "ids.npy"), "--json", str(out)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    assert not out.exists()


def test_cli_many_to_many_end_to_end(captions_of_images, tmp_path):
    image, text, owner = captions_of_images
    np.save(tmp_path / "image.npy", image.astype(np.float32))
    np.save(tmp_path / "text.npy", text.astype(np.float32))
    np.save(tmp_path / "ids.npy", owner)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["measure", f"image={tmp_path / 'image.npy'}", f"text={tmp_path / 'text.npy'}",
                                      "--pair-ids", str(tmp_path / "ids.npy"), "--json", str(out),
                                      "--metrics", "retrieval"])
    assert result.exit_code == 0, result.stderr
    report = embspace.Report.from_json(out)
    api = embspace.measure(image=image.astype(np.float32), text=text.astype(np.float32), pair_ids=owner,
                           metrics="retrieval")
    assert report["recall@1.image->text"] == api["recall@1.image->text"]
    assert report.settings["pairs"]["pairs"] == len(owner)
