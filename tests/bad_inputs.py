"""A corpus of bad inputs for every reader and entry point, each with the error it must give.

Every case is built into a folder by :func:`build`; a :class:`Case` says which entry points it goes through
(``measure``: ``embspace measure`` and ``embspace.load`` + ``embspace.measure``; ``finetune``: ``embspace finetune``;
``report``: ``embspace compare`` and ``embspace plot``) and a fragment the one-line error must contain. Files
whose loading would run code (pickles, ``.pt`` files, object arrays, ``.npy`` headers holding an expression) create
``SENTINEL`` in the corpus folder if that code ever runs.

    python -m tests.bad_inputs OUTDIR      # writes the corpus and OUTDIR/cases.json
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

SENTINEL = "CODE_RAN"
"""File name that code hidden in an input creates when it runs (it never may)."""

MEASURE, FINETUNE, REPORT = "measure", "finetune", "report"


@dataclass(frozen=True)
class Case:
    """One bad input: the CLI specs (or report paths) that name it, the entry points and the expected fragment."""

    name: str
    inputs: tuple[str, ...]
    expected: str
    entries: tuple[str, ...] = (MEASURE, FINETUNE)
    notes: str = ""


class Evil:
    """Unpickling this creates the sentinel file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


# --- valid files of every format (also the seeds of the fuzzing run) ----------------------------------------------

FORMATS = (".npy", ".npz", ".npz-compressed", ".pt", ".pth", ".safetensors", ".parquet", ".arrow", ".feather")


def matrix(n: int = 24, dim: int = 8, seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)


def write_valid(path: Path, data: np.ndarray, fmt: str) -> str:
    """Write ``data`` (N×D float) in format ``fmt`` to ``path`` (suffix added); return the spec path[:key]."""
    suffix = ".npz" if fmt == ".npz-compressed" else fmt
    path = path.with_suffix(suffix)
    n, dim = data.shape
    table = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), dim),
                      "id": pa.array(np.arange(n))})
    ragged_ok = pa.table({"emb": pa.array(list(data), type=pa.list_(pa.from_numpy_dtype(data.dtype)))})
    key = None
    if fmt == ".npy":
        np.save(path, data)
    elif fmt == ".npz":
        np.savez(path, x=data, other=data[:2])
        key = "x"
    elif fmt == ".npz-compressed":
        np.savez_compressed(path, x=data)
    elif fmt == ".pt":
        torch.save({"x": torch.from_numpy(data)}, path)
    elif fmt == ".pth":
        torch.save({"x": torch.from_numpy(data)}, path, _use_new_zipfile_serialization=False)
    elif fmt == ".safetensors":
        save_file({"x": torch.from_numpy(data)}, str(path))
    elif fmt == ".parquet":
        pq.write_table(ragged_ok, path, row_group_size=max(1, n // 3))
    elif fmt == ".arrow":
        feather.write_feather(table, path, compression="uncompressed", chunksize=max(1, n // 3))
        key = "emb"
    elif fmt == ".feather":
        feather.write_feather(table, path, chunksize=max(1, n // 3))
        key = "emb"
    else:
        raise ValueError(fmt)
    return f"{path}:{key}" if key else str(path)


def clip_folder(root: Path, shards: dict[int, tuple[int, int]], dim: int = 8, meta: dict[int, int] | None = None
                ) -> Path:
    """A clip-retrieval folder: shard k holds (image rows, text rows); ``meta`` gives metadata rows per shard."""
    for side in ("img", "text"):
        (root / f"{side}_emb").mkdir(parents=True, exist_ok=True)
    for k, (rows_img, rows_text) in shards.items():
        np.save(root / "img_emb" / f"img_emb_{k}.npy", matrix(rows_img, dim, seed=k))
        np.save(root / "text_emb" / f"text_emb_{k}.npy", matrix(rows_text, dim, seed=100 + k))
    if meta:
        (root / "metadata").mkdir(exist_ok=True)
        for k, rows in meta.items():
            pq.write_table(pa.table({"caption": ["c"] * rows}), root / "metadata" / f"metadata_{k}.parquet")
    return root


def npy_bytes(header: str, payload: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    """A ``.npy`` image with a hand-written header dict (which may lie about shape or dtype)."""
    text = header.encode("latin1")
    size_format = "<H" if version == (1, 0) else "<I"
    prefix = 8 + struct.calcsize(size_format)
    pad = (64 - (prefix + len(text) + 1) % 64) % 64
    text = text + b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_format, len(text)) + text + payload


def damage(raw: bytes, how: str) -> bytes:
    if how == "truncated":
        return raw[: len(raw) // 2]
    if how == "header-only":
        return raw[:10]
    if how == "garbage":
        return np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if how == "zeroed-middle":
        middle = len(raw) // 3
        return raw[:middle] + b"\0" * 64 + raw[middle + 64 :]
    if how == "tail-cut":
        return raw[:-7]
    raise ValueError(how)


# --- the corpus ------------------------------------------------------------------------------------------------------

Builder = Callable[[Path], Case]
_BUILDERS: dict[str, Builder] = {}


def case(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"case {name} defined twice")
        _BUILDERS[name] = builder
        return builder

    return register


def good(root: Path) -> Path:
    """A valid 24×8 float32 partner for paired cases."""
    path = root / "good.npy"
    if not path.exists():
        np.save(path, matrix())
    return path


def _register_damaged() -> None:
    # what the message must name: the file; damaged files give a reader's one-line reason
    for fmt in FORMATS:
        for how in ("truncated", "header-only", "garbage", "zeroed-middle", "tail-cut"):
            if how == "zeroed-middle" and fmt in (".npy", ".safetensors", ".parquet", ".arrow", ".feather",
                                                  ".npz"):
                continue  # zeros in the data area of these are valid numbers (or a valid header elsewhere)
            if how == "tail-cut" and fmt in (".parquet",):
                continue  # covered by truncated; the footer is the tail

            def build(root: Path, fmt: str = fmt, how: str = how) -> Case:
                stem = f"{how}{fmt.replace('.', '-')}"
                spec = write_valid(root / stem, matrix(), fmt)
                path = Path(spec.split(":")[0])
                path.write_bytes(damage(path.read_bytes(), how))
                return Case(f"{how}{fmt}", (f"image={spec}", f"text={good(root)}"), path.name)

            case(f"{how}{fmt}")(build)


_register_damaged()


@case("empty-file")
def _(root: Path) -> Case:
    (root / "empty.npy").write_bytes(b"")
    return Case("empty-file", (f"image={root / 'empty.npy'}",), "is empty (0 bytes)")


@case("clip-folder-truncated-shard")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_trunc", {0: (6, 6), 1: (5, 5)})
    shard = folder / "text_emb" / "text_emb_1.npy"
    shard.write_bytes(damage(shard.read_bytes(), "truncated"))
    return Case("clip-folder-truncated-shard", (f"pairs={folder}",), "text_emb_1.npy")


@case("clip-folder-row-mismatch")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_rows", {0: (6, 6), 10: (4, 3)})
    return Case("clip-folder-row-mismatch", (f"pairs={folder}",), "row counts differ")


@case("clip-folder-metadata-mismatch")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_meta", {0: (6, 6), 1: (4, 4)}, meta={0: 6, 1: 5})
    return Case("clip-folder-metadata-mismatch", (f"pairs={folder}",), "metadata_1.parquet has 5")


@case("clip-folder-corrupt-metadata")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_badmeta", {0: (6, 6)}, meta={0: 6})
    meta = folder / "metadata" / "metadata_0.parquet"
    meta.write_bytes(damage(meta.read_bytes(), "truncated"))
    return Case("clip-folder-corrupt-metadata", (f"pairs={folder}",), "metadata_0.parquet")


@case("clip-folder-missing-shard")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_missing", {0: (6, 6), 1: (4, 4)})
    (folder / "text_emb" / "text_emb_1.npy").unlink()
    return Case("clip-folder-missing-shard", (f"pairs={folder}",), "shard 1 is missing")


@case("clip-folder-shard-is-a-directory")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_dirshard", {0: (6, 6)})
    (folder / "img_emb" / "img_emb_1.npy").mkdir()
    np.save(folder / "text_emb" / "text_emb_1.npy", matrix(4))
    return Case("clip-folder-shard-is-a-directory", (f"pairs={folder}",), "is a directory")


@case("clip-folder-shard-is-a-fifo")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_fifo", {0: (6, 6)})
    os.mkfifo(folder / "img_emb" / "img_emb_1.npy")
    np.save(folder / "text_emb" / "text_emb_1.npy", matrix(4))
    return Case("clip-folder-shard-is-a-fifo", (f"pairs={folder}",), "not a regular file")


@case("clip-folder-dims-differ")
def _(root: Path) -> Case:
    folder = clip_folder(root / "clip_dims", {0: (6, 6)})
    np.save(folder / "img_emb" / "img_emb_1.npy", matrix(4, 5))
    np.save(folder / "text_emb" / "text_emb_1.npy", matrix(4))
    return Case("clip-folder-dims-differ", (f"pairs={folder}",), "has 5 dims")


# headers that lie ---------------------------------------------------------------------------------------------------

_PAYLOAD = matrix(24, 8).tobytes()


def _npy_case(name: str, header: str, expected: str, payload: bytes = _PAYLOAD, version: tuple[int, int] = (1, 0),
              notes: str = "") -> None:
    def build(root: Path) -> Case:
        path = root / f"{name}.npy"
        path.write_bytes(npy_bytes(header.replace("SENTINEL", str(root / SENTINEL)), payload, version))
        return Case(name, (f"image={path}", f"text={good(root)}"), expected, notes=notes)

    case(name)(build)


_npy_case("npy-header-shape-too-large", "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 8), }",
          "truncated")
_npy_case("npy-header-dtype-too-wide", "{'descr': '<f8', 'fortran_order': False, 'shape': (24, 8), }", "truncated")
_npy_case("npy-header-huge-shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
          "truncated")
_npy_case("npy-header-negative-shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (-24, 8), }",
          "not a valid .npy")
_npy_case("npy-header-bad-descr", "{'descr': 'no-such-type', 'fortran_order': False, 'shape': (24, 8), }",
          "not a valid .npy")
_npy_case("npy-header-object-descr", "{'descr': '|O', 'fortran_order': False, 'shape': (24, 8), }",
          "Python objects")
_npy_case("npy-header-structured-descr", "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, "
          "'shape': (24, 4), }", "unsupported data")
_npy_case("npy-header-is-code", "{'descr': __import__('os').system('touch SENTINEL'), 'fortran_order': False, "
          "'shape': (24, 8), }", "not a valid .npy", notes="the header holds an expression; it must not run")
_npy_case("npy-header-not-a-dict", "[1, 2, 3]", "not a valid .npy")
_npy_case("npy-header-missing-key", "{'descr': '<f4', 'shape': (24, 8), }", "not a valid .npy")
_npy_case("npy-header-bad-version", "{'descr': '<f4', 'fortran_order': False, 'shape': (24, 8), }",
          "not a valid .npy", version=(9, 9))
_npy_case("npy-header-1d", "{'descr': '<f4', 'fortran_order': False, 'shape': (192,), }", "expected a 2-D array")


@case("npz-compressed-header-lies")
def _(root: Path) -> Case:
    """A small compressed member whose header claims 10¹² floats: refused before anything is allocated."""
    path = root / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }",
                                            _PAYLOAD))
    return Case("npz-compressed-header-lies", (f"image={path}",), "truncated")


@case("npz-stored-header-lies")
def _(root: Path) -> Case:
    path = root / "lying.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("x.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 8), }",
                                            _PAYLOAD))
    return Case("npz-stored-header-lies", (f"image={path}", f"text={good(root)}"), "truncated")


@case("npz-no-arrays")
def _(root: Path) -> Case:
    path = root / "noarrays.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return Case("npz-no-arrays", (f"image={path}", f"text={good(root)}"), "holds no arrays")


@case("safetensors-header-shape-lies")
def _(root: Path) -> Case:
    header = json.dumps({"x": {"dtype": "F32", "shape": [1000, 8], "data_offsets": [0, len(_PAYLOAD)]}}).encode()
    path = root / "lying.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + _PAYLOAD)
    return Case("safetensors-header-shape-lies", (f"image={path}", f"text={good(root)}"), "lying.safetensors")


@case("safetensors-header-length-lies")
def _(root: Path) -> Case:
    header = json.dumps({"x": {"dtype": "F32", "shape": [24, 8], "data_offsets": [0, len(_PAYLOAD)]}}).encode()
    path = root / "hlen.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + header + _PAYLOAD)
    return Case("safetensors-header-length-lies", (f"image={path}", f"text={good(root)}"), "hlen.safetensors")


@case("safetensors-header-dtype-lies")
def _(root: Path) -> Case:
    header = json.dumps({"x": {"dtype": "F64", "shape": [24, 8], "data_offsets": [0, len(_PAYLOAD)]}}).encode()
    path = root / "dlie.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + _PAYLOAD)
    return Case("safetensors-header-dtype-lies", (f"image={path}", f"text={good(root)}"), "dlie.safetensors")


@case("safetensors-integer")
def _(root: Path) -> Case:
    path = root / "int.safetensors"
    save_file({"x": torch.ones(24, 8, dtype=torch.int32)}, str(path))
    return Case("safetensors-integer", (f"image={path}", f"text={good(root)}"), "integer data")


# object arrays, pickles and .pt files whose loading would run code ------------------------------------------------


def _objects(root: Path) -> np.ndarray:
    objects = np.empty((24, 8), dtype=object)
    objects[:] = Evil(root / SENTINEL)
    return objects


@case("object-array-npy")
def _(root: Path) -> Case:
    np.save(root / "obj.npy", _objects(root), allow_pickle=True)
    return Case("object-array-npy", (f"image={root / 'obj.npy'}", f"text={good(root)}"), "Python objects")


@case("object-array-npz")
def _(root: Path) -> Case:
    np.savez(root / "obj.npz", x=_objects(root))
    return Case("object-array-npz", (f"image={root / 'obj.npz'}:x", f"text={good(root)}"), "Python objects")


@case("object-array-npz-compressed")
def _(root: Path) -> Case:
    np.savez_compressed(root / "objc.npz", x=_objects(root))
    return Case("object-array-npz-compressed", (f"image={root / 'objc.npz'}:x", f"text={good(root)}"),
                "Python objects")


for _suffix in (".pkl", ".pickle"):
    @case(f"pickle{_suffix}")
    def _(root: Path, suffix: str = _suffix) -> Case:
        path = root / f"evil{suffix}"
        path.write_bytes(pickle.dumps({"x": np.ones((4, 2)), "hook": Evil(root / SENTINEL)}))
        return Case(f"pickle{suffix}", (f"image={path}", f"text={good(root)}"), "pickle files are refused")


@case("pickle-named-npy")
def _(root: Path) -> Case:
    path = root / "evil_pickle.npy"
    path.write_bytes(pickle.dumps(Evil(root / SENTINEL)))
    return Case("pickle-named-npy", (f"image={path}", f"text={good(root)}"), "not a valid .npy")


for _how in ("zip", "legacy", "raw-pickle"):
    @case(f"pt-runs-code-{_how}")
    def _(root: Path, how: str = _how) -> Case:
        path = root / f"evil_{how}.pt"
        payload = {"x": torch.ones(24, 8), "hook": Evil(root / SENTINEL)}
        if how == "zip":
            torch.save(payload, path)
        elif how == "legacy":
            torch.save(payload, path, _use_new_zipfile_serialization=False)
        else:
            path.write_bytes(pickle.dumps(payload))
        return Case(f"pt-runs-code-{how}", (f"image={path}:x", f"text={good(root)}"), "refused")


@case("pt-tensor-subclass-code")
def _(root: Path) -> Case:
    """A pickle that reaches os.system through a global the safe unpickler does not allow."""
    path = root / "evil_system.pt"
    path.write_bytes(b"cos\nsystem\n(V touch " + str(root / SENTINEL).encode() + b"\ntR.")
    return Case("pt-tensor-subclass-code", (f"image={path}", f"text={good(root)}"), "refused")


@case("pt-integer-tensor")
def _(root: Path) -> Case:
    torch.save({"x": torch.ones(24, 8, dtype=torch.int64)}, root / "int.pt")
    return Case("pt-integer-tensor", (f"image={root / 'int.pt'}:x", f"text={good(root)}"), "integer data")


@case("pt-float8")
def _(root: Path) -> Case:
    torch.save(torch.ones(24, 8).to(torch.float8_e4m3fn), root / "f8.pt")
    return Case("pt-float8", (f"image={root / 'f8.pt'}", f"text={good(root)}"), "unsupported data")


@case("pt-meta-tensor")
def _(root: Path) -> Case:
    torch.save({"x": torch.empty(24, 8, device="meta")}, root / "meta.pt")
    return Case("pt-meta-tensor", (f"image={root / 'meta.pt'}:x", f"text={good(root)}"), "meta device")


@case("pt-sparse-tensor")
def _(root: Path) -> Case:
    torch.save(torch.ones(24, 8).to_sparse(), root / "sparse.pt")
    return Case("pt-sparse-tensor", (f"image={root / 'sparse.pt'}", f"text={good(root)}"), "sparse_coo tensor")


@case("pt-no-tensors")
def _(root: Path) -> Case:
    torch.save({"a": 1, "b": "text"}, root / "notensors.pt")
    return Case("pt-no-tensors", (f"image={root / 'notensors.pt'}", f"text={good(root)}"), "holds no tensors")


# parquet / arrow rows ---------------------------------------------------------------------------------------------


def _table_case(name: str, rows: list, expected: str, fmt: str, kind: pa.DataType | None = None) -> None:
    def build(root: Path) -> Case:
        table = pa.table({"emb": pa.array(rows, type=kind or pa.list_(pa.float32()))})
        path = root / f"{name}{fmt}"
        if fmt == ".parquet":
            pq.write_table(table, path, row_group_size=8)
        else:
            feather.write_feather(table, path, chunksize=8)
        n = len(rows)
        partner = root / f"partner_{n}.npy"
        np.save(partner, matrix(n, 2, seed=5))
        return Case(name, (f"image={path}", f"text={partner}"), expected)

    case(name)(build)


for _fmt in (".parquet", ".feather"):
    _tag = _fmt.lstrip(".")
    _table_case(f"{_tag}-ragged", [[1.0, 2.0]] * 11 + [[1.0, 2.0, 3.0]] + [[1.0, 2.0]] * 4,
                "row 11 has 3 values, expected 2", _fmt)
    _table_case(f"{_tag}-null-row", [[1.0, 2.0]] * 9 + [None] + [[1.0, 2.0]] * 4, "row 9 is null", _fmt)
    _table_case(f"{_tag}-null-value", [[1.0, 2.0]] * 13 + [[1.0, None]] + [[2.0, 1.0]] * 2,
                "row 13 contains a null value", _fmt)
    _table_case(f"{_tag}-first-row-null", [None] + [[1.0, 2.0]] * 5, "row 0 is null", _fmt)
    _table_case(f"{_tag}-nan", [[1.0, 2.0]] * 4 + [[float("nan"), 2.0]] + [[3.0, 1.0]] * 4, "NaN or Inf", _fmt)
    _table_case(f"{_tag}-empty-lists", [[]] * 6, "0 dimensions", _fmt)
    _table_case(f"{_tag}-strings", [["a", "b"]] * 6, "list<string>", _fmt, kind=pa.list_(pa.string()))
    _table_case(f"{_tag}-integers", [[1, 2]] * 6, "integer data", _fmt, kind=pa.list_(pa.int64()))


@case("parquet-no-list-column")
def _(root: Path) -> Case:
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}), root / "flat.parquet")
    return Case("parquet-no-list-column", (f"image={root / 'flat.parquet'}", f"text={good(root)}"),
                "has no list column")


@case("parquet-zero-rows")
def _(root: Path) -> Case:
    pq.write_table(pa.table({"emb": pa.array([], type=pa.list_(pa.float32()))}), root / "zero.parquet")
    return Case("parquet-zero-rows", (f"image={root / 'zero.parquet'}",), "has 0 rows")


@case("arrow-stream-truncated")
def _(root: Path) -> Case:
    table = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(matrix().reshape(-1)), 8)})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=8)
    (root / "stream.arrow").write_bytes(damage(sink.getvalue(), "truncated"))
    return Case("arrow-stream-truncated", (f"image={root / 'stream.arrow'}", f"text={good(root)}"), "stream.arrow")


# values and shapes ------------------------------------------------------------------------------------------------


def _array_case(name: str, array: np.ndarray, expected: str, entries: tuple[str, ...] = (MEASURE, FINETUNE),
                paired: bool = True) -> None:
    def build(root: Path) -> Case:
        path = root / f"{name}.npy"
        np.save(path, array)
        partner = root / f"partner_{name}.npy"
        if paired:
            rows = array.shape[0] if array.ndim == 2 else 24
            np.save(partner, matrix(rows, array.shape[-1] if array.ndim == 2 and array.shape[-1] else 8, seed=3))
        inputs = (f"image={path}", f"text={partner}") if paired else (f"image={path}",)
        return Case(name, inputs, expected, entries)

    case(name)(build)


def _with(value: float, rows: list[int]) -> np.ndarray:
    data = matrix()
    data[rows, 2] = value
    return data


def _zero_rows(rows: list[int]) -> np.ndarray:
    data = matrix()
    data[rows] = 0.0
    return data


_array_case("nan-rows", _with(np.nan, [3, 17]), "2 rows contain NaN or Inf (first at row 3)")
_array_case("inf-row", _with(np.inf, [20]), "1 row contains NaN or Inf (first at row 20)")
_array_case("neg-inf-row", _with(-np.inf, [0]), "first at row 0")
_array_case("zero-norm-rows", _zero_rows([5, 6]), "zero norm")
_array_case("float16-inf", np.full((24, 8), 0x7C00, dtype=np.uint16).view(np.float16), "NaN or Inf")
_array_case("zero-rows", np.ones((0, 8), dtype=np.float32), "has 0 rows", paired=False)
_array_case("one-row", np.ones((1, 8), dtype=np.float32), "has 1 row; need at least 2", paired=False)
_array_case("zero-dims", np.ones((24, 0), dtype=np.float32), "0 dimensions", paired=False)
_array_case("one-dimensional", np.ones(24, dtype=np.float32), "expected a 2-D array", paired=False)
_array_case("three-dimensional", np.ones((3, 24, 8), dtype=np.float32), "expected a 2-D array", paired=False)
_array_case("integers", np.ones((24, 8), dtype=np.int64), "integer data", paired=False)
_array_case("booleans", np.ones((24, 8), dtype=bool), "boolean data", paired=False)
_array_case("complex", np.ones((24, 8), dtype=np.complex64), "complex data", paired=False)
_array_case("strings", np.array([["a", "b"]] * 24), "unsupported data", paired=False)
_array_case("big-endian-nan", _with(np.nan, [7]).astype(">f4"), "first at row 7")


@case("stack-nan")
def _(root: Path) -> Case:
    stack = np.stack([_with(np.nan, [11]), matrix(seed=9)])
    np.save(root / "stack_nan.npy", stack)
    return Case("stack-nan", (f"pairs={root / 'stack_nan.npy'}",), "stack_nan.npy[0]")


@case("stack-of-three")
def _(root: Path) -> Case:
    np.save(root / "stack3.npy", np.ones((3, 24, 8), dtype=np.float32))
    return Case("stack-of-three", (f"pairs={root / 'stack3.npy'}",), "expected a (2, N, D) stack")


@case("pairs-rows-differ")
def _(root: Path) -> Case:
    np.save(root / "rows23.npy", matrix(23))
    return Case("pairs-rows-differ", (f"image={good(root)}", f"text={root / 'rows23.npy'}"),
                "has 24 rows but")


@case("pairs-dims-differ")
def _(root: Path) -> Case:
    np.save(root / "dims5.npy", matrix(24, 5))
    return Case("pairs-dims-differ", (f"image={good(root)}", f"text={root / 'dims5.npy'}"), "has 8 dims but",
                entries=(MEASURE,), notes="fine-tuning heads may map different input dims")


# specs, paths and names --------------------------------------------------------------------------------------------


@case("spec-without-name")
def _(root: Path) -> Case:
    return Case("spec-without-name", (str(good(root)),), "NAME=PATH[:KEY]")


@case("spec-unknown-key")
def _(root: Path) -> Case:
    np.savez(root / "keys.npz", img=matrix(), txt=matrix(seed=1))
    return Case("spec-unknown-key", (f"image={root / 'keys.npz'}:nokey", f"text={root / 'keys.npz'}:txt"),
                "available: img, txt")


@case("spec-key-on-npy")
def _(root: Path) -> Case:
    return Case("spec-key-on-npy", (f"image={good(root)}:emb", f"text={good(root)}"), "takes no key")


@case("spec-name-twice")
def _(root: Path) -> Case:
    return Case("spec-name-twice", (f"image={good(root)}", f"image={good(root)}"), "used twice",
                entries=(MEASURE,))


@case("three-modalities")
def _(root: Path) -> Case:
    return Case("three-modalities", tuple(f"{n}={good(root)}" for n in ("a", "b", "c")), "got 3",
                entries=(MEASURE,))


@case("missing-file")
def _(root: Path) -> Case:
    return Case("missing-file", (f"image={root / 'absent.npy'}", f"text={good(root)}"), "no such file")


@case("dangling-symlink")
def _(root: Path) -> Case:
    (root / "dangling.npy").symlink_to(root / "nowhere.npy")
    return Case("dangling-symlink", (f"image={root / 'dangling.npy'}", f"text={good(root)}"), "no such file")


@case("directory-as-file")
def _(root: Path) -> Case:
    (root / "adir.npy").mkdir()
    return Case("directory-as-file", (f"image={root / 'adir.npy'}", f"text={good(root)}"), "is a directory")


@case("fifo-as-file")
def _(root: Path) -> Case:
    os.mkfifo(root / "fifo.npy")
    return Case("fifo-as-file", (f"image={root / 'fifo.npy'}", f"text={good(root)}"), "not a regular file")


@case("device-as-file")
def _(root: Path) -> Case:
    return Case("device-as-file", ("image=/dev/zero", f"text={good(root)}"), "not a regular file")


@case("device-symlink-as-npy")
def _(root: Path) -> Case:
    (root / "zeros.npy").symlink_to("/dev/zero")
    return Case("device-symlink-as-npy", (f"image={root / 'zeros.npy'}", f"text={good(root)}"),
                "not a regular file")


@case("unreadable-file")
def _(root: Path) -> Case:
    path = root / "locked.npy"
    np.save(path, matrix())
    path.chmod(0)
    return Case("unreadable-file", (f"image={path}", f"text={good(root)}"), "permission denied",
                notes="needs a non-root user: root reads any file")


@case("unreadable-folder")
def _(root: Path) -> Case:
    folder = root / "lockeddir"
    folder.mkdir()
    np.save(folder / "inside.npy", matrix())
    folder.chmod(0)
    return Case("unreadable-folder", (f"image={folder / 'inside.npy'}", f"text={good(root)}"), "inside.npy",
                notes="needs a non-root user: root reads any file")


@case("unsupported-suffix")
def _(root: Path) -> Case:
    (root / "emb.csv").write_text("1,2\n3,4\n")
    return Case("unsupported-suffix", (f"image={root / 'emb.csv'}", f"text={good(root)}"), "unsupported file type")


# odd names: each holds NaN, so the message must name the file exactly (control characters escaped)
_ODD_NAMES = {
    "odd-name-space": "with space.npy",
    "odd-name-unicode": "ёмбед 嵌入 🙂.npy",
    "odd-name-markup": "[bold red]x [blink]y[link=file:x].npy",
    "odd-name-newline": "two\nlines.npy",
    "odd-name-carriage-return": "back\rspace.npy",
    "odd-name-escape": "esc\x1b[31mred.npy",
    "odd-name-tab": "tab\there.npy",
    "odd-name-leading-dash": "-x.npy",
    "odd-name-equals": "a=b.npy",
    "odd-name-percent": "%s%n%d.npy",
    "odd-name-long": "l" * 240 + ".npy",
}


def _shown(name: str) -> str:
    """How a name appears in the one-line error: control characters escaped."""
    from embspace.errors import printable

    return printable(name)


for _case_name, _file_name in _ODD_NAMES.items():
    @case(_case_name)
    def _(root: Path, case_name: str = _case_name, file_name: str = _file_name) -> Case:
        path = root / file_name
        np.save(path, _with(np.nan, [4]))
        return Case(case_name, (f"image={path}", f"text={good(root)}"), _shown(file_name) + ": 1 row contains")


# reports for compare and plot ---------------------------------------------------------------------------------------


def good_report(root: Path) -> Path:
    path = root / "good_report.json"
    if not path.exists():
        import embspace

        x = matrix()
        embspace.measure(image=x, text=matrix(seed=1), metrics="gap,uniformity,cone").to_json(path)
    return path


def _report_case(name: str, content: bytes | Callable[[Path], object], expected: str) -> None:
    def build(root: Path) -> Case:
        path = root / f"{name}.json"
        if callable(content):
            data = content(root)
            if isinstance(data, bytes):
                path.write_bytes(data)
        else:
            path.write_bytes(content)
        return Case(name, (str(path), str(good_report(root))), expected, entries=(REPORT,))

    case(name)(build)


def _edited(edit: Callable[[dict], None]) -> Callable[[Path], bytes]:
    def content(root: Path) -> bytes:
        data = json.loads(good_report(root).read_text())
        edit(data)
        return json.dumps(data).encode()

    return content


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        keys = path.split(".")
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


_report_case("report-empty", b"", "invalid JSON")
_report_case("report-truncated", lambda root: good_report(root).read_bytes()[:200], "invalid JSON")
_report_case("report-garbage", lambda root: damage(b"", "garbage"), "report-garbage.json")
_report_case("report-not-utf8", b'{"schema": "\xff\xfe"}', "report-not-utf8.json")
_report_case("report-array", b"[1, 2, 3]", "not an embspace report")
_report_case("report-wrong-schema", b'{"schema": "other/1", "metrics": {}}', "not an embspace report")
_report_case("report-deep-nesting", b"[" * 100_000 + b"]" * 100_000, "report-deep-nesting.json")
_report_case("report-no-metrics", _edited(lambda d: d.pop("metrics")), "no 'metrics'")
_report_case("report-metrics-list", _edited(_set("metrics", [1, 2])), "no 'metrics'")
_report_case("report-metric-string", _edited(_set("metrics.gap", "0.5")), "gap")
_report_case("report-metric-nan", _edited(_set("metrics.gap", float("nan"))), "gap")
_report_case("report-metric-infinity", _edited(_set("metrics.gap", float("inf"))), "gap")
_report_case("report-metric-nested-too-deep", _edited(_set("metrics.cone", {"image": {"deeper": 1.0}})), "cone")
_report_case("report-settings-list", _edited(_set("settings", [])), "no 'settings'")
_report_case("report-inputs-string", _edited(_set("inputs", "x")), "no 'inputs'")
# numbers no float holds, and entries of the wrong kind, anywhere compare and plot look
_report_case("report-metric-400-digits", lambda root: good_report(root).read_bytes().replace(
    b'"gap": ', b'"gap": ' + b"9" * 400 + b", \"was\": ", 1), "400 digits")
_report_case("report-metric-5000-digits", lambda root: good_report(root).read_bytes().replace(
    b'"gap": ', b'"gap": ' + b"9" * 5000 + b", \"was\": ", 1), "digits")
_report_case("report-metric-1e400", lambda root: good_report(root).read_bytes().replace(
    b'"gap": ', b'"gap": 1e400, "was": ', 1), "out of range")
_report_case("report-setting-400-digits", _edited(_set("settings.t", 10**399)), "400 digits")
for _entry, _value in (("string", "x"), ("number", 3), ("list", [1, 2]), ("null", None), ("true", True)):
    _report_case(f"report-input-entry-{_entry}", _edited(_set("inputs.image", _value)), "inputs.image")
for _i, (_field, _value) in enumerate((("n", "many"), ("n", -3), ("dim", [8]), ("source", 5), ("dtype", {"a": 1}),
                                       ("content_hash", 7), ("n", 2**70), ("dropped", 1.5))):
    _report_case(f"report-input-{_field}-{_i}", _edited(_set(f"inputs.image.{_field}", _value)),
                 f"inputs.image.{_field}")
for _section in ("uncertainty", "conventions", "timings", "vectors", "spectra", "histograms", "environment"):
    _report_case(f"report-{_section}-list", _edited(_set(_section, [1, 2])), _section)


@case("report-missing")
def _(root: Path) -> Case:
    return Case("report-missing", (str(root / "absent_report.json"), str(good_report(root))), "no such file",
                entries=(REPORT,))


@case("report-directory")
def _(root: Path) -> Case:
    (root / "report_dir.json").mkdir()
    return Case("report-directory", (str(root / "report_dir.json"), str(good_report(root))), "report_dir.json",
                entries=(REPORT,))


@case("report-fifo")
def _(root: Path) -> Case:
    os.mkfifo(root / "report_fifo.json")
    return Case("report-fifo", (str(root / "report_fifo.json"), str(good_report(root))), "not a regular file",
                entries=(REPORT,), notes="compare and plot both read it through embspace.report.read_json_text, "
                "which refuses a fifo instead of waiting on it")


# --- outputs that would destroy a file, or that cannot be written ---------------------------------------------------


def alias_paths(root: Path, target: Path, suffix: str | None = None) -> dict[str, Path]:
    """Other names of the file ``target``, made in ``root`` (each a way an output path can be an input): its own
    path, other spellings of it, symbolic links (a chain too, and through a linked folder) and a hard link. With
    ``suffix``, only the names ending in it (a command that checks the suffix first)."""
    names = {"same-path": target, "dot-spelling": target.parent / "." / target.name}
    (root / "sub").mkdir(exist_ok=True)
    names["dotdot-spelling"] = root / "sub" / ".." / target.relative_to(root)
    end = suffix or target.suffix
    links = {"symlink": root / f"link_{target.stem}{end}", "symlink-chain": root / f"chain_{target.stem}{end}",
             "hardlink": root / f"hard_{target.stem}{end}"}
    for path in links.values():
        if path.is_symlink() or path.exists():
            path.unlink()
    links["symlink"].symlink_to(target)
    links["symlink-chain"].symlink_to(links["symlink"])
    os.link(target, links["hardlink"])
    folder_link = root / "linked_folder"
    if not folder_link.is_symlink():
        folder_link.symlink_to(target.parent, target_is_directory=True)
    names.update(links)
    names["symlinked-folder"] = folder_link / target.relative_to(root)
    return {name: path for name, path in names.items() if suffix is None or path.suffix == suffix}


def unwritable_paths(root: Path, suffix: str) -> dict[str, tuple[Path, str]]:
    """Outputs that cannot be written, each with the fragment its refusal names (made in ``root``)."""
    import socket

    (root / "a_file").write_text("x")
    (root / f"a_folder{suffix}").mkdir(exist_ok=True)
    sock = root / f"sock{suffix}"
    if not sock.exists():
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(sock))
        server.close()
    dangling = root / f"dangling{suffix}"
    if not dangling.is_symlink():
        dangling.symlink_to(root / "no_such_folder" / f"x{suffix}")
    return {
        "parent-is-a-file": (root / "a_file" / f"out{suffix}", "a folder on the way is a file"),
        "is-a-folder": (root / f"a_folder{suffix}", "is a directory"),
        "socket": (sock, "socket"),
        "read-only-file-system": (Path(f"/proc/embspace-out{suffix}"), "cannot write"),
        "sys-file-system": (Path(f"/sys/embspace-out{suffix}"), "cannot write"),
    }


# --- damaged fine-tuning checkpoints (finetune --resume) -------------------------------------------------------------


def checkpoints(root: Path, valid: bytes) -> dict[str, Path]:
    """Checkpoints ``finetune --resume`` must refuse in one line, from a ``valid`` one's bytes: cut at several
    places, damaged, not a checkpoint, and pickles whose loading would run code (they create ``SENTINEL``)."""
    made: dict[str, bytes] = {}
    for fraction in (0.0001, 0.1, 0.5, 0.9, 0.999):
        made[f"cut-at-{fraction:g}"] = valid[: max(1, int(len(valid) * fraction))]
    for how in ("header-only", "garbage", "zeroed-middle", "tail-cut"):
        made[how] = damage(valid, how)
    buffer = io.BytesIO()
    torch.save({"format": "embspace.finetune/1", "hook": Evil(root / SENTINEL)}, buffer)
    made["pickle-zip"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save({"format": "embspace.finetune/1", "hook": Evil(root / SENTINEL)}, buffer,
               _use_new_zipfile_serialization=False)
    made["pickle-legacy"] = buffer.getvalue()
    made["pickle-raw"] = pickle.dumps({"format": "embspace.finetune/1", "hook": Evil(root / SENTINEL)})
    made["os-system"] = b"cos\nsystem\n(V touch " + str(root / SENTINEL).encode() + b"\ntR."
    buffer = io.BytesIO()
    torch.save({"format": "other/1", "epoch": 1}, buffer)
    made["other-format"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save(torch.ones(3), buffer)
    made["a-tensor"] = buffer.getvalue()
    paths = {}
    for name, raw in made.items():
        folder = root / f"resume-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "checkpoint.pt").write_bytes(raw)
        paths[name] = folder
    return paths


# --- valid inputs that must be read: keys holding ':' and non-native byte orders --------------------------------------

COLON_KEYS = ("clip:vit-b32", "a:b", ":lead", "trail:", "a::b", "x:1:2", "ViT-L/14@336px:emb")


def colon_key_files(root: Path, key: str) -> dict[str, tuple[Path, np.ndarray]]:
    """A 24×8 matrix stored under ``key`` in every format whose entries are named (and a second entry beside it)."""
    data, other = matrix(seed=11), matrix(seed=12)
    tag = "".join(c if c.isalnum() else "_" for c in key)
    out: dict[str, tuple[Path, np.ndarray]] = {}
    table = pa.table({key: pa.array(list(data), type=pa.list_(pa.float32())),
                      "other": pa.array(list(other), type=pa.list_(pa.float32()))})
    out["parquet"] = (root / f"colon_{tag}.parquet", data)
    pq.write_table(table, out["parquet"][0])
    out["feather"] = (root / f"colon_{tag}.feather", data)
    feather.write_feather(table, out["feather"][0])
    out["npz"] = (root / f"colon_{tag}.npz", data)
    np.savez(out["npz"][0], **{key: data, "other": other})
    out["safetensors"] = (root / f"colon_{tag}.safetensors", data)
    save_file({key: torch.from_numpy(data), "other": torch.from_numpy(other)}, str(out["safetensors"][0]))
    return out


def spellings(path: Path, key: str) -> list[str]:
    """The ways a spec may name ``key`` in ``path``: as is, and with every colon of the key escaped."""
    return [f"{path}:{key}", f"{path}:{key.replace(':', chr(92) + ':')}"]


# --- building ---------------------------------------------------------------------------------------------------


def names() -> list[str]:
    """Every case name, in definition order."""
    return list(_BUILDERS)


def build(root: Path, only: list[str] | None = None) -> dict[str, Case]:
    """Write the corpus (or the named cases) into ``root`` and return the cases by name."""
    root.mkdir(parents=True, exist_ok=True)
    return {name: _BUILDERS[name](root) for name in (only or names())}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.bad_inputs OUTDIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    cases = build(root)
    manifest = [asdict(c) for c in cases.values()]
    (root / "cases.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases written to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
