"""`Stored`: one array found in a file, not yet read, and its conversion into `Embeddings`.

Every reader returns a :class:`Stored` for the array it was asked for. A 2-D array becomes one
:class:`~embspace.embeddings.Embeddings` (:func:`as_matrix`); a (2, N, D) stack becomes two, one per plane
(:func:`as_pair`). Dtypes are checked here so that every format refuses integer, boolean, complex, object and
string data with the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embspace.embeddings import FLOAT_DTYPES, Embeddings, check_matrix
from embspace.errors import InputError
from embspace.io.common import translated

PlaneReader = Callable[[int | None, int, int], torch.Tensor]
"""``read(plane, start, stop)``: rows ``[start, stop)`` of a 2-D array (``plane=None``) or of one plane of a
3-D stack, as a CPU tensor the caller owns."""

_NUMPY_FLOATS = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                 np.dtype(np.float64): torch.float64}


@dataclass(frozen=True)
class Stored:
    """An array inside a file: where it is, its shape and dtype, and how to read rows of it."""

    source: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    read: PlaneReader

    @property
    def is_stack(self) -> bool:
        """A (2, N, D) stack of paired embeddings (read with ``open_pairs``)."""
        return len(self.shape) == 3 and self.shape[0] == 2


def refuse_dtype(source: str, kind: str, name: str) -> InputError:
    """The error for non-floating data; ``kind`` is integer / boolean / complex / object / … ."""
    if kind == "object":
        return InputError(source, f"holds Python objects (dtype {name}); pickled objects are never loaded, "
                                  "embeddings must be floating point")
    if kind in ("integer", "boolean", "complex"):
        real = " real" if kind == "complex" else ""
        return InputError(source, f"{kind} data (dtype {name}): embeddings must be{real} floating point")
    return InputError(source, f"unsupported data (dtype {name}): embeddings must be float16, bfloat16, "
                              "float32 or float64")


def torch_dtype_of_numpy(source: str, dtype: np.dtype) -> torch.dtype:
    """The torch dtype for a numpy float dtype (any byte order); anything else is refused."""
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    if native in _NUMPY_FLOATS:
        return _NUMPY_FLOATS[native]
    if dtype.hasobject:
        raise refuse_dtype(source, "object", str(dtype))
    if dtype.kind in "iu":
        raise refuse_dtype(source, "integer", str(dtype))
    if dtype.kind == "b":
        raise refuse_dtype(source, "boolean", str(dtype))
    if dtype.kind == "c":
        raise refuse_dtype(source, "complex", str(dtype))
    raise refuse_dtype(source, "other", str(dtype))


def check_torch_dtype(source: str, dtype: torch.dtype) -> torch.dtype:
    """Refuse torch dtypes the kernels do not take (bool, integers, complex, float8)."""
    if dtype in FLOAT_DTYPES:
        return dtype
    name = str(dtype).removeprefix("torch.")
    if dtype == torch.bool:
        raise refuse_dtype(source, "boolean", name)
    if dtype.is_complex:
        raise refuse_dtype(source, "complex", name)
    if dtype.is_floating_point:
        raise refuse_dtype(source, "other", name)
    raise refuse_dtype(source, "integer", name)


def numpy_rows(block: np.ndarray) -> torch.Tensor:
    """Copy rows of a (memory-mapped) array into a native-order, C-contiguous tensor the caller owns."""
    native = block.dtype.newbyteorder("=")
    return torch.from_numpy(np.array(block, dtype=native, order="C", copy=True))


def as_matrix(stored: Stored) -> Embeddings:
    """The stored 2-D array as :class:`Embeddings`; a (2, N, D) stack is pointed to ``open_pairs``."""
    if stored.is_stack:
        raise InputError(stored.source, f"is a (2, N, D) stack of pairs with shape {stored.shape}; "
                                        "read it with open_pairs (on the command line: pairs=PATH)")
    check_matrix(stored.source, stored.shape, stored.dtype)
    n, dim = stored.shape
    return Embeddings(stored.source, n, dim, stored.dtype, _checked_reader(stored, None, stored.source))


def as_pair(stored: Stored, names: Sequence[str]) -> dict[str, Embeddings]:
    """Split a (2, N, D) stack into two modalities; sources are ``file[0]`` and ``file[1]``."""
    if len(stored.shape) != 3 or stored.shape[0] != 2:
        raise InputError(stored.source, f"expected a (2, N, D) stack of paired embeddings, got shape {stored.shape}")
    _, n, dim = stored.shape
    out: dict[str, Embeddings] = {}
    for plane, name in enumerate(names):
        source = f"{stored.source}[{plane}]"
        check_matrix(source, (n, dim), stored.dtype)
        out[name] = Embeddings(source, n, dim, stored.dtype, _checked_reader(stored, plane, source))
    return out


def plane(stored: Stored, index: int) -> Embeddings:
    """One plane of a (2, N, D) stack as :class:`Embeddings` (``file[index]``)."""
    return as_pair(stored, ("0", "1"))[str(index)]


def _checked_reader(stored: Stored, plane_index: int | None, source: str) -> Callable[[int, int], torch.Tensor]:
    n = stored.shape[-2]

    def read(start: int, stop: int) -> torch.Tensor:
        start, stop = max(0, start), min(n, stop)
        if stop <= start:
            return torch.empty((0, stored.shape[-1]), dtype=stored.dtype)
        with translated(source):
            return stored.read(plane_index, start, stop)

    return read


def concatenate(parts: Sequence[Stored], source: str) -> Stored:
    """Stack 2-D parts (shards) row-wise into one lazily read :class:`Stored`; reads may span part boundaries.

    Parts may hold any number of rows (0 and 1 included); they must agree on D and dtype.
    """
    if not parts:
        raise InputError(source, "no shards to read")
    first = parts[0]
    for part in parts:
        if len(part.shape) != 2:
            raise InputError(part.source, f"expected a 2-D shard (rows × dims), got shape {part.shape}")
        if part.shape[1] != first.shape[1]:
            raise InputError(part.source, f"has {part.shape[1]} dims but {first.source} has {first.shape[1]}")
        if part.dtype != first.dtype:
            raise InputError(part.source, f"has dtype {str(part.dtype).removeprefix('torch.')} but "
                                          f"{first.source} has {str(first.dtype).removeprefix('torch.')}")
    starts = np.concatenate([[0], np.cumsum([p.shape[0] for p in parts], dtype=np.int64)])  # (parts + 1,)

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        pieces = []
        index = int(np.searchsorted(starts, start, side="right") - 1)
        while start < stop:
            begin, end = int(starts[index]), int(starts[index + 1])
            if end > begin:
                upto = min(stop, end)
                with translated(parts[index].source):
                    pieces.append(parts[index].read(None, start - begin, upto - begin))
                start = upto
            index += 1
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]  # (stop - start, D)

    return Stored(source, (int(starts[-1]), first.shape[1]), first.dtype, read)
