"""Readers on real files written by the libraries that normally write them, and `validate`."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io import load, open_matrix, open_pairs, parse_spec, validate
from embspace.io.stored import Stored, concatenate

MIND_THE_GAP = Path(__file__).resolve().parents[2] / "shared/data/mind-the-gap"


def matrix(n: int = 37, dim: int = 8, dtype: np.dtype = np.float32, seed: int = 0) -> np.ndarray:
    """(n, dim) random rows."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)


def ranges(n: int) -> list[tuple[int, int]]:
    """Odd row ranges, including empty ones, single rows and ones crossing chunk / shard boundaries."""
    return [(0, n), (0, 1), (1, 4), (3, 17), (n - 3, n), (n - 1, n), (5, 5), (2, n - 1), (7, 31)]


def assert_reads(embeddings: Embeddings, expected: torch.Tensor) -> None:
    """Every range of ``read`` and the chunked ``to_tensor`` equal the original exactly."""
    assert embeddings.shape == tuple(expected.shape)
    assert embeddings.dtype == expected.dtype
    for start, stop in ranges(embeddings.n):
        start, stop = min(start, embeddings.n), min(stop, embeddings.n)
        block = embeddings.read(start, stop)
        assert block.dtype == expected.dtype and block.shape == (stop - start, embeddings.dim)
        assert torch.equal(block, expected[start:stop]), (start, stop)
    for rows in (1, 5, 16):
        assert torch.equal(torch.cat([b for _, b in embeddings.chunks(rows)]), expected)
    assert torch.equal(embeddings.to_tensor(), expected)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- specs ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name", "path", "key"), [
    ("image=coco.npz:img", "image", "coco.npz", "img"),
    ("text=dumps/emb.pt:text_features", "text", "dumps/emb.pt", "text_features"),
    ("pairs=features_clip.npy", "pairs", "features_clip.npy", None),
    ("image=laion/:img", "image", "laion", "img"),
    ("x=dir:sub/file.npy", "x", "dir:sub/file.npy", None),
    ("t=e.pt:state.img", "t", "e.pt", "state.img"),
])
def test_parse_spec(text: str, name: str, path: str, key: str | None) -> None:
    spec = parse_spec(text)
    assert (spec.name, spec.path, spec.key) == (name, Path(path), key)


def test_parse_spec_keeps_an_existing_path_with_a_colon(tmp_path: Path) -> None:
    odd = tmp_path / "run:3.npy"
    np.save(odd, matrix())
    spec = parse_spec(f"image={odd}")
    assert spec.path == odd and spec.key is None
    assert open_matrix(spec.path, spec.key).n == 37


@pytest.mark.parametrize("text", ["coco.npz", "=coco.npz", "coco.npz:img", "a/b=c.npy"])
def test_parse_spec_without_a_name_explains_the_syntax(text: str) -> None:
    with pytest.raises(InputError, match=r"NAME=PATH\[:KEY\]"):
        parse_spec(text)


# --- numpy ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4"])
def test_npy_values_and_ranges(tmp_path: Path, dtype: str) -> None:
    data = matrix(dtype=dtype)
    np.save(tmp_path / "e.npy", data)
    embeddings = open_matrix(tmp_path / "e.npy")
    assert embeddings.source == str(tmp_path / "e.npy")
    assert_reads(embeddings, torch.from_numpy(data.astype(data.dtype.newbyteorder("="))))


def test_npy_fortran_order(tmp_path: Path) -> None:
    data = np.asfortranarray(matrix())
    np.save(tmp_path / "f.npy", data)
    assert_reads(open_matrix(tmp_path / "f.npy"), torch.from_numpy(np.ascontiguousarray(data)))


def test_npy_is_memory_mapped(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.ones((20_000, 128), dtype=np.float32))  # 10 MB
    tracemalloc.start()
    try:
        embeddings = open_matrix(path)
        block = embeddings.read(100, 110)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert torch.equal(block, torch.ones(10, 128))
    # the rows come from the file at read time, not from a copy taken when it was opened
    with open(path, "r+b") as handle:
        handle.seek(-4 * 128, 2)
        handle.write(np.full(128, 7.0, dtype=np.float32).tobytes())
    assert torch.equal(embeddings.read(19_999, 20_000), torch.full((1, 128), 7.0))


def test_npz_stored_members_are_memory_mapped(tmp_path: Path) -> None:
    img, txt = matrix(seed=1), matrix(seed=2, dtype=np.float16)
    path = tmp_path / "coco.npz"
    np.savez(path, img=img, txt=txt)
    image, text = open_matrix(path, "img"), open_matrix(path, "txt")
    assert (image.source, text.source) == (f"{path}:img", f"{path}:txt")
    assert_reads(image, torch.from_numpy(img))
    assert_reads(text, torch.from_numpy(txt))
    # a stored member is mapped at its offset: bytes changed on disk show up in later reads
    raw = path.read_bytes()
    offset = raw.index(img[-1].tobytes())
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(np.zeros(8, dtype=np.float32).tobytes())
    assert torch.equal(image.read(36, 37), torch.zeros(1, 8))


def test_npz_compressed_and_single_member(tmp_path: Path) -> None:
    data = matrix(n=50, dtype=np.float64)
    np.savez_compressed(tmp_path / "c.npz", img=data, txt=matrix(n=50))
    assert_reads(open_matrix(tmp_path / "c.npz", "img"), torch.from_numpy(data))
    np.savez_compressed(tmp_path / "one.npz", only=data)
    embeddings = open_matrix(tmp_path / "one.npz")
    assert embeddings.source == f"{tmp_path / 'one.npz'}:only"
    assert_reads(embeddings, torch.from_numpy(data))


# --- torch ----------------------------------------------------------------------------------------------------------


def test_pt_tensor_and_nested_dict(tmp_path: Path) -> None:
    img, txt = torch.from_numpy(matrix(seed=3)), torch.from_numpy(matrix(seed=4)).to(torch.bfloat16)
    torch.save(img, tmp_path / "t.pt")
    assert_reads(open_matrix(tmp_path / "t.pt"), img)
    tree = {"state": {"img": img, "txt": txt, "step": 7}, "feats": [img * 2], "model.visual.proj": img + 1}
    torch.save(tree, tmp_path / "d.pth")
    assert_reads(open_matrix(tmp_path / "d.pth", "state.img"), img)
    assert_reads(open_matrix(tmp_path / "d.pth", "state.txt"), txt)
    assert_reads(open_matrix(tmp_path / "d.pth", "feats.0"), img * 2)
    assert_reads(open_matrix(tmp_path / "d.pth", "model.visual.proj"), img + 1)


def test_pt_legacy_format(tmp_path: Path) -> None:
    data = torch.from_numpy(matrix(dtype=np.float16))
    torch.save({"text_features": data}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert_reads(open_matrix(tmp_path / "old.pt", "text_features"), data)


# --- safetensors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_safetensors(tmp_path: Path, dtype: torch.dtype) -> None:
    img = torch.from_numpy(matrix(seed=5)).to(dtype)
    save_file({"img": img, "txt": img * 3}, tmp_path / "e.safetensors")
    assert_reads(open_matrix(tmp_path / "e.safetensors", "img"), img)
    assert_reads(open_matrix(tmp_path / "e.safetensors", "txt"), img * 3)


def test_safetensors_reads_lazily(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    save_file({"img": torch.ones(1000, 16)}, path)
    embeddings = open_matrix(path)
    with open(path, "r+b") as handle:  # rewrite the last row on disk after opening
        handle.seek(-4 * 16, 2)
        handle.write(np.full(16, 5.0, dtype=np.float32).tobytes())
    assert torch.equal(embeddings.read(998, 1000), torch.stack([torch.ones(16), torch.full((16,), 5.0)]))


# --- parquet and arrow ----------------------------------------------------------------------------------------------


def list_table(data: np.ndarray, fixed: bool) -> pa.Table:
    n, dim = data.shape
    values = pa.array(data.reshape(-1))
    if fixed:
        column = pa.FixedSizeListArray.from_arrays(values, dim)
    else:
        column = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * dim), values)
    return pa.table({"id": np.arange(n), "emb": column, "caption": [f"c{i}" for i in range(n)]})


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_parquet_row_groups(tmp_path: Path, fixed: bool, dtype: np.dtype) -> None:
    data = matrix(dtype=dtype)
    pq.write_table(list_table(data, fixed), tmp_path / "e.parquet", row_group_size=10)
    assert pq.ParquetFile(tmp_path / "e.parquet").metadata.num_row_groups == 4
    embeddings = open_matrix(tmp_path / "e.parquet")  # the only list column
    assert embeddings.source == f"{tmp_path / 'e.parquet'}:emb"
    assert_reads(embeddings, torch.from_numpy(data))


def test_parquet_reads_only_the_needed_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = matrix(n=100)
    pq.write_table(list_table(data, fixed=False), tmp_path / "e.parquet", row_group_size=10)
    calls: list[tuple[int, tuple[str, ...]]] = []
    original = pq.ParquetFile.read_row_group

    def spy(self: pq.ParquetFile, index: int, columns: list[str] | None = None, **kwargs: object) -> pa.Table:
        calls.append((index, tuple(columns or ())))
        return original(self, index, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    embeddings = open_matrix(tmp_path / "e.parquet", "emb")
    calls.clear()
    assert torch.equal(embeddings.read(55, 72), torch.from_numpy(data[55:72]))
    assert calls == [(5, ("emb",)), (6, ("emb",)), (7, ("emb",))]


@pytest.mark.parametrize("fixed", [False, True])
def test_feather_and_arrow(tmp_path: Path, fixed: bool) -> None:
    data = matrix(n=45)
    table = list_table(data, fixed)
    feather.write_feather(table, tmp_path / "e.feather", chunksize=8)  # lz4-compressed record batches
    assert_reads(open_matrix(tmp_path / "e.feather", "emb"), torch.from_numpy(data))
    feather.write_feather(table, tmp_path / "plain.arrow", chunksize=8, compression="uncompressed")
    assert_reads(open_matrix(tmp_path / "plain.arrow", "emb"), torch.from_numpy(data))
    with pa.OSFile(str(tmp_path / "stream.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=8)
    assert_reads(open_matrix(tmp_path / "stream.arrow", "emb"), torch.from_numpy(data))


# --- stacks and clip-retrieval folders --------------------------------------------------------------------------------


def test_npy_stack_through_open_pairs(tmp_path: Path) -> None:
    stack = np.stack([matrix(seed=6), matrix(seed=7)])  # (2, N, D)
    path = tmp_path / "features.npy"
    np.save(path, stack)
    pairs = open_pairs(path)
    assert list(pairs) == ["image", "text"]
    assert pairs["image"].source == f"{path}[0]" and pairs["text"].source == f"{path}[1]"
    assert_reads(pairs["image"], torch.from_numpy(stack[0]))
    assert_reads(pairs["text"], torch.from_numpy(stack[1]))
    assert_reads(open_matrix(path, "text"), torch.from_numpy(stack[1]))
    assert list(open_pairs(path, names=("audio", "caption"))) == ["audio", "caption"]


def test_other_stacks_through_open_pairs(tmp_path: Path) -> None:
    stack = torch.from_numpy(np.stack([matrix(seed=8), matrix(seed=9)]))  # (2, N, D)
    torch.save({"feats": stack, "labels": torch.arange(37)}, tmp_path / "s.pt")
    save_file({"stack": stack.to(torch.bfloat16)}, tmp_path / "s.safetensors")
    np.savez(tmp_path / "s.npz", stack=stack.numpy(), other=matrix())
    for path, expected in [(tmp_path / "s.pt", stack), (tmp_path / "s.safetensors", stack.to(torch.bfloat16)),
                           (tmp_path / "s.npz", stack)]:
        pairs = open_pairs(path)
        assert_reads(pairs["image"], expected[0])
        assert_reads(pairs["text"], expected[1])


def clip_retrieval_folder(root: Path, sizes: dict[int, int], metadata: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Write shards ``k: rows``; returns the image and text matrices in numeric shard order."""
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    images, texts = [], []
    for k, rows in sizes.items():
        img, txt = matrix(n=rows, dtype=np.float16, seed=10 + k), matrix(n=rows, dtype=np.float16, seed=50 + k)
        np.save(root / "img_emb" / f"img_emb_{k}.npy", img)
        np.save(root / "text_emb" / f"text_emb_{k}.npy", txt)
        if metadata:
            pq.write_table(pa.table({"caption": [f"{k}-{i}" for i in range(rows)]}),
                           root / "metadata" / f"metadata_{k}.parquet")
    order = sorted(sizes)
    images = [np.load(root / "img_emb" / f"img_emb_{k}.npy") for k in order]
    texts = [np.load(root / "text_emb" / f"text_emb_{k}.npy") for k in order]
    return np.concatenate(images), np.concatenate(texts)


def test_clip_retrieval_folder(tmp_path: Path) -> None:
    root = tmp_path / "laion"
    img, txt = clip_retrieval_folder(root, {10: 7, 2: 5, 0: 13, 1: 1})  # numeric order 0, 1, 2, 10
    pairs = open_pairs(root)
    assert pairs["image"].source == f"{root}:img" and pairs["text"].source == f"{root}:text"
    assert_reads(pairs["image"], torch.from_numpy(img))
    assert_reads(pairs["text"], torch.from_numpy(txt))
    assert torch.equal(pairs["image"].read(12, 21), torch.from_numpy(img[12:21]))  # spans shards 0, 1, 2, 10
    assert_reads(open_matrix(root, "img"), torch.from_numpy(img))
    loaded = load([f"image={root}/:img"])
    assert list(loaded) == ["image"] and loaded["image"].n == 26


def test_clip_retrieval_folder_without_metadata(tmp_path: Path) -> None:
    img, _ = clip_retrieval_folder(tmp_path / "f", {0: 4, 1: 3}, metadata=False)
    assert_reads(open_pairs(tmp_path / "f")["image"], torch.from_numpy(img))


@pytest.mark.skipif(not (MIND_THE_GAP / "features_clip.npy").exists(), reason="mind-the-gap data not present")
def test_real_mind_the_gap_stack() -> None:
    path = MIND_THE_GAP / "features_clip.npy"
    reference = np.load(path)  # (2, 500, 512)
    pairs = open_pairs(path)
    for plane, name in enumerate(("image", "text")):
        assert pairs[name].shape == reference.shape[1:]
        assert pairs[name].source.endswith("features_clip.npy[" + str(plane) + "]")
        assert torch.equal(pairs[name].to_tensor(), torch.from_numpy(reference[plane]))
        assert torch.equal(pairs[name].read(123, 321), torch.from_numpy(reference[plane, 123:321]))
    assert validate(pairs, same_dim=True)["image"].dropped == 0


# --- load -----------------------------------------------------------------------------------------------------------


def test_load_names_and_order(tmp_path: Path) -> None:
    np.save(tmp_path / "stack.npy", np.stack([matrix(seed=1), matrix(seed=2)]))
    np.savez(tmp_path / "coco.npz", img=matrix(seed=3), txt=matrix(seed=4))
    loaded = load([f"caption={tmp_path}/coco.npz:txt", f"pairs={tmp_path}/stack.npy", f"photo={tmp_path}/coco.npz:img"])
    assert list(loaded) == ["caption", "image", "text", "photo"]
    assert loaded["image"].source.endswith("stack.npy[0]")
    renamed = load([f"x={tmp_path}/stack.npy"], names=["audio", "words"])
    assert list(renamed) == ["audio", "words"]
    one = load([f"t={tmp_path}/stack.npy:text"])
    assert list(one) == ["t"] and one["t"].source.endswith("stack.npy[1]")


def test_reading_leaves_files_unchanged(tmp_path: Path) -> None:
    data = matrix()
    np.save(tmp_path / "a.npy", data)
    np.savez(tmp_path / "b.npz", x=data)
    torch.save({"x": torch.from_numpy(data)}, tmp_path / "c.pt")
    save_file({"x": torch.from_numpy(data)}, tmp_path / "d.safetensors")
    pq.write_table(list_table(data, fixed=True), tmp_path / "e.parquet", row_group_size=9)
    feather.write_feather(list_table(data, fixed=False), tmp_path / "f.feather")
    files = sorted(tmp_path.iterdir())
    before = {path: sha256(path) for path in files}
    specs = [f"{path.stem}={path}" + (":x" if path.suffix in (".npz", ".pt", ".safetensors") else "")
             for path in files]
    for embeddings in validate(load(specs)).values():
        assert torch.equal(embeddings.to_tensor(torch.float32), torch.from_numpy(data))
    assert {path: sha256(path) for path in files} == before


# --- validate -------------------------------------------------------------------------------------------------------


def from_numpy(data: np.ndarray, source: str) -> Embeddings:
    return Embeddings.from_array(data, source)


def test_validate_refuses_nan_and_zero_rows() -> None:
    data = matrix(n=40)
    data[[17, 30, 33]] = np.nan
    data[31, 2] = np.inf
    with pytest.raises(InputError) as caught:
        validate({"image": from_numpy(data, "coco.npz:img")}, chunk_rows=7)
    assert str(caught.value) == ("coco.npz:img: 4 rows contain NaN or Inf (first at row 17); "
                                 "pass --drop-invalid to drop them")
    zeros = matrix(n=40)
    zeros[[4, 25]] = 0
    with pytest.raises(InputError, match=r"^z.npy: 2 rows have zero norm and cannot be normalised \(first at row 4\)"):
        validate({"a": from_numpy(zeros, "z.npy")}, chunk_rows=8)


def test_validate_passes_clean_input_unchanged() -> None:
    clean = {"image": from_numpy(matrix(seed=1), "a"), "text": from_numpy(matrix(seed=2), "b")}
    out = validate(clean, same_dim=True)
    assert out == clean and all(e.dropped == 0 for e in out.values())


def test_validate_drops_pair_consistently() -> None:
    image, text = matrix(n=50, seed=1), matrix(n=50, seed=2)
    image[[3, 20]] = np.nan
    text[[20, 44]] = 0
    text[7, 0] = -np.inf
    out = validate({"image": from_numpy(image, "i"), "text": from_numpy(text, "t")}, drop_invalid=True, chunk_rows=6)
    bad = ~np.isfinite(image).all(1) | ~np.isfinite(text).all(1) | (image == 0).all(1) | (text == 0).all(1)
    keep = np.flatnonzero(~bad)
    assert len(keep) == 46
    for name, data in (("image", image), ("text", text)):
        assert out[name].n == 46 and out[name].dropped == 4
        assert_reads(out[name], torch.from_numpy(data[keep]))


def test_validate_drops_per_modality_when_unpaired() -> None:
    image, text = matrix(n=30, seed=1), matrix(n=20, seed=2)
    image[[0, 29]] = np.nan
    out = validate({"image": from_numpy(image, "i"), "text": from_numpy(text, "t")}, paired=False, drop_invalid=True)
    assert (out["image"].n, out["image"].dropped, out["text"].n, out["text"].dropped) == (28, 2, 20, 0)
    assert torch.equal(out["image"].to_tensor(), torch.from_numpy(image[1:29]))


def test_validate_needs_two_rows_after_dropping() -> None:
    data = np.zeros((5, 4), dtype=np.float32)
    data[2] = 1
    with pytest.raises(InputError, match=r"^few.npy: only 1 valid row left after dropping 4 invalid rows"):
        validate({"x": from_numpy(data, "few.npy")}, drop_invalid=True)


def test_validate_shapes() -> None:
    a, b, c = from_numpy(matrix(n=10), "a.npy"), from_numpy(matrix(n=9), "b.npy"), from_numpy(matrix(dim=4), "c.npy")
    with pytest.raises(InputError, match=r"^a.npy: has 10 rows but b.npy has 9"):
        validate({"image": a, "text": b})
    assert validate({"image": a, "text": b}, paired=False)["text"].n == 9
    with pytest.raises(InputError, match=r"has 8 dims but c.npy has 4"):
        validate({"image": from_numpy(matrix(), "d.npy"), "text": c}, same_dim=True)


# --- shard concatenation, property-based ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6), data=st.data())
def test_concatenated_shards_read_any_range(sizes: list[int], data: st.DataObject) -> None:
    parts = [matrix(n=size, dim=3, seed=i) for i, size in enumerate(sizes)]
    stored = [Stored(f"shard{i}", part.shape, torch.float32,
                     lambda plane, start, stop, part=part: torch.from_numpy(part[start:stop].copy()))
              for i, part in enumerate(parts)]
    whole = concatenate(stored, "all")
    expected = np.concatenate(parts)
    assert whole.shape == expected.shape
    start = data.draw(st.integers(0, len(expected)))
    stop = data.draw(st.integers(start, len(expected)))
    if stop > start:
        assert torch.equal(whole.read(None, start, stop), torch.from_numpy(expected[start:stop]))
