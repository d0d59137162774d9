"""A bounded fuzzing run of the readers: mutated bytes of valid files of every format.

Each example takes a valid file (``.npy``, ``.npz`` stored and compressed, ``.pt`` zip and legacy,
``.safetensors``, ``.parquet``, ``.arrow`` / ``.feather``, or one file of a clip-retrieval folder), applies
hypothesis-chosen mutations (truncate, overwrite bytes, insert bytes, splice in the head of another format's file,
duplicate a span), and opens it with :func:`embspace.load` and reads every row. The outcome must be data of the
promised shape or an :class:`~embspace.errors.InputError` with a one-line message — nothing else, no hang, and the
file unchanged. The budget is fixed (``EXAMPLES`` per format, derandomised so CI runs the same examples every
time).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embspace
from embspace.errors import InputError
from tests.bad_inputs import clip_folder, matrix, write_valid

EXAMPLES = int(os.environ.get("EMBSPACE_FUZZ_EXAMPLES", "60"))
"""Examples per format: 60 in CI (about 15 s in all on 2 cores); set the variable for a longer run."""
FORMATS = (".npy", ".npz", ".npz-compressed", ".pt", ".pth", ".safetensors", ".parquet", ".arrow", ".feather",
           "clip-folder")
RAN: dict[str, dict[str, int]] = {}


def _seed_files(root: Path) -> dict[str, tuple[Path, str]]:
    """A valid file per format: (the file to mutate, the spec that reads it)."""
    seeds = {}
    for fmt in FORMATS[:-1]:
        spec = write_valid(root / f"seed{fmt.replace('.', '_')}", matrix(12, 6), fmt)
        seeds[fmt] = (Path(spec.split(":")[0]), f"x={spec}")
    folder = clip_folder(root / "clip", {0: (5, 5), 1: (4, 4)}, dim=6, meta={0: 5, 1: 4})
    seeds["clip-folder"] = (folder, f"pairs={folder}")
    return seeds


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _seed_files(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    total = sum(counts["examples"] for counts in RAN.values())
    refused = sum(counts["refused"] for counts in RAN.values())
    print(f"\nreader fuzzing: {total} mutated files over {len(RAN)} formats, {refused} refused with one line, "
          f"{total - refused} read as valid data, 0 other outcomes")


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("splice"), st.sampled_from(FORMATS[:-1]), st.integers(1, 128)),
    st.tuples(st.just("duplicate"), st.floats(0.0, 1.0), st.integers(1, 64)),
    st.tuples(st.just("header-byte"), st.integers(0, 96), st.integers(0, 255)),
)


def mutate(raw: bytes, steps: list[tuple], heads: dict[str, bytes]) -> bytes:
    data = bytearray(raw)
    for step in steps:
        kind = step[0]
        at = int(step[1] * len(data)) if isinstance(step[1], float) else step[1]
        if kind == "truncate":
            del data[at:]
        elif kind == "overwrite":
            data[at : at + len(step[2])] = step[2]
        elif kind == "insert":
            data[at:at] = step[2]
        elif kind == "splice":  # another format's head over ours
            head = heads[step[1]][: step[2]]
            data[: len(head)] = head
        elif kind == "duplicate":
            data[at:at] = data[at : at + step[2]]
        elif kind == "header-byte" and at < len(data):
            data[at] = step[2]
    return bytes(data)


def _target(folder_or_file: Path, pick: int) -> Path:
    """The file to mutate: the seed file, or one file of the clip-retrieval folder."""
    if folder_or_file.is_file():
        return folder_or_file
    files = sorted(p for p in folder_or_file.rglob("*") if p.is_file())
    return files[pick % len(files)]


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError("a reader blocked for 20 s")


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_give_data_or_one_line(seeds, fmt: str, tmp_path: Path) -> None:
    heads = {name: (_target(path, 0).read_bytes()) for name, (path, _) in seeds.items() if name != "clip-folder"}
    seed_path, seed_spec = seeds[fmt]
    counts = RAN.setdefault(fmt, {"examples": 0, "refused": 0})

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(steps=st.lists(mutation, min_size=1, max_size=3), pick=st.integers(0, 7))
    def run(steps: list[tuple], pick: int) -> None:
        work = tmp_path / "work"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        if seed_path.is_dir():
            copy = work / seed_path.name
            shutil.copytree(seed_path, copy)
        else:
            copy = work / seed_path.name
            shutil.copy(seed_path, copy)
        target = _target(copy, pick)
        target.write_bytes(mutate(target.read_bytes(), steps, heads))
        spec = seed_spec.replace(str(seed_path), str(copy))
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        counts["examples"] += 1
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(20)
        try:
            modalities = embspace.load(spec)
            for embeddings in modalities.values():
                rows = embeddings.to_tensor()
                assert rows.shape == (embeddings.n, embeddings.dim)
                assert rows.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        except InputError as exc:
            counts["refused"] += 1
            message = str(exc)
            assert "\n" not in message and "\r" not in message and len(message) < 600, message
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest

    run()
    assert counts["examples"] >= EXAMPLES


def test_the_mutations_do_what_they_say() -> None:
    raw = bytes(range(10))
    assert mutate(raw, [("truncate", 0.5)], {}) == raw[:5]
    assert mutate(raw, [("overwrite", 0.0, b"\xff")], {}) == b"\xff" + raw[1:]
    assert mutate(raw, [("insert", 1.0, b"ab")], {}) == raw + b"ab"
    assert mutate(raw, [("splice", ".npy", 2)], {".npy": b"ZZZZ"}) == b"ZZ" + raw[2:]
    assert mutate(raw, [("duplicate", 0.0, 2)], {}) == raw[:2] + raw
    assert mutate(raw, [("header-byte", 3, 0)], {}) == raw[:3] + b"\0" + raw[4:]
    assert np.frombuffer(mutate(raw, [("header-byte", 99, 0)], {}), np.uint8).tolist() == list(range(10))
