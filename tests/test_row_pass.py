"""The O(N·D) pass (embspace.row_pass): its sums against a float64 brute force and, to the last bit, against the
per-statistic functions; its validation against the scan's messages; its provenance against the io functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embspace
from embspace import row_pass
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io.digest import content_hash
from embspace.io.duplicates import duplicate_rows
from embspace.io.validate import validate
from embspace.kernels.rows import ResidentRows, StreamedRows, prepare_rows
from embspace.metrics import centroid, spectrum

CPU = torch.device("cpu")


def data(n: int = 1000, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=dim)
    x = (offset + rng.normal(size=(n, dim))).astype(np.float16)
    y = (offset + rng.normal(size=(n, dim))).astype(np.float16)
    x[7] = x[3]  # two duplicated rows in x
    x[11] = x[3]
    return x, y


def rows_of(x: np.ndarray, y: np.ndarray, resident: bool, block: int):
    return {name: prepare_rows(Embeddings.from_array(a, name), CPU, torch.float32, chunk_rows=block,
                               resident=resident, fill=False) for name, a in (("image", x), ("text", y))}


@pytest.mark.parametrize("resident", [True, False])
@pytest.mark.parametrize("block", [64, 300, 4096])
def test_the_pass_gives_the_float64_sums_and_exactly_those_of_each_statistic_alone(resident, block):
    x, y = data()
    rows = rows_of(x, y, resident, block)
    assert isinstance(rows["image"], ResidentRows if resident else StreamedRows)
    found = row_pass.run(rows, row_pass.Wanted(("image", "text"), alpha=2.0, grams=frozenset({"image", "text"}),
                                               provenance=True, validate=True))
    # a float64 brute force from the definitions
    xh = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    yh = y.astype(np.float64) / np.linalg.norm(y.astype(np.float64), axis=1, keepdims=True)
    pair = found.pair_sums
    np.testing.assert_allclose(pair.x.total.numpy(), xh.sum(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pair.dots, (xh * yh).sum(), rtol=1e-6)
    np.testing.assert_allclose(pair.distances, ((xh - yh) ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(found.grams["image"].gram.numpy(), xh.T @ xh, rtol=1e-5, atol=1e-5)
    assert pair.n == found.grams["text"].n == len(x)
    # the per-statistic functions over the same rows, bit for bit
    again = {name: prepare_rows(Embeddings.from_array(a, name), CPU, torch.float32, chunk_rows=block,
                                resident=resident) for name, a in (("image", x), ("text", y))}
    alone = centroid.pair_sums(again["image"], again["text"], 2.0)
    assert torch.equal(pair.x.total, alone.x.total) and torch.equal(pair.y.total, alone.y.total)
    assert (pair.dots, pair.distances, pair.x.squares, pair.y.squares) == (alone.dots, alone.distances,
                                                                            alone.x.squares, alone.y.squares)
    for name in ("image", "text"):
        gram = spectrum.Gram.of_rows(again[name])
        assert torch.equal(found.grams[name].gram, gram.gram) and torch.equal(found.grams[name].total, gram.total)
    if resident:  # the held rows were filled by the pass, as prepare_rows fills them
        assert rows["image"].filled and torch.equal(rows["image"].data, again["image"].data)
    for name in ("image", "text"):
        embeddings = rows[name].embeddings
        assert found.content_hashes[name] == content_hash(embeddings)
        assert found.duplicate_rows[name] == duplicate_rows(embeddings)
    assert found.duplicate_rows == {"image": 2, "text": 0}


def test_moments_of_one_modality_match_moment_sums():
    x, _ = data(n=513, dim=9)
    rows = {"image": prepare_rows(Embeddings.from_array(x, "image"), CPU, torch.float64, chunk_rows=128, fill=False)}
    found = row_pass.run(rows, row_pass.Wanted(("image",), moments=frozenset({"image"})))
    alone = centroid.moment_sums(prepare_rows(Embeddings.from_array(x, "image"), CPU, torch.float64, chunk_rows=128))
    assert torch.equal(found.moments["image"].total, alone.total) and found.moments["image"].squares == alone.squares
    assert found.content_hashes == {}  # no provenance asked


@pytest.mark.parametrize("bad", ["nan", "inf", "zero"])
def test_a_bad_row_is_refused_with_the_message_of_the_scan(bad):
    x, y = data(n=700)
    x[650, 2] = {"nan": np.nan, "inf": np.inf, "zero": 0}[bad]
    if bad == "zero":
        x[650] = 0
    y[20, 0] = np.nan  # the second modality's bad row comes first in the pass, the first modality's is named
    with pytest.raises(InputError) as scanned:
        validate({"image": Embeddings.from_array(x, "image"), "text": Embeddings.from_array(y, "text")})
    with pytest.raises(InputError) as passed:
        row_pass.run(rows_of(x, y, True, 256), row_pass.Wanted(("image", "text"), alpha=2.0, validate=True))
    assert str(passed.value) == str(scanned.value)
    assert "image" in str(passed.value) and "row 650" in str(passed.value)
    with pytest.raises(InputError) as measured:
        embspace.measure(image=x, text=y, metrics="gap", memory=1 << 20)
    assert measured.value.problem == scanned.value.problem and "image" in measured.value.where


def test_measure_holds_no_rows_for_the_o_nd_families_only():
    x, y = data(n=300)
    report = embspace.measure(image=x, text=y, metrics="gap,alignment,cone,spectrum")
    assert report.settings["memory"]["streamed"] == ["image", "text"]  # nothing reads them twice: not held
    both = embspace.measure(image=x, text=y, metrics="gap,uniformity")
    assert both.settings["memory"]["streamed"] == []
    assert both["gap"] == report["gap"]
