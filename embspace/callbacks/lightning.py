"""`EmbeddingCallback`: :class:`~embspace.callbacks.EmbeddingMonitor` as a PyTorch Lightning ``Callback``.

>>> # trainer = lightning.pytorch.Trainer(callbacks=[EmbeddingCallback(clip_embedder(images, texts), "runs/a",
>>> #                                                                  every=50)])

It measures ``embed(pl_module)`` at step 0 (when training starts from scratch) and after every ``every``-th
optimizer step (``trainer.global_step``; ``unit="epoch"``: at the end of every ``every``-th epoch, counted from 1).
Training time is the wall time between batches; on a resumed fit (``ckpt_path=``) the trajectory in ``out`` is
continued. Under DDP only global rank 0 measures and writes.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch import Callback

from embspace.callbacks.monitor import Embed, EmbeddingMonitor, check_unit

__all__ = ["EmbeddingCallback"]


class EmbeddingCallback(Callback):
    """Measure a fixed evaluation set during a Lightning fit (arguments as :class:`EmbeddingMonitor`)."""

    def __init__(self, embed: Embed, out: str | os.PathLike[str], *, every: int = 1, unit: str = "step",
                 at_start: bool = True, **options: Any) -> None:
        check_unit(unit)
        self.embed, self.out, self.every, self.unit, self.at_start = embed, out, every, unit, at_start
        self.options = options
        self.monitor: EmbeddingMonitor | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.monitor is None:
            self.monitor = EmbeddingMonitor(self.embed, self.out, every=self.every, unit=self.unit,
                                            rank=trainer.global_rank, **self.options)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        assert self.monitor is not None
        if self.at_start and trainer.global_step == 0 and trainer.current_epoch == 0:
            self.monitor.measure(0, pl_module)
        self.monitor.start()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        assert self.monitor is not None
        if self.unit == "step":
            self.monitor.after_step(trainer.global_step, pl_module)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        assert self.monitor is not None
        if self.unit == "epoch":
            self.monitor.after_step(trainer.current_epoch + 1, pl_module)
