"""The losses as drop-ins for a whole-model CLIP training step: open_clip's loop by hand, and open_clip itself.

The hand-written step mirrors ``open_clip_train.train.train_one_epoch`` (``losses = loss(**model_out,
output_dict=True)``; ``total_loss = sum(losses.values())``; clamp of the log-scale). The open_clip tests run where
``open_clip`` imports (it needs a torchvision built for the installed torch) and are skipped elsewhere; the same
whole-model step runs on a tiny randomly initialised Hugging Face ``CLIPModel`` where ``transformers`` is installed.
"""

from __future__ import annotations

import importlib.util
import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from embspace.finetune import LOSSES, make_loss
from embspace.finetune.integration import hf_clip_loss, open_clip_step

ROOT = Path(__file__).resolve().parents[1]
HAS_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


class TinyClip(nn.Module):
    """open_clip's CLIP interface in miniature: forward returns normalised features and exp(logit_scale)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.visual = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, dim))
        self.token_embedding = nn.Embedding(50, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> dict[str, torch.Tensor]:
        image = nn.functional.normalize(self.visual(images), dim=-1)
        text = nn.functional.normalize(self.token_embedding(texts).mean(1), dim=-1)
        return {"image_features": image, "text_features": text, "logit_scale": self.logit_scale.exp()}


def batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = labels[:, None, None, None].float() + 0.3 * torch.randn(n, 3, 4, 4, generator=g)
    texts = labels[:, None] * 10 + torch.randint(0, 10, (n, 5), generator=g)
    return images, texts


@pytest.mark.parametrize("name", [n for n in LOSSES])
def test_every_loss_takes_open_clip_model_outputs_and_its_dict_sums_to_the_loss(name):
    model = TinyClip()
    model_out = model(*batch())
    loss = make_loss(name, seed=0)
    losses = loss(**model_out, output_dict=True)  # exactly open_clip's call
    assert "loss" not in losses and all(k.endswith("_loss") for k in losses)
    total_loss = sum(losses.values())  # exactly open_clip's sum
    scalar = make_loss(name, seed=0)(**model_out)
    assert total_loss.item() == pytest.approx(scalar.item(), rel=1e-6)


def test_hand_written_open_clip_step_trains_and_clamps_the_scale():
    model = TinyClip()
    loss = make_loss("m2mix", {"weight": 0.05}, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    images, texts = batch()
    first = open_clip_step(model, loss, images, texts, optimizer)
    assert set(first) == {"contrastive_loss", "m2mix_loss", "loss"}
    assert first["loss"] == pytest.approx(first["contrastive_loss"] + first["m2mix_loss"], rel=1e-6)
    for _ in range(30):
        last = open_clip_step(model, loss, images, texts, optimizer)
    assert last["loss"] < first["loss"]
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    open_clip_step(model, loss, images, texts, optimizer)
    assert model.logit_scale.item() <= math.log(100) + 1e-6


def test_siglip_outputs_are_refused_and_hugging_face_outputs_are_accepted():
    model = TinyClip()

    class SigLip(TinyClip):
        def forward(self, images, texts):
            return {**super().forward(images, texts), "logit_bias": torch.zeros(())}

    with pytest.raises(ValueError, match="SigLIP"):
        open_clip_step(SigLip(), make_loss("clip"), *batch(), torch.optim.SGD(model.parameters(), lr=0.1))
    out = model(*batch())
    hf_outputs = SimpleNamespace(image_embeds=out["image_features"], text_embeds=out["text_features"])
    loss = make_loss("cua")
    assert hf_clip_loss(loss, hf_outputs, model).item() == pytest.approx(loss(**out).item(), rel=1e-6)


@pytest.mark.skipif(not HAS_OPEN_CLIP, reason="open_clip is not importable here")
def test_a_tiny_open_clip_model_trains_with_m2mix():
    example = runpy.run_path(str(ROOT / "examples" / "finetune_clip_model.py"))
    model = example["tiny_clip"](seed=0)
    images, texts, _ = example["synthetic_pairs"](64, seed=0)
    loss = make_loss("m2mix", seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    terms = [open_clip_step(model, loss, images, texts, optimizer) for _ in range(3)]
    assert all(math.isfinite(t["loss"]) for t in terms)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(not HAS_OPEN_CLIP, reason="open_clip is not importable here")
def test_the_open_clip_example_runs(capsys):
    example = runpy.run_path(str(ROOT / "examples" / "finetune_clip_model.py"))
    example["main"](["--steps", "3", "--batch-size", "16"])
    assert "beyond noise" in capsys.readouterr().out


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed")
def test_a_tiny_hugging_face_clip_trains_with_m2mix_and_its_scale_is_clamped():
    example = runpy.run_path(str(ROOT / "examples" / "finetune_clip_model.py"))
    model = example["tiny_hf_clip"](seed=0)
    images, texts, _ = example["synthetic_pairs"](64, seed=0)
    out = model(images, texts)
    assert out["image_features"].shape == out["text_features"].shape == (64, 32)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-4)  # CLIP's initial temperature
    hf_out = model.model(input_ids=texts, pixel_values=images)
    loss = make_loss("m2mix", seed=0)
    assert hf_clip_loss(loss, hf_out, model.model).item() == pytest.approx(
        make_loss("m2mix", seed=0)(**out).item(), rel=1e-6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = open_clip_step(model, make_loss("m2mix", seed=0), images, texts, optimizer)
    for _ in range(15):
        last = open_clip_step(model, make_loss("m2mix", seed=0), images, texts, optimizer)
    assert set(first) == {"contrastive_loss", "m2mix_loss", "loss"}
    assert last["loss"] < first["loss"]
    with torch.no_grad():
        model.model.logit_scale.fill_(10.0)
    open_clip_step(model, loss, images, texts, optimizer)
    assert model.model.logit_scale.item() <= math.log(100) + 1e-6


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed")
def test_the_example_runs_with_hugging_face(capsys):
    example = runpy.run_path(str(ROOT / "examples" / "finetune_clip_model.py"))
    example["main"](["--backend", "hf", "--steps", "3", "--batch-size", "16"])
    assert "beyond noise" in capsys.readouterr().out
