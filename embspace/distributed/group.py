"""The process group a sharded measurement runs in: joining it, collectives with a timeout, one error for all ranks.

Every collective goes through :class:`Group`, which turns a lost rank (a dead process, a closed connection, a
timeout) into :class:`DistributedError` on each surviving rank, and an input problem on any rank (a row that cannot
be read or normalised) into the same :class:`~embspace.errors.InputError` on every rank (:meth:`Group.agree`), so
that no rank waits forever and none writes a report.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from embspace.errors import InputError
from embspace.kernels.backend import resolve_device
from embspace.kernels.budget import OOM_ERRORS

TIMEOUT_ENV = "EMBSPACE_DIST_TIMEOUT"  # seconds any rank waits for the others (default DEFAULT_TIMEOUT_S)
BACKEND_ENV = "EMBSPACE_DIST_BACKEND"  # force "gloo" or "nccl" (default: nccl for CUDA, gloo for the CPU)
DEFAULT_TIMEOUT_S = 300.0

T = TypeVar("T")
_FAILED: list[int] = []  # set once a collective failed in this process


class DistributedError(RuntimeError):
    """A rank died, timed out or lost its connection: the run ends on every surviving rank without a report."""


def timeout_seconds() -> float:
    """The collective timeout: ``$EMBSPACE_DIST_TIMEOUT`` seconds, or 300."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise InputError(TIMEOUT_ENV, f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise InputError(TIMEOUT_ENV, f"must be positive, got {text!r}")
    return value


@dataclass
class Group:
    """This process's place in the process group and the device its messages travel on.

    Attributes:
        rank, world: this rank and the number of ranks.
        backend: ``"nccl"`` (CUDA tensors) or ``"gloo"`` (CPU tensors).
        comm_device: where tensors must be for the backend; others are copied there and back.
        timeout: seconds any wait may take before the run is ended.
        owned: embspace initialised the process group (and :func:`shutdown` destroys it).
    """

    rank: int
    world: int
    backend: str
    comm_device: torch.device
    timeout: float
    owned: bool

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RuntimeError as exc:  # torch.distributed's errors (DistError and kin) are RuntimeErrors
            if isinstance(exc, (DistributedError, *OOM_ERRORS)):
                raise
            _FAILED.append(self.rank)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistributedError(f"rank {self.rank}: lost contact with the other ranks while {what} "
                                   f"(a rank died or timed out after {self.timeout:g} s): {first}") from None

    def all_reduce(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        """Σ over ranks of ``tensor`` (float64 sums stay float64), returned on the tensor's device."""
        moved = tensor.to(self.comm_device).contiguous()
        self._call(what, lambda: dist.all_reduce(moved, op=dist.ReduceOp.SUM))
        return moved.to(tensor.device)

    def all_gather(self, tensor: torch.Tensor, what: str) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape on all ranks), in rank order, on the tensor's device."""
        moved = tensor.to(self.comm_device).contiguous()
        parts = [torch.empty_like(moved) for _ in range(self.world)]
        self._call(what, lambda: dist.all_gather(parts, moved))
        return [p.to(tensor.device) for p in parts]

    def all_gather_shaped(self, tensor: torch.Tensor, shapes: list[tuple[int, ...]], what: str) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (``shapes[r]`` is rank r's shape, of one number of dimensions), in rank order, on
        the tensor's device. Tensors are padded to the largest shape (backends gather equal sizes), then cut."""
        largest = tuple(max(dims) for dims in zip(*shapes, strict=True))
        padded = torch.zeros(largest, dtype=tensor.dtype, device=self.comm_device)
        padded[tuple(slice(0, d) for d in tensor.shape)] = tensor.to(self.comm_device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self._call(what, lambda: dist.all_gather(parts, padded))
        return [part[tuple(slice(0, d) for d in shape)].to(tensor.device) for part, shape in zip(parts, shapes,
                                                                                               strict=True)]

    def all_gather_objects(self, obj: Any, what: str) -> list[Any]:
        """Every rank's picklable ``obj`` (small: error messages, bad-row lists), in rank order."""
        out: list[Any] = [None] * self.world
        self._call(what, lambda: dist.all_gather_object(out, obj))
        return out

    def broadcast_object(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj if self.main else None]
        self._call(what, lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def gather(self, tensor: torch.Tensor, shapes: list[tuple[int, ...]], what: str) -> list[torch.Tensor] | None:
        """Every rank's ``tensor`` on rank 0 (``shapes[r]`` is rank r's shape); None on the other ranks.

        Tensors are padded along the first dimension to the largest shape (backends gather equal sizes).
        """
        longest = max(shape[0] for shape in shapes)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=self.comm_device)
        padded[: len(tensor)] = tensor.to(self.comm_device)
        parts = [torch.empty_like(padded) for _ in shapes] if self.main else None
        self._call(what, lambda: dist.gather(padded, parts, dst=0))
        if parts is None:
            return None
        return [p[: shape[0]].to(tensor.device) for p, shape in zip(parts, shapes, strict=True)]

    def ring_exchange(self, send: list[torch.Tensor], receive: list[torch.Tensor], what: str,
                      tag: int = 0) -> Callable[[], list[torch.Tensor]]:
        """Start sending ``send`` to rank + 1 and receiving tensors shaped like ``receive`` from rank − 1.

        Returns ``wait()``, which blocks (at most the timeout) and gives the received tensors on the device of
        ``receive``. ``send`` must not be modified before ``wait()`` returns.
        """
        after, before = (self.rank + 1) % self.world, (self.rank - 1) % self.world
        outgoing = [t.to(self.comm_device).contiguous() for t in send]
        incoming = [t if t.device == self.comm_device and t.is_contiguous()  # received in place when it can be
                    else torch.empty(t.shape, dtype=t.dtype, device=self.comm_device) for t in receive]
        ops = [dist.P2POp(dist.isend, t, after, tag=tag) for t in outgoing]
        ops += [dist.P2POp(dist.irecv, t, before, tag=tag) for t in incoming]
        works = self._call(what, lambda: dist.batch_isend_irecv(ops))

        def wait() -> list[torch.Tensor]:
            for work in works:
                self._call(what, lambda w=work: w.wait(timedelta(seconds=self.timeout)))
            del outgoing[:]
            return [got.to(want.device) for got, want in zip(incoming, receive, strict=True)]

        return wait

    def agree(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it fails on any rank, raise that rank's error on every rank.

        An :class:`InputError` keeps its place and problem; an ``OSError`` (a shard that cannot be read) or an
        out-of-memory error becomes an :class:`InputError` naming ``what``. The first failing rank's error wins.
        """
        failure: tuple[str, str] | None = None
        value = None
        try:
            value = fn()
        except InputError as exc:
            failure = (exc.where, exc.problem)
        except OSError as exc:
            failure = (what, f"cannot be read on rank {self.rank}: {exc}")
        except OOM_ERRORS:
            failure = (what, f"the shard does not fit in memory on rank {self.rank}; use more ranks or a narrower "
                             "--precision")
        for found in self.all_gather_objects(failure, f"checking {what}"):
            if found is not None:
                raise InputError(*found)
        return value

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world, "backend": self.backend, "timeout_s": self.timeout}


def join(device: str | torch.device = "auto") -> Group | None:
    """The process group to measure in, or None for a single process.

    Uses an initialised process group (the caller's) when its world size is above 1; otherwise, when torchrun's
    environment says ``WORLD_SIZE`` > 1, initialises one from that environment (``MASTER_ADDR``/``MASTER_PORT``,
    ``RANK``): NCCL when the device is CUDA, gloo on the CPU (``$EMBSPACE_DIST_BACKEND`` overrides), with the
    timeout of :func:`timeout_seconds`. Each rank computes on GPU ``LOCAL_RANK`` (modulo the GPUs it sees).
    """
    if not dist.is_available() or _ALONE.get():
        return None
    owned = not dist.is_initialized()
    world = launched_ranks()
    if world <= 1:
        return None
    timeout = timeout_seconds()
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
        torch.cuda.set_device(local % torch.cuda.device_count())
    if owned:
        backend = os.environ.get(BACKEND_ENV) or ("nccl" if resolved.type == "cuda" else "gloo")
        if backend not in ("gloo", "nccl"):
            raise InputError(BACKEND_ENV, f"unknown backend {backend!r}; choose gloo or nccl")
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistributedError(f"cannot join the process group of {world} ranks: {first}") from None
        atexit.register(shutdown)  # a group left to interpreter teardown can abort the process (gloo threads)
    backend = str(dist.get_backend())
    comm = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return Group(dist.get_rank(), dist.get_world_size(), backend, comm, timeout, owned)


_ALONE = contextvars.ContextVar("embspace_alone", default=False)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Measure in this process only, even inside a process group (:func:`join` returns None): what a training
    callback on rank 0 needs while the other ranks train on."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def launched_ranks() -> int:
    """The world size of the initialised process group, else torchrun's ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def is_main() -> bool:
    """True on rank 0 of the process group (torchrun's ``RANK`` before it is joined), and in a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0").strip() in ("", "0")


def shutdown() -> None:
    """Destroy the process group if one is initialised, unless a rank was lost (tearing down could then wait)."""
    if dist.is_available() and dist.is_initialized() and not _FAILED:
        dist.destroy_process_group()
