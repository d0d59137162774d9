"""`Embeddings`: one modality's N×D matrix, read lazily in row chunks.

Readers in :mod:`embspace.io` wrap whatever holds the rows (a memory-mapped ``.npy``, a safetensors slice,
a parquet column, a stack of shards) in a ``read(start, stop)`` callable; nothing here loads the whole matrix
unless asked to. Rows come back as CPU tensors in the stored dtype (float16 / bfloat16 / float32 / float64);
the kernels upcast and normalise them chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from embspace.errors import InputError

RowReader = Callable[[int, int], torch.Tensor]
"""``read(start, stop)`` returns rows ``[start, stop)`` as a 2-D CPU tensor of the stored dtype."""

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DEFAULT_CHUNK_ROWS = 65_536
_NUMPY_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Embeddings:
    """A lazily read matrix of ``n`` rows (one per item) and ``dim`` columns.

    Attributes:
        source: where the rows come from, as the user would write it (``"coco.npz:img"``).
        n: number of rows.
        dim: number of columns.
        dtype: the stored dtype (the kernels upcast chunk by chunk).
        read: ``read(start, stop)`` → CPU tensor of rows ``[start, stop)``.
        dropped: number of rows removed by validation (``--drop-invalid``), 0 otherwise.
    """

    source: str
    n: int
    dim: int
    dtype: torch.dtype
    read: RowReader = field(repr=False, compare=False)
    dropped: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def __len__(self) -> int:
        return self.n

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def chunks(self, rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, rows[start:start+rows])`` over the whole matrix."""
        for start in range(0, self.n, rows):
            yield start, self.read(start, min(start + rows, self.n))

    def to_tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The whole matrix as one CPU tensor (reads every row; use :meth:`chunks` for large inputs)."""
        out = torch.empty((self.n, self.dim), dtype=dtype or self.dtype)  # (N, D)
        for start, block in self.chunks():
            out[start : start + len(block)] = block
        return out

    def take(self, rows: np.ndarray, source: str | None = None) -> Embeddings:
        """A view of the given rows (sorted, unique indices), read lazily like the original."""
        rows = np.asarray(rows, dtype=np.int64)
        parent = self

        def read(start: int, stop: int) -> torch.Tensor:
            idx = rows[start:stop]
            if len(idx) == 0:
                return torch.empty((0, parent.dim), dtype=parent.dtype)
            block = parent.read(int(idx[0]), int(idx[-1]) + 1)
            return block[torch.from_numpy(idx - idx[0])]

        return Embeddings(source or self.source, len(rows), self.dim, self.dtype, read, self.n - len(rows))

    @staticmethod
    def from_array(data: np.ndarray | torch.Tensor, source: str = "<array>") -> Embeddings:
        """Wrap an in-memory array or tensor (any device) without copying it more than needed."""
        if isinstance(data, np.ndarray):
            if data.dtype == object or not np.issubdtype(data.dtype, np.number):
                raise InputError(source, f"expected a numeric array, got dtype {data.dtype}")
            if np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.bool_):
                raise InputError(source, f"integer data (dtype {data.dtype}): embeddings must be floating point")
            native = data.dtype.newbyteorder("=")
            if native not in _NUMPY_FLOATS:
                kind = "complex data" if np.issubdtype(data.dtype, np.complexfloating) else "unsupported data"
                raise InputError(source, f"{kind} (dtype {data.dtype}): embeddings must be float16, bfloat16, "
                                         "float32 or float64")
            # big-endian (or other non-native) arrays are read in the machine's byte order: the same numbers
            tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=native))
        elif isinstance(data, torch.Tensor):
            tensor = data.detach()
        else:
            try:
                tensor = torch.as_tensor(np.asarray(data))
            except (TypeError, ValueError) as exc:
                raise InputError(source, f"cannot read as an array: {exc}") from None
        return from_tensor(tensor, source)


def from_tensor(tensor: torch.Tensor, source: str) -> Embeddings:
    """Check shape and dtype of a 2-D tensor and wrap it; used by the readers and :meth:`Embeddings.from_array`."""
    check_matrix(source, tuple(tensor.shape), tensor.dtype)
    refuse_dataless(source, tensor)
    tensor = tensor.detach()

    def read(start: int, stop: int) -> torch.Tensor:
        return tensor[start:stop].cpu()

    return Embeddings(source, int(tensor.shape[0]), int(tensor.shape[1]), tensor.dtype, read)


def check_matrix(source: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Refuse anything that is not a floating-point N×D matrix with N ≥ 2 and D ≥ 1."""
    if dtype not in FLOAT_DTYPES:
        if dtype.is_complex:
            raise InputError(source, f"complex data (dtype {dtype}): embeddings must be real floating point")
        raise InputError(source, f"integer data (dtype {str(dtype).removeprefix('torch.')}): "
                                 "embeddings must be floating point")
    if len(shape) != 2:
        raise InputError(source, f"expected a 2-D array (rows × dims), got shape {tuple(shape)}")
    n, dim = shape
    if dim < 1:
        raise InputError(source, f"has {dim} dimensions per row; need at least 1")
    if n < 2:
        raise InputError(source, f"has {n} row{'s' if n != 1 else ''}; need at least 2")


def refuse_dataless(source: str, tensor: torch.Tensor) -> None:
    """Refuse a tensor that holds no numbers: on the ``meta`` device (shapes only, as a model initialised without
    weights saves them), or a sparse / quantised layout the kernels cannot read row by row."""
    if tensor.is_meta:
        raise InputError(source, "is a tensor on the meta device: it has a shape but no data; save the real tensor")
    if tensor.layout != torch.strided:
        raise InputError(source, f"is a {str(tensor.layout).removeprefix('torch.')} tensor; save it dense "
                                 "(tensor.to_dense())")
    if tensor.is_quantized:
        raise InputError(source, "is a quantised tensor; save it dequantised (tensor.dequantize())")
