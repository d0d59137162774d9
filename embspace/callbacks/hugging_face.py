"""`EmbeddingTrainerCallback`: :class:`~embspace.callbacks.EmbeddingMonitor` as a Hugging Face ``TrainerCallback``.

>>> # trainer = transformers.Trainer(model, args, callbacks=[EmbeddingTrainerCallback(clip_embedder(images, texts),
>>> #                                                                                  "runs/a", every=50)])

It measures ``embed(model)`` at step 0 (when training starts from scratch) and after every ``every``-th optimizer
step (``state.global_step``; ``unit="epoch"``: at the end of every ``every``-th epoch, counted from 1). On a resumed
``trainer.train(resume_from_checkpoint=…)`` the trajectory in ``out`` is continued. Only the world's main process
(``state.is_world_process_zero``) measures and writes.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from embspace.callbacks.monitor import Embed, EmbeddingMonitor, check_unit

__all__ = ["EmbeddingTrainerCallback"]


class EmbeddingTrainerCallback(TrainerCallback):
    """Measure a fixed evaluation set during ``Trainer.train`` (arguments as :class:`EmbeddingMonitor`)."""

    def __init__(self, embed: Embed, out: str | os.PathLike[str], *, every: int = 1, unit: str = "step",
                 at_start: bool = True, **options: Any) -> None:
        check_unit(unit)
        self.embed, self.out, self.every, self.unit, self.at_start = embed, out, every, unit, at_start
        self.options = options
        self.monitor: EmbeddingMonitor | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.monitor is None:
            rank = 0 if state.is_world_process_zero else max(1, int(getattr(args, "process_index", 1)))
            self.monitor = EmbeddingMonitor(self.embed, self.out, every=self.every, unit=self.unit, rank=rank,
                                            **self.options)
        if self.at_start and state.global_step == 0:
            self.monitor.measure(0, model)
        self.monitor.start()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.monitor is not None and self.unit == "step":
            self.monitor.after_step(state.global_step, model)

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.monitor is not None and self.unit == "epoch":
            self.monitor.after_step(round(state.epoch or 0), model)
