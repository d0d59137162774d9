"""Parquet and Arrow IPC (``.arrow`` / ``.feather``) files: one list or fixed-size-list column of floats.

Rows are read one row group (parquet) or record batch (IPC) at a time and converted through the flat child
values and a numpy reshape — never through per-row Python lists. Ragged rows, null rows and null values are
refused, naming the first bad row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from embspace.errors import InputError
from embspace.io.common import choose_key, listing, source_of, translated
from embspace.io.stored import Stored, numpy_rows, refuse_dtype

_FILE_MAGIC = b"ARROW1"
_FLOATS = {pa.float16(): torch.float16, pa.float32(): torch.float32, pa.float64(): torch.float64}

GroupLoader = Callable[[int], pa.Array | pa.ChunkedArray]
"""``load(i)`` → the embedding column of row group / record batch ``i``."""


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _pick_column(path: Path, schema: pa.Schema, key: str | None) -> tuple[str, pa.DataType]:
    """The list column to read: the named one, or the only list column."""
    lists = {field.name: () for field in schema if _is_list(field.type)}  # shapes are known only once read
    if key is not None and key not in lists and key in schema.names:
        raise InputError(source_of(path, key), f"column is {schema.field(key).type}, not a list of floats "
                                               f"(list columns: {listing(list(lists))})")
    if key is None and not lists:
        raise InputError(str(path), f"has no list column of embeddings (columns: {listing(schema.names)})")
    name = choose_key(str(path), lists, key, what="list column")
    return name, schema.field(name).type


def _value_dtype(source: str, kind: pa.DataType) -> torch.dtype:
    values = kind.value_type
    if values in _FLOATS:
        return _FLOATS[values]
    if pa.types.is_integer(values):
        raise refuse_dtype(source, "integer", f"list<{values}>")
    if pa.types.is_boolean(values):
        raise refuse_dtype(source, "boolean", f"list<{values}>")
    raise refuse_dtype(source, "other", f"list<{values}>")


def lists_to_numpy(column: pa.Array | pa.ChunkedArray, dim: int, first_row: int, source: str) -> np.ndarray:
    """(rows, dim) view of a list column's flat values; ``first_row`` is the global index of its row 0."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        bad = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(source, f"row {first_row + bad} is null; every row needs {dim} values")
    if pa.types.is_fixed_size_list(column.type):
        offsets = np.arange(len(column) + 1, dtype=np.int64) * dim  # (rows + 1,)
    else:
        offsets = np.asarray(column.offsets, dtype=np.int64)  # (rows + 1,)
        lengths = np.diff(offsets)
        ragged = np.flatnonzero(lengths != dim)
        if len(ragged):
            bad = int(ragged[0])
            raise InputError(source, f"row {first_row + bad} has {lengths[bad]} values, expected {dim} "
                                     "(ragged lists)")
    values = column.flatten()  # (rows * dim,)
    if values.null_count:
        first_null = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        bad = int(np.searchsorted(offsets - offsets[0], first_null, side="right") - 1)
        raise InputError(source, f"row {first_row + bad} contains a null value")
    return values.to_numpy(zero_copy_only=False).reshape(len(column), dim)  # (rows, dim)


class _Groups:
    """Row access over consecutive groups (row groups or record batches), keeping the last one decoded."""

    def __init__(self, counts: list[int], load: GroupLoader, dim: int, source: str) -> None:
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # (groups + 1,)
        self.load, self.dim, self.source = load, dim, source
        self._lock = threading.Lock()
        self._cached: tuple[int, np.ndarray] | None = None

    def group(self, index: int) -> np.ndarray:
        with self._lock:
            if self._cached is None or self._cached[0] != index:
                column = self.load(index)
                self._cached = (index, lists_to_numpy(column, self.dim, int(self.starts[index]), self.source))
            return self._cached[1]

    def read(self, plane: int | None, start: int, stop: int) -> torch.Tensor:
        pieces = []
        index = int(np.searchsorted(self.starts, start, side="right") - 1)
        while start < stop:
            begin, end = int(self.starts[index]), int(self.starts[index + 1])
            if end > begin:
                upto = min(stop, end)
                pieces.append(self.group(index)[start - begin : upto - begin])
                start = upto
            index += 1
        return numpy_rows(np.concatenate(pieces) if len(pieces) > 1 else pieces[0])


def _first_length(counts: list[int], load: GroupLoader, kind: pa.DataType, source: str) -> int:
    """D: the fixed size, or the length of row 0 of a variable-size list column (0 when there are no rows)."""
    if pa.types.is_fixed_size_list(kind):
        return int(kind.list_size)
    for index, count in enumerate(counts):
        if count:  # the first non-empty group holds row 0
            first = load(index)[0]
            if not first.is_valid:
                raise InputError(source, "row 0 is null; every row needs values")
            return len(first)
    return 0


def _stored(path: Path, name: str, kind: pa.DataType, counts: list[int], load: GroupLoader) -> Stored:
    """Wrap a column split into groups of ``counts`` rows as :class:`Stored` of shape (N, D)."""
    source = source_of(path, name)
    dtype = _value_dtype(source, kind)
    if sum(counts) == 0:  # D is unknown without rows: say what is wrong
        raise InputError(source, "has 0 rows; need at least 2")
    with translated(source):
        dim = _first_length(counts, load, kind, source)
    groups = _Groups(counts, load, dim, source)
    return Stored(source, (int(groups.starts[-1]), dim), dtype, groups.read)


def open_parquet(path: Path, key: str | None = None) -> Stored:
    """A list column of a parquet file, read one row group at a time.

    The file is read, not memory-mapped: pages a mapping has touched stay in the process's resident memory, so
    streaming a file larger than the memory budget through a mapping would hold all of it. Peak memory is about one
    decoded row group (and its compressed bytes).
    """
    with translated(str(path)):
        handle = pq.ParquetFile(path, memory_map=False)  # read, not mapped: mapped pages would stay resident
        schema = handle.schema_arrow
        counts = [handle.metadata.row_group(i).num_rows for i in range(handle.metadata.num_row_groups)]
    name, kind = _pick_column(path, schema, key)

    def load(index: int) -> pa.ChunkedArray:
        column = handle.read_row_group(index, columns=[name]).column(0)
        column.validate(full=True)
        return column

    return _stored(path, name, kind, counts, load)


def _validated(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch after Arrow's full validation: IPC reading does not check offsets and lengths, and a corrupt
    batch used unchecked can abort the process inside Arrow's C++ code instead of raising."""
    batch.validate(full=True)
    return batch


def open_arrow(path: Path, key: str | None = None) -> Stored:
    """A list column of an Arrow IPC file (``.arrow`` / ``.feather`` v2) or stream.

    The file format is read (not mapped) one record batch at a time, decoding only the chosen column: peak memory
    is about one batch; counting the rows of a compressed file decodes that column of each batch once when it is
    opened. The stream format cannot seek, so it is memory-mapped and its batches are indexed once (zero-copy when
    uncompressed, held decompressed otherwise): every page read stays resident, the whole file by the end.
    """
    with translated(str(path)):
        source_map = pa.memory_map(str(path), "r")
        if source_map.read(len(_FILE_MAGIC)) == _FILE_MAGIC:
            source_map.close()
            source_map = pa.OSFile(str(path), "rb")  # batches are read, not mapped (see open_parquet)
            reader = pa.ipc.open_file(source_map)
            schema = reader.schema
        else:
            source_map.seek(0)
            reader = None
            stream = pa.ipc.open_stream(source_map)
            schema = stream.schema
            batches = [_validated(batch) for batch in stream]
    name, kind = _pick_column(path, schema, key)
    if reader is None:
        column_at = schema.get_field_index(name)
        counts = [batch.num_rows for batch in batches]

        def load(index: int) -> pa.Array:
            return batches[index].column(column_at)

        return _stored(path, name, kind, counts, load)
    with translated(source_of(path, name)):
        options = pa.ipc.IpcReadOptions(included_fields=[schema.get_field_index(name)])
        reader = pa.ipc.open_file(source_map, options=options)
        counts = [_validated(reader.get_batch(i)).num_rows for i in range(reader.num_record_batches)]

    def load_batch(index: int) -> pa.Array:
        return _validated(reader.get_batch(index)).column(0)

    return _stored(path, name, kind, counts, load_batch)
