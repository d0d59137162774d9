"""``.pt`` / ``.pth`` files written by ``torch.save``: a tensor, or dicts / lists of tensors addressed with dots.

Loaded with ``weights_only=True`` — the restricted unpickler that builds only tensors and plain containers — and
memory-mapped when the file is in the zip format. A file whose unpickling would call anything else is refused
before that call happens.
"""

from __future__ import annotations

import ctypes
import mmap as mmap_module
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from embspace.embeddings import refuse_dataless
from embspace.errors import InputError
from embspace.io.common import choose_key, one_line, source_of, translated
from embspace.io.stored import Stored, check_torch_dtype

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_DEPTH = 8
_LIBC = ctypes.CDLL(None, use_errno=True)


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == _ZIP_MAGIC


def refusal(exc: BaseException) -> str:
    """One line saying why the restricted unpickler stopped."""
    text = re.sub(r"\s+", " ", str(exc))
    called = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if called:
        return (f"refused: unpickling it would call {called.group(1)}, which is not a tensor; only tensors "
                "and dicts / lists of tensors are read, and no pickled code is run")
    reason = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(Check the documentation|$)", text)
    detail = reason.group(1) if reason else one_line(exc)
    return f"refused: not a plain tensor file, the safe unpickler stopped at: {detail}"


def load_tree(path: Path) -> object:
    """``torch.load`` with ``weights_only=True`` (memory-mapped for the zip format), errors made one line."""
    source = str(path)
    with translated(source):
        mmap = _is_zip(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            if "Weights only" in str(exc) or "WeightsUnpickler" in str(exc):
                raise InputError(source, refusal(exc)) from None
            raise


def tensors_in(tree: object, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts / lists / tuples, with its dotted path (``state.img``, ``feats.0``)."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif depth < _MAX_DEPTH and isinstance(tree, dict):
        for name, value in tree.items():
            yield from tensors_in(value, f"{prefix}.{name}" if prefix else str(name), depth + 1)
    elif depth < _MAX_DEPTH and isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from tensors_in(value, f"{prefix}.{index}" if prefix else str(index), depth + 1)


def release_mapped(tensor: torch.Tensor) -> None:
    """Drop the pages of a memory-mapped tensor's storage from this process (they stay in the page cache and are
    read again on the next access), so that streaming a file larger than the memory budget does not keep it all
    resident. Only for storages ``torch.load(mmap=True)`` mapped from a file and never written to."""
    if not hasattr(mmap_module, "MADV_DONTNEED"):
        return
    storage = tensor.untyped_storage()
    page = mmap_module.PAGESIZE
    first = storage.data_ptr() // page * page
    last = -(-(storage.data_ptr() + storage.nbytes()) // page) * page
    if last > first:
        _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), mmap_module.MADV_DONTNEED)


def open_pt(path: Path, key: str | None = None, *, ndim: int | None = None) -> Stored:
    """One tensor of a ``torch.save`` file: the tensor itself, or the entry at a dotted key."""
    tree = load_tree(path)
    if isinstance(tree, torch.Tensor):
        if key is not None:
            raise InputError(source_of(path, key), "the file holds a single tensor and takes no key")
        name, tensor, source = None, tree, str(path)
    else:
        found: dict[str, torch.Tensor] = {}
        for dotted, tensor in tensors_in(tree):
            found.setdefault(dotted, tensor)
        name = choose_key(str(path), {k: tuple(t.shape) for k, t in found.items()}, key, what="tensor", ndim=ndim)
        tensor, source = found[name], source_of(path, name)
    tensor = tensor.detach()
    dtype = check_torch_dtype(source, tensor.dtype)
    refuse_dataless(source, tensor)

    mapped = _is_zip(path)  # load_tree memory-maps the zip format

    def read(plane: int | None, start: int, stop: int) -> torch.Tensor:
        rows = tensor[start:stop] if plane is None else tensor[plane, start:stop]
        rows = rows.clone(memory_format=torch.contiguous_format)
        if mapped:
            release_mapped(tensor)
        return rows

    return Stored(source, tuple(tensor.shape), dtype, read)
