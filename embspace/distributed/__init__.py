"""Measuring across processes, GPUs and nodes with torch.distributed: the sharded form of the same computation.

Under ``torchrun --nproc-per-node K`` (or in any initialised process group of K > 1 ranks),
:func:`embspace.measure` and ``embspace measure`` run sharded: rank r reads, validates and normalises only its
contiguous shard of the rows (:mod:`~embspace.distributed.shards`); first-moment sums, Gram matrices and counts are
all-reduced; the pairwise families pass the shards around a ring so that every tile pair is computed exactly once
across ranks (:mod:`~embspace.distributed.plan`, :mod:`~embspace.distributed.ring`); top-k candidates merge with
the engine's rule. Every rank returns the same report; the command line prints and writes it on rank 0 only.
A single process needs no torchrun and never touches torch.distributed.

Faults end the run on every rank: an input problem on one rank (a row that cannot be read or normalised) is
raised as the same :class:`~embspace.errors.InputError` everywhere, a dead or silent rank as
:class:`DistributedError` after at most ``$EMBSPACE_DIST_TIMEOUT`` seconds (default 300). See docs/distributed.md.
"""

from __future__ import annotations

from embspace.distributed.group import DistributedError, Group, is_main, join, launched_ranks, shutdown
from embspace.distributed.plan import shard_bounds
from embspace.distributed.shards import resident_shard, validate_shards
from embspace.errors import InputError


def exact_estimate(estimate: str) -> str:
    """A sharded run computes every pair exactly: ``auto`` and ``exact`` give ``exact``; ``sampled`` is refused."""
    if estimate in ("auto", "exact"):
        return "exact"
    if estimate == "sampled":
        raise InputError("estimate", "sampled estimates run in one process; a sharded run is exact (use --estimate "
                                       "exact under torchrun)")
    raise InputError("estimate", f"unknown estimator {estimate!r}; choose one of auto, exact, sampled")


__all__ = ["DistributedError", "Group", "exact_estimate", "is_main", "join", "launched_ranks",
           "resident_shard", "shard_bounds", "shutdown", "validate_shards"]
