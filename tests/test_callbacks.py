"""Training callbacks: a tiny Hugging Face CLIP trained by a hand-written loop, by Lightning and by the Hugging Face
Trainer, each writing a trajectory that ``embspace plot curves`` draws; the time budget under a fake clock; resume
after a kill; rank-0-only writing under DDP (gloo, 2 processes)."""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import embspace
from embspace.callbacks import EmbeddingMonitor, clip_embedder
from embspace.cli import app
from embspace.errors import InputError
from tests import reference as ref

ROOT = Path(__file__).resolve().parents[1]
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_LIGHTNING = importlib.util.find_spec("lightning") is not None
HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None  # the Trainer needs it
METRICS = "gap,alignment,uniformity"
STEPS, EVERY = 6, 2


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(ROOT / "examples" / "finetune_clip_model.py"))


@pytest.fixture(scope="module")
def data(example):
    """32 training pairs and a fixed evaluation set of 48 other pairs."""
    images, texts, _ = example["synthetic_pairs"](80, seed=0)
    return {"train": (images[:32], texts[:32]), "eval": (images[32:], texts[32:])}


def hf_model(example):
    return example["tiny_hf_clip"](seed=0).model  # the bare transformers.CLIPModel


def check_run(folder: Path, model, data, expected_steps: list[int], tmp_path: Path) -> None:
    """The trajectory has the expected steps; its last point equals a float64 reference on the final model's
    embeddings of the evaluation set; `embspace plot curves` draws it."""
    trajectory = embspace.Trajectory.from_json(folder)
    assert trajectory.steps == expected_steps
    assert len(set(trajectory.steps)) == len(trajectory.steps)
    features = clip_embedder(*data["eval"])(model)
    x, y = (ref.unit(features[k].double().numpy()) for k in ("image", "text"))
    last = trajectory.reports[-1]
    assert last["gap"] == pytest.approx(ref.gap(x, y), abs=1e-5)
    assert last["alignment"] == pytest.approx(ref.alignment(x, y), abs=1e-5)
    assert last["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=1e-5)
    assert last.settings["monitor"]["mode"] == "full" and last.settings["monitor"]["pairs"] == 48
    assert len({r["gap"] for r in trajectory.reports}) == len(expected_steps)  # training moved the embeddings
    figure = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["plot", "curves", str(folder), "--metrics", "gap,uniformity", "--out",
                                      str(figure)])
    assert result.exit_code == 0, result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def clip_loss(model, images, texts):
    return model(pixel_values=images, input_ids=texts, return_loss=True).loss


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers")
def test_plain_hook_in_a_hand_written_loop(example, data, tmp_path):
    model = hf_model(example)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    monitor = EmbeddingMonitor(clip_embedder(*data["eval"]), tmp_path / "run", every=EVERY, metrics=METRICS,
                               budget=None, name="loop")
    monitor.measure(0, model)
    for step in range(1, STEPS + 1):
        optimizer.zero_grad()
        clip_loss(model, *data["train"]).backward()
        optimizer.step()
        monitor.after_step(step, model)
    check_run(tmp_path / "run", model, data, [0, 2, 4, 6], tmp_path)
    assert embspace.Trajectory.from_json(tmp_path / "run").name == "loop"


@pytest.mark.skipif(not (HAS_TRANSFORMERS and HAS_LIGHTNING), reason="needs transformers and lightning")
@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_lightning_callback(example, data, tmp_path, unit):
    import lightning.pytorch as pl

    from embspace.callbacks import EmbeddingCallback

    class Module(pl.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *args, **kwargs):
            return self.model(*args, **kwargs)

        def training_step(self, batch, batch_idx):
            return clip_loss(self.model, *batch)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=2e-3)

    model = hf_model(example)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data["train"]), batch_size=16)  # 2 / epoch
    embed = clip_embedder(*data["eval"])
    callback = EmbeddingCallback(lambda module: embed(module.model), tmp_path / "run",
                                 every=EVERY if unit == "step" else 1, unit=unit, metrics=METRICS, budget=None)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(Module(model), loader)
    check_run(tmp_path / "run", model, data, [0, 2, 4, 6] if unit == "step" else [0, 1, 2, 3], tmp_path)


@pytest.mark.skipif(not (HAS_TRANSFORMERS and HAS_ACCELERATE), reason="needs transformers and accelerate")
def test_hugging_face_trainer_callback(example, data, tmp_path):
    from transformers import Trainer, TrainingArguments

    from embspace.callbacks import EmbeddingTrainerCallback

    images, texts = data["train"]
    rows = [{"pixel_values": images[i], "input_ids": texts[i]} for i in range(len(images))]

    def collate(batch):
        return {"pixel_values": torch.stack([b["pixel_values"] for b in batch]),
                "input_ids": torch.stack([b["input_ids"] for b in batch]), "return_loss": True}

    model = hf_model(example)
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=16,
                             learning_rate=2e-3, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True)
    callback = EmbeddingTrainerCallback(clip_embedder(*data["eval"]), tmp_path / "run", every=EVERY,
                                        metrics=METRICS, budget=None)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[callback]).train()
    check_run(tmp_path / "run", model, data, [0, 2, 4, 6], tmp_path)


# ---- the time budget -------------------------------------------------------------------------------------------
class Clock:
    """A fake clock: training and measuring advance it by known amounts."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budget_run(monkeypatch, tmp_path: Path, budget: float, embed_seconds: float, metric_seconds_per_pair2: float,
               steps: int = 40, step_seconds: float = 1.0, n: int = 400):
    """A loop of ``steps`` steps of ``step_seconds`` each, measuring every 5; the embedding costs
    ``embed_seconds`` and, through a patched measure, the metrics cost ``metric_seconds_per_pair2 × pairs²``."""
    clock = Clock()
    x, y = ref.paired_data("cone", n, 6, seed=0)

    def embed(model):
        clock.now += embed_seconds
        return {"image": x, "text": y}

    monitor = EmbeddingMonitor(embed, tmp_path / "run", every=5, metrics="gap", budget=budget, clock=clock,
                               min_pairs=20)
    module = importlib.import_module("embspace.measure")
    real = module.measure

    def timed(data, **options):
        clock.now += metric_seconds_per_pair2 * len(next(iter(data.values()))) ** 2
        return real(data, **options)

    monkeypatch.setattr(module, "measure", timed)
    monitor.start()
    for step in range(1, steps + 1):
        clock.now += step_seconds
        monitor.after_step(step)
    return monitor, clock, x, y


def test_budget_holds_the_share_of_training_time_by_subsampling_then_skipping(monkeypatch, tmp_path):
    # a full measurement costs 0.1 + 1e-5 × 400² = 1.7 s; 5 steps of 1 s with a 10 % budget allow 0.5 s
    monitor, _, x, y = budget_run(monkeypatch, tmp_path, budget=0.1, embed_seconds=0.1, metric_seconds_per_pair2=1e-5)
    data = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    modes = [r.settings["monitor"]["mode"] for r in monitor.trajectory.reports]
    assert modes[0] == "full" and "subsampled" in modes  # the first calibrates in full, later ones are thinned
    skipped = [s["step"] for s in data["monitor"]["skipped"]]
    measured = monitor.trajectory.steps
    assert skipped and sorted(skipped + measured) == list(range(5, 41, 5))  # every due step is accounted for
    assert all("exceeds the allowance" in s["reason"] for s in data["monitor"]["skipped"])
    spent = sum(r.settings["monitor"]["seconds"] for r in monitor.trajectory.reports)
    assert spent == pytest.approx(monitor.spent_seconds)
    first = monitor.trajectory.reports[0].settings["monitor"]["seconds"]
    assert spent - first <= 0.1 * 40 + 1e-9  # after the calibration, within the share of the 40 s trained
    assert spent <= 0.1 * 40 + first
    for report in monitor.trajectory.reports[1:]:  # each later point fitted its allowance (the cost model is exact)
        info = report.settings["monitor"]
        assert info["seconds"] <= info["allowance_seconds"] + 1e-9
        rows = np.sort(np.random.default_rng(0).permutation(400)[:info["pairs"]])
        assert report["gap"] == pytest.approx(ref.gap(ref.unit(x[rows]), ref.unit(y[rows])), abs=1e-6)


def test_a_generous_budget_measures_every_due_step_in_full(monkeypatch, tmp_path):
    monitor, *_ = budget_run(monkeypatch, tmp_path, budget=0.5, embed_seconds=0.01, metric_seconds_per_pair2=1e-6)
    assert monitor.trajectory.steps == list(range(5, 41, 5))
    assert {r.settings["monitor"]["mode"] for r in monitor.trajectory.reports} == {"full"}


def test_an_embedding_slower_than_the_allowance_is_skipped(monkeypatch, tmp_path):
    monitor, *_ = budget_run(monkeypatch, tmp_path, budget=0.01, embed_seconds=1.0, metric_seconds_per_pair2=1e-9)
    data = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert monitor.trajectory.steps == [5] and [s["step"] for s in data["monitor"]["skipped"]] == list(range(10, 41, 5))


def test_bad_settings_are_refused_in_one_line(tmp_path):
    for kwargs, message in (({"every": 0}, "every"), ({"budget": -1}, "budget"), ({"min_pairs": 1}, "min_pairs")):
        with pytest.raises(InputError, match=message):
            EmbeddingMonitor(lambda m: {}, tmp_path / "run", **kwargs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError):
        EmbeddingMonitor(lambda m: {}, tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "trajectory.json").write_text('{"schema": "something/1"}')
    with pytest.raises(InputError, match="not an embspace trajectory"):
        EmbeddingMonitor(lambda m: {}, tmp_path / "other")


# ---- resume after a kill ---------------------------------------------------------------------------------------
LOOP = textwrap.dedent("""
    import os, signal, sys
    import torch
    from embspace.callbacks import EmbeddingMonitor

    out, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 6)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    y = x @ torch.randn(6, 6, generator=g) + 0.1 * torch.randn(64, 6, generator=g)
    start = 0
    if resume:
        state = torch.load(os.path.join(out, "ckpt.pt"))
        model.load_state_dict(state["model"]); optimizer.load_state_dict(state["optimizer"]); start = state["step"]
    monitor = EmbeddingMonitor(lambda m: {"image": m(x), "text": y}, os.path.join(out, "run"), every=4,
                               metrics="gap,alignment", budget=None)
    if start == 0:
        monitor.measure(0, model)
    for step in range(start + 1, 21):
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()
        monitor.after_step(step, model)
        if step % 5 == 0:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                       os.path.join(out, "ckpt.pt"))
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
""")


def run_loop(folder: Path, kill_at: int, mode: str) -> subprocess.CompletedProcess:
    script = folder / "loop.py"
    script.write_text(LOOP)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), str(folder), str(kill_at), mode], env=env, timeout=300,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_a_run_killed_and_resumed_continues_its_trajectory_without_duplicates(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert run_loop(whole, 0, "fresh").returncode == 0
    # killed at step 13: points 0, 4, 8, 12 are on disk, the last checkpoint is step 10; the resumed run repeats
    # 11 … 13 and measures 12 again
    died = run_loop(killed, 13, "fresh")
    assert died.returncode == -9
    assert embspace.Trajectory.from_json(killed / "run").steps == [0, 4, 8, 12]
    assert not [p for p in (killed / "run").iterdir() if p.name.startswith(".")]  # no temporary file left
    resumed = run_loop(killed, 0, "resume")
    assert resumed.returncode == 0, resumed.stderr
    again, reference = embspace.Trajectory.from_json(killed / "run"), embspace.Trajectory.from_json(whole / "run")
    assert again.steps == reference.steps == [0, 4, 8, 12, 16, 20]
    np.testing.assert_allclose(again.values("gap"), reference.values("gap"), rtol=1e-6)
    np.testing.assert_allclose(again.values("alignment"), reference.values("alignment"), rtol=1e-6)


# ---- DDP: rank 0 alone measures and writes -----------------------------------------------------------------
DDP = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from embspace.callbacks import EmbeddingMonitor

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 6)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=g)
    y = x @ torch.randn(6, 6, generator=g)
    calls = []

    def embed(m):
        calls.append(1)
        return {"image": m(x), "text": y}

    monitor = EmbeddingMonitor(embed, sys.argv[1], every=2, metrics="gap,uniformity", budget=None)
    mine = slice(rank * 32, rank * 32 + 32)
    for step in range(1, 7):
        optimizer.zero_grad()
        ((ddp(x[mine]) - y[mine]) ** 2).mean().backward()
        optimizer.step()
        monitor.after_step(step, model)
    dist.barrier()
    print(f"rank {rank} embedded {len(calls)} times; weight sum {model.weight.sum().item():.6f}", file=sys.stderr,
          flush=True)
    del ddp, optimizer  # DDP's reducer holds the group: release it before the group goes
    dist.barrier()
    dist.destroy_process_group()
    # gloo's worker threads can still be joinable when the interpreter tears down, which aborts the process
    # ("terminate called without an active exception", seen once in CI on rank 1 after all its work was done);
    # that is torch's teardown, not the code under test, so leave without it once everything is flushed
    sys.stdout.flush()
    os._exit(0)
""")


@pytest.mark.slow
def test_under_ddp_only_rank_zero_measures_and_writes(tmp_path):
    from tests.test_distributed import finish, ranks

    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    out = finish(ranks(2, str(script), str(tmp_path / "run"), cwd=tmp_path))
    assert [code for code, _ in out] == [0, 0], out
    lines = [next(line for line in err.splitlines() if line.startswith("rank ")) for _, err in out]
    assert lines[0].startswith("rank 0 embedded 3 times") and lines[1].startswith("rank 1 embedded 0 times")
    assert lines[0].split(";")[1] == lines[1].split(";")[1]  # both ranks trained the same model in step
    trajectory = embspace.Trajectory.from_json(tmp_path / "run")
    assert trajectory.steps == [2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step2.json", "step4.json", "step6.json",
                                                                   "trajectory.json"]
    assert trajectory.reports[0].settings.get("distributed") is None  # measured in rank 0 alone, not sharded
