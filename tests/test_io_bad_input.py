"""Every bad input is one `InputError` line naming the file; pickled code never runs; inputs are never modified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

import embspace.io.common
from embspace.errors import InputError
from embspace.io import load, open_matrix, open_pairs, parse_spec, validate


def matrix(n: int = 12, dim: int = 4, dtype: np.dtype = np.float32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim)).astype(dtype)


@contextlib.contextmanager
def unchanged(folder: Path) -> Iterator[None]:
    """Every file under ``folder`` has the same sha256 after the block as before."""

    def digests() -> dict[Path, str]:
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}

    before = digests()
    yield
    assert digests() == before


def refused(action: Callable[[], object], *fragments: str) -> str:
    """Run ``action`` (reading every row it returns); it must raise one single-line InputError holding the
    fragments. Returns the message."""
    with pytest.raises(InputError) as caught:
        result = action()
        for embeddings in (result.values() if isinstance(result, dict) else [result]):
            embeddings.to_tensor()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 400, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


class Evil:
    """Unpickling this creates the marker file — the test proves it never happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


# --- paths ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gone.npy", "gone.npz", "gone.pt", "gone.safetensors", "gone.parquet", "gone.arrow"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    refused(lambda: open_matrix(tmp_path / name), name, "no such file")
    refused(lambda: load([f"image={tmp_path / name}"]), name, "no such file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    refused(lambda: open_matrix(tmp_path / "dumps"), "dumps", "is a directory")
    refused(lambda: open_pairs(tmp_path / "dumps"), "dumps", "is a directory")


def test_unreadable_file_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "locked.npy", matrix())
    monkeypatch.setattr(embspace.io.common, "is_readable", lambda path: False)
    refused(lambda: open_matrix(tmp_path / "locked.npy"), "locked.npy", "permission denied")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.npy"
    np.save(path, matrix())
    path.chmod(0)
    try:
        refused(lambda: open_matrix(path), "locked.npy", "permission denied")
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("name", ["e.csv", "e.h5", "embeddings"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("1,2\n3,4\n")
    refused(lambda: open_matrix(tmp_path / name), name, "unsupported file type", ".npy", ".safetensors", ".parquet")


def test_spec_without_name() -> None:
    refused(lambda: parse_spec("coco.npz:img"), "coco.npz:img", "NAME=PATH[:KEY]")
    refused(lambda: load(["coco.npz"]), "coco.npz", "NAME=PATH[:KEY]")


# --- keys -----------------------------------------------------------------------------------------------------------


def test_unknown_key_lists_available_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", img=matrix(), txt=matrix())
    refused(lambda: open_matrix(tmp_path / "e.npz", "image"), "e.npz", "'image'", "available: img, txt")
    refused(lambda: open_matrix(tmp_path / "e.npz"), "e.npz", "holds 2 arrays", "img, txt")
    torch.save({"state": {"img": torch.ones(3, 2)}}, tmp_path / "e.pt")
    refused(lambda: open_matrix(tmp_path / "e.pt", "img"), "e.pt", "available: state.img")
    save_file({"a": torch.ones(3, 2), "b": torch.ones(3, 2)}, tmp_path / "e.safetensors")
    refused(lambda: open_matrix(tmp_path / "e.safetensors", "c"), "e.safetensors", "available: a, b")
    pq.write_table(pa.table({"emb": [[1.0, 2.0], [3.0, 4.0]], "id": [1, 2]}), tmp_path / "e.parquet")
    refused(lambda: open_matrix(tmp_path / "e.parquet", "vec"), "e.parquet", "available: emb")
    refused(lambda: open_matrix(tmp_path / "e.parquet", "id"), "e.parquet:id", "not a list of floats")
    np.save(tmp_path / "one.npy", matrix())
    refused(lambda: open_matrix(tmp_path / "one.npy", "img"), "one.npy:img", "takes no key")


def test_many_keys_are_truncated(tmp_path: Path) -> None:
    np.savez(tmp_path / "many.npz", **{f"layer{i:02d}": matrix() for i in range(40)})
    message = refused(lambda: open_matrix(tmp_path / "many.npz", "nope"), "many.npz", "layer00", "and 28 more")
    assert "layer39" not in message


# --- corrupt and truncated files --------------------------------------------------------------------------------------


def write_valid(path: Path) -> None:
    data = matrix(n=64, dim=16)
    table = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), 16)})
    writers = {
        ".npy": lambda: np.save(path, data),
        ".npz": lambda: np.savez(path, x=data),
        ".pt": lambda: torch.save({"x": torch.from_numpy(data)}, path),
        ".pth": lambda: torch.save({"x": torch.from_numpy(data)}, path, _use_new_zipfile_serialization=False),
        ".safetensors": lambda: save_file({"x": torch.from_numpy(data)}, path),
        ".parquet": lambda: pq.write_table(table, path, row_group_size=16),
        ".arrow": lambda: feather.write_feather(table, path, compression="uncompressed"),
        ".feather": lambda: feather.write_feather(table, path),
    }
    writers[path.suffix]()


FORMATS = [".npy", ".npz", ".pt", ".pth", ".safetensors", ".parquet", ".arrow", ".feather"]


def corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "header-only":
        path.write_bytes(raw[:10])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif how == "zeroed-middle":
        middle = len(raw) // 3
        path.write_bytes(raw[:middle] + b"\0" * 64 + raw[middle + 64 :])


@pytest.mark.parametrize("how", ["truncated", "header-only", "empty", "garbage"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_corrupt_files(tmp_path: Path, suffix: str, how: str) -> None:
    path = tmp_path / f"broken{suffix}"
    write_valid(path)
    corrupt(path, how)
    key = "x" if suffix in (".npz", ".pt", ".pth", ".safetensors") else None
    with unchanged(tmp_path):
        refused(lambda: open_matrix(path, key), f"broken{suffix}")
        refused(lambda: load([f"image={path}" + (f":{key}" if key else "")]), f"broken{suffix}")


def test_compressed_npz_with_damaged_data(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez_compressed(path, x=matrix(n=500, dim=32))
    corrupt(path, "zeroed-middle")
    with unchanged(tmp_path):
        refused(lambda: open_matrix(path, "x"), "c.npz")


# --- shapes and dtypes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("array", "fragment"), [
    (np.ones(8, dtype=np.float32), "expected a 2-D array"),
    (np.ones((3, 4, 5), dtype=np.float32), "expected a 2-D array"),
    (np.ones((2, 4, 5), dtype=np.float32), "open_pairs"),
    (np.ones((1, 4), dtype=np.float32), "has 1 row; need at least 2"),
    (np.ones((0, 4), dtype=np.float32), "has 0 rows"),
    (np.ones((5, 0), dtype=np.float32), "0 dimensions"),
    (np.ones((5, 4), dtype=np.int64), "integer data"),
    (np.ones((5, 4), dtype=np.uint8), "integer data"),
    (np.ones((5, 4), dtype=bool), "boolean data"),
    (np.ones((5, 4), dtype=np.complex64), "complex data"),
    (np.array([["a", "b"], ["c", "d"]]), "unsupported data"),
])
def test_bad_shapes_and_dtypes(tmp_path: Path, array: np.ndarray, fragment: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    np.savez(tmp_path / "bad.npz", x=array)
    with unchanged(tmp_path):
        refused(lambda: open_matrix(tmp_path / "bad.npy"), "bad.npy", fragment)
        refused(lambda: open_matrix(tmp_path / "bad.npz", "x"), "bad.npz:x", fragment)


def test_bad_dtypes_in_other_formats(tmp_path: Path) -> None:
    save_file({"x": torch.ones(4, 3, dtype=torch.int32)}, tmp_path / "i.safetensors")
    refused(lambda: open_matrix(tmp_path / "i.safetensors"), "i.safetensors:x", "integer data")
    save_file({"x": torch.ones(4, 3, dtype=torch.bool)}, tmp_path / "b.safetensors")
    refused(lambda: open_matrix(tmp_path / "b.safetensors"), "b.safetensors:x", "boolean data")
    torch.save(torch.ones(4, 3, dtype=torch.int64), tmp_path / "i.pt")
    refused(lambda: open_matrix(tmp_path / "i.pt"), "i.pt", "integer data")
    torch.save(torch.ones(4, 3, dtype=torch.complex64), tmp_path / "c.pt")
    refused(lambda: open_matrix(tmp_path / "c.pt"), "c.pt", "complex data")
    torch.save({"x": torch.ones(1, 3)}, tmp_path / "short.pt")
    refused(lambda: open_matrix(tmp_path / "short.pt"), "short.pt:x", "need at least 2")
    pq.write_table(pa.table({"emb": [[1, 2], [3, 4]]}), tmp_path / "i.parquet")
    refused(lambda: open_matrix(tmp_path / "i.parquet"), "i.parquet:emb", "integer data")
    np.save(tmp_path / "flat.npy", np.ones((5, 4), dtype=np.float32))
    refused(lambda: open_pairs(tmp_path / "flat.npy"), "flat.npy", "expected a (2, N, D) stack")
    refused(lambda: load([f"pairs={tmp_path / 'flat.npy'}"]), "flat.npy", "expected a (2, N, D) stack")


# --- pickles: refused, and their code never runs --------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".pickle"])
def test_pickles_refused_by_extension(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / f"emb{suffix}"
    path.write_bytes(pickle.dumps(Evil(marker)))
    with unchanged(tmp_path):
        refused(lambda: open_matrix(path), f"emb{suffix}", "pickle files are refused")
        refused(lambda: load([f"x={path}"]), f"emb{suffix}", "pickle")
    assert not marker.exists()


@pytest.mark.parametrize("how", ["zip", "legacy", "raw"])
def test_malicious_pt_does_not_run(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    payload = {"x": torch.ones(4, 3), "hook": Evil(marker)}
    if how == "zip":
        torch.save(payload, path)
    elif how == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(Evil(marker)))
    with unchanged(tmp_path):
        refused(lambda: open_matrix(path, "x"), "evil.pt", "refused")
    assert not marker.exists()


def test_object_arrays_do_not_unpickle(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    objects = np.empty((3, 2), dtype=object)
    objects[:] = Evil(marker)
    np.save(tmp_path / "obj.npy", objects, allow_pickle=True)
    np.savez(tmp_path / "obj.npz", x=objects)
    np.savez_compressed(tmp_path / "objc.npz", x=objects)
    with unchanged(tmp_path):
        refused(lambda: open_matrix(tmp_path / "obj.npy"), "obj.npy", "Python objects")
        refused(lambda: open_matrix(tmp_path / "obj.npz", "x"), "obj.npz:x", "Python objects")
        refused(lambda: open_matrix(tmp_path / "objc.npz"), "objc.npz:x", "Python objects")
    assert not marker.exists()


# --- parquet rows -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "fragment"), [
    ([[1.0, 2.0]] * 5 + [[1.0, 2.0, 3.0]] + [[1.0, 2.0]] * 3, "row 5 has 3 values, expected 2 (ragged lists)"),
    ([[1.0, 2.0]] * 6 + [None] + [[1.0, 2.0]] * 2, "row 6 is null"),
    ([[1.0, 2.0]] * 7 + [[1.0, None]] + [[1.0, 2.0]], "row 7 contains a null value"),
    ([None] + [[1.0, 2.0]] * 3, "row 0 is null"),
])
def test_parquet_bad_rows_are_named(tmp_path: Path, rows: list, fragment: str) -> None:
    table = pa.table({"emb": pa.array(rows, type=pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "r.parquet", row_group_size=4)  # the bad row sits in a later row group
    feather.write_feather(table, tmp_path / "r.feather", chunksize=4)
    with unchanged(tmp_path):
        refused(lambda: validate(load([f"x={tmp_path / 'r.parquet'}"]), paired=False), "r.parquet:emb", fragment)
        refused(lambda: open_matrix(tmp_path / "r.feather"), "r.feather:emb", fragment)


# --- clip-retrieval folders -----------------------------------------------------------------------------------------


def folder(root: Path, img_rows: dict[int, int], text_rows: dict[int, int], meta_rows: dict[int, int]) -> Path:
    for sub, stem, rows_by_k in (("img_emb", "img_emb", img_rows), ("text_emb", "text_emb", text_rows)):
        (root / sub).mkdir(parents=True)
        for k, rows in rows_by_k.items():
            np.save(root / sub / f"{stem}_{k}.npy", matrix(n=rows))
    (root / "metadata").mkdir()
    for k, rows in meta_rows.items():
        pq.write_table(pa.table({"caption": ["c"] * rows}), root / "metadata" / f"metadata_{k}.parquet")
    return root


def test_clip_retrieval_row_mismatch_names_the_shard(tmp_path: Path) -> None:
    root = folder(tmp_path / "laion", {0: 5, 1: 4, 10: 3}, {0: 5, 1: 4, 10: 2}, {0: 5, 1: 4, 10: 3})
    with unchanged(tmp_path):
        refused(lambda: open_pairs(root), "shard 10", "img_emb_10.npy has 3", "text_emb_10.npy has 2")


def test_clip_retrieval_metadata_mismatch(tmp_path: Path) -> None:
    root = folder(tmp_path / "laion", {0: 5, 2: 4}, {0: 5, 2: 4}, {0: 5, 2: 6})
    refused(lambda: open_pairs(root), "shard 2", "metadata_2.parquet has 6")
    refused(lambda: load([f"image={root}:img"]), "shard 2", "metadata_2.parquet has 6")


def test_clip_retrieval_missing_shard_and_bad_key(tmp_path: Path) -> None:
    root = folder(tmp_path / "laion", {0: 5, 1: 4}, {0: 5}, {})
    refused(lambda: open_pairs(root), "text_emb", "shard 1 is missing")
    assert open_matrix(root, "img").n == 9
    refused(lambda: open_matrix(root), "laion", "pick one side with :img or :text")
    refused(lambda: open_matrix(root, "audio"), "laion:audio", "img or text")


def test_clip_retrieval_mismatched_dims(tmp_path: Path) -> None:
    root = folder(tmp_path / "laion", {0: 5}, {0: 5}, {})
    np.save(root / "img_emb" / "img_emb_1.npy", np.ones((3, 7), dtype=np.float32))
    np.save(root / "text_emb" / "text_emb_1.npy", np.ones((3, 4), dtype=np.float32))
    refused(lambda: open_pairs(root), "img_emb_1.npy", "has 7 dims")


# --- load and validate ----------------------------------------------------------------------------------------------


def test_duplicate_names(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", matrix())
    np.save(tmp_path / "stack.npy", np.stack([matrix(), matrix()]))
    refused(lambda: load([f"image={tmp_path / 'a.npy'}", f"image={tmp_path / 'a.npy'}"]), "'image'", "twice")
    refused(lambda: load([f"image={tmp_path / 'a.npy'}", f"pairs={tmp_path / 'stack.npy'}"]), "'image'", "twice")


def test_paired_row_counts_name_both_sources(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", matrix(n=12))
    np.save(tmp_path / "b.npy", matrix(n=11))
    refused(lambda: validate(load([f"image={tmp_path / 'a.npy'}", f"text={tmp_path / 'b.npy'}"])),
            "a.npy", "12 rows", "b.npy", "11")
