"""Out-of-memory retry: a pass that runs out of memory is rerun from scratch with half the tile, and the result is
the one an uninjected run gives; resident rows that cannot be allocated are streamed instead."""

from __future__ import annotations

import sys

import pytest
import torch

import embspace
from embspace.errors import InputError
from embspace.kernels import budget, engine, pairwise, rows
from tests import reference as ref

OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@pytest.fixture(scope="module")
def data():
    return ref.paired_data("cone", 300, 12, seed=8)


def failing_stream(failures: int, error: type[BaseException]):
    """stream_pairs that raises ``error`` after its second tile in each of its first ``failures`` calls (leaving the
    reductions half filled), then behaves."""
    real = engine.stream_pairs
    calls = {"failed": 0, "tiles": []}

    def stream(x, y, reductions, *, tile=pairwise.DEFAULT_TILE, progress=None, backend=None):
        calls["tiles"].append(tile)
        if calls["failed"] < failures:
            seen = [0]

            def tick(count: int) -> None:
                seen[0] += count
                if seen[0] == 2:
                    calls["failed"] += 1
                    raise error("injected: out of memory")

            return real(x, y, reductions, tile=tile, progress=tick, backend=backend)
        return real(x, y, reductions, tile=tile, progress=progress, backend=backend)

    return stream, calls


def measure(x, y, **options):
    return embspace.measure(image=x, text=y, metrics="uniformity,retrieval,hubness,histograms", precision="fp64",
                            tile=256, device="cpu", histogram_bins=40, **options)


@pytest.mark.parametrize(("failures", "error"), [(1, MemoryError), (2, OOM)])
def test_retry_after_out_of_memory_gives_the_uninjected_result(data, monkeypatch, failures, error):
    x, y = data
    clean = measure(x, y)
    stream, calls = failing_stream(failures, error)
    monkeypatch.setattr(sys.modules["embspace.executor"], "stream_pairs", stream)
    retried = measure(x, y)
    assert calls["failed"] == failures
    assert calls["tiles"][: failures + 1] == [256 // 2**k for k in range(failures + 1)]
    assert retried.settings["tile"] == 256 // 2**failures
    for path, value in clean.flat().items():
        assert retried[path] == pytest.approx(value, rel=1e-12, abs=1e-12), path
    assert retried.histograms == clean.histograms
    assert retried["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=1e-10)


def test_an_out_of_memory_in_the_cross_pass_reruns_that_pass_alone(data, monkeypatch):
    """The passes of each modality against itself are done when the cross pass runs out of memory: only the cross
    pass is rerun, with half the tile, and the result is the uninjected one."""
    x, y = data
    clean = measure(x, y)
    real = engine.stream_pairs
    calls = []

    def stream(x_rows, y_rows, reductions, *, tile=pairwise.DEFAULT_TILE, progress=None, backend=None):
        calls.append(("cross" if y_rows is not None else "within", tile))
        if calls.count(("cross", 256)) == 1 and y_rows is not None and tile == 256:
            raise MemoryError("injected: out of memory")
        return real(x_rows, y_rows, reductions, tile=tile, progress=progress, backend=backend)

    monkeypatch.setattr(sys.modules["embspace.executor"], "stream_pairs", stream)
    retried = measure(x, y)
    assert calls == [("within", 256), ("within", 256), ("cross", 256), ("cross", 128)]
    for path, value in clean.flat().items():
        assert retried[path] == pytest.approx(value, rel=1e-12, abs=1e-12), path
    assert retried.histograms == clean.histograms


def test_out_of_memory_at_the_floor_fails_with_one_line(data, monkeypatch):
    x, y = data
    stream, _ = failing_stream(100, MemoryError)
    monkeypatch.setattr(sys.modules["embspace.executor"], "stream_pairs", stream)
    with pytest.raises(InputError) as info:
        embspace.measure(image=x, text=y, metrics="uniformity", tile=256, device="cpu")
    message = str(info.value)
    assert message.startswith("--memory: the exact uniformity pass ran out of memory even with 64-row tiles")
    assert "\n" not in message


def test_retry_on_oom_halves_blocks_too():
    seen = []

    def run(layout):
        seen.append((layout.tile, layout.block_rows))
        if len(seen) < 3:
            raise MemoryError
        return "done"

    shrunk = []
    assert budget.retry_on_oom(run, budget.Plan(1 << 30, 1024, 4096), on_retry=shrunk.append) == "done"
    assert seen == [(1024, 4096), (512, 2048), (256, 1024)]
    assert [p.tile for p in shrunk] == [512, 256]


def test_resident_rows_that_do_not_fit_are_streamed(data, monkeypatch):
    x, y = data
    clean = embspace.measure(image=x, text=y, metrics="gap,uniformity", precision="fp64")
    real_empty = torch.empty

    def empty(*shape, **kwargs):
        if shape == ((300, 12),):
            raise MemoryError("injected")
        return real_empty(*shape, **kwargs)

    monkeypatch.setattr(rows.torch, "empty", empty)
    streamed = embspace.measure(image=x, text=y, metrics="gap,uniformity", precision="fp64")
    assert streamed.settings["memory"]["streamed"] == ["image", "text"]
    assert clean.settings["memory"]["streamed"] == []
    for path, value in clean.flat().items():
        assert streamed[path] == pytest.approx(value, abs=1e-12), path
