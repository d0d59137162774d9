"""The training loop on cached features: epochs of shuffled mini-batches, AdamW, checkpoints, exact resumption.

Reproducibility: every random number comes from a seeded ``torch.Generator`` — the tower init
(:func:`~embspace.finetune.heads.build_model`), the shuffling (``Trainer.shuffle``), the λ draws of the mixup losses
and the feature-dropout masks (:class:`~embspace.finetune.objectives.Objective`). The global RNG is neither used nor
changed. A checkpoint after epoch k stores the weights, AdamW's moments and step counts, and every generator's
state, so :func:`train` resumed from it retraces the uninterrupted run bit for bit (on the CPU).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from embspace.finetune.checkpoint import load_checkpoint, save_checkpoint
from embspace.finetune.config import FitConfig
from embspace.finetune.heads import TwoTower
from embspace.finetune.objectives import Objective
from embspace.kernels.dense import modality_gap, normalize

StepHook = Callable[[int, int], None]
"""``hook(epoch, step)`` after every optimiser step (epoch counts from 0, step from 1 over the whole run)."""
EpochHook = Callable[[int, TwoTower], None]
"""``hook(epoch, model)`` after epoch ``epoch`` (1-based) has finished, before its checkpoint is written."""


class Trainer:
    """Holds the model, the optimiser, the objective and the shuffling generator of one run."""

    def __init__(self, model: TwoTower, config: FitConfig, image: torch.Tensor, text: torch.Tensor) -> None:
        if image.shape[0] != text.shape[0]:
            raise ValueError(f"paired training features need as many rows: {image.shape[0]} and {text.shape[0]}")
        if image.shape[0] < 2:
            raise ValueError("training needs at least 2 pairs")
        self.model = model
        self.config = config
        self.image, self.text = image, text  # (N, D_img), (N, D_txt) on the training device
        self.objective = Objective(config)
        groups: list[dict[str, Any]] = [{"params": model.tower_parameters(), "weight_decay": config.weight_decay}]
        if model.log_scale.requires_grad:
            groups.append({"params": [model.log_scale], "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.epoch = 0  # completed epochs
        self.step = 0  # optimiser steps taken
        self.history: list[dict[str, float]] = []  # per epoch: mean of each loss term and of the total

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.image.shape[0] // self.config.batch_size)

    def batches(self) -> tuple[torch.Tensor, ...]:
        """This epoch's row indices: a seeded permutation cut into ``steps_per_epoch`` near-equal batches."""
        order = torch.randperm(self.image.shape[0], generator=self.shuffle)  # (N,)
        return torch.tensor_split(order, self.steps_per_epoch)

    def run_epoch(self, on_step: StepHook | None = None, bar: Any = None) -> dict[str, float]:
        """One pass over the training pairs; returns the mean of every loss term (and ``loss``, their sum)."""
        self.model.train()
        sums: dict[str, float] = {}
        batches = self.batches()
        for rows in batches:
            rows = rows.to(self.image.device)
            terms = self.objective.terms(self.model, self.image[rows], self.text[rows], self.epoch)
            loss = torch.stack(list(terms.values())).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            for name, value in {**terms, "loss": loss}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", gap=f"{self._batch_gap(rows):.3f}", refresh=False)
            if on_step is not None:
                on_step(self.epoch, self.step)
        self.epoch += 1
        means = {name: total / len(batches) for name, total in sums.items()}
        self.history.append(means)
        return means

    @torch.no_grad()
    def _batch_gap(self, rows: torch.Tensor) -> float:
        x, y = self.model(self.image[rows], self.text[rows])
        return float(modality_gap(normalize(x.float()), normalize(y.float())))

    # ---- checkpoints --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "step": self.step, "history": self.history,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": {"shuffle": self.shuffle.get_state(), **self.objective.rng_state()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.shuffle.set_state(state["rng"]["shuffle"])
        self.objective.set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = [dict(h) for h in state["history"]]


def train(
    trainer: Trainer,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    fingerprint: str = "",
    on_epoch: EpochHook | None = None,
    on_step: StepHook | None = None,
    progress: bool | None = None,
) -> Trainer:
    """Train for ``config.epochs`` epochs, resuming from ``checkpoint`` when that file exists.

    After each epoch: ``on_epoch(epoch, model)`` (the per-epoch report), then the checkpoint, written atomically.
    A checkpoint with another ``fingerprint`` (other data or config) is refused with ``ValueError``.
    ``progress``: a tqdm bar on stderr with the last batch's loss and gap; None shows it when stderr is a tty.
    """
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = load_checkpoint(path)
        if state.get("fingerprint") != fingerprint:
            raise ValueError(f"{path}: the checkpoint belongs to a run with other data or settings; "
                             "use another output folder")
        trainer.load_state_dict(state)
    epochs = trainer.config.epochs
    show = sys.stderr.isatty() if progress is None else progress
    with _bar(show, epochs * trainer.steps_per_epoch, trainer.step) as bar:
        while trainer.epoch < epochs:
            trainer.run_epoch(on_step, bar)
            if on_epoch is not None:
                on_epoch(trainer.epoch, trainer.model)
            if path is not None:
                save_checkpoint(path, {**trainer.state_dict(), "config": trainer.config.to_dict(),
                                       "fingerprint": fingerprint})
    return trainer


def _bar(show: bool, total: int, initial: int) -> Any:
    if not show:
        return nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="fine-tuning", unit="step", file=sys.stderr, leave=False)
