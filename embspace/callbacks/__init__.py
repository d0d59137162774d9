"""Measure a fixed evaluation set during training: a plain hook and callbacks for Lightning and Hugging Face.

- :class:`EmbeddingMonitor` — the plain hook: ``monitor.after_step(step, model)`` in a hand-written loop (or in
  open_clip's ``train_one_epoch``);
- :class:`~embspace.callbacks.lightning.EmbeddingCallback` — a ``lightning.pytorch.Callback`` (needs ``lightning``);
- :class:`~embspace.callbacks.hugging_face.EmbeddingTrainerCallback` — a ``transformers.TrainerCallback``;
- :func:`clip_embedder` — ``embed(model)`` for a CLIP model on fixed images and token ids.

Each writes a trajectory folder (``trajectory.json`` and one report per point) that ``embspace plot curves``,
``embspace compare`` and ``embspace report`` read. See :mod:`embspace.callbacks.monitor` for the time budget, resumed
runs and DDP.
"""

from __future__ import annotations

from typing import Any

from embspace.callbacks.embedders import clip_embedder, features_of
from embspace.callbacks.monitor import DEFAULT_METRICS, EmbeddingMonitor, current_rank

__all__ = ["DEFAULT_METRICS", "EmbeddingCallback", "EmbeddingMonitor", "EmbeddingTrainerCallback", "clip_embedder",
           "current_rank", "features_of"]


def __getattr__(name: str) -> Any:
    """The framework callbacks, imported on first use (each needs its framework)."""
    if name == "EmbeddingCallback":
        from embspace.callbacks.lightning import EmbeddingCallback

        return EmbeddingCallback
    if name == "EmbeddingTrainerCallback":
        from embspace.callbacks.hugging_face import EmbeddingTrainerCallback

        return EmbeddingTrainerCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
