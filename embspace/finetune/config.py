"""`FitConfig`: every setting of a fine-tuning run on cached embeddings, in one dataclass.

The config is written next to the run (``config.json``) and stored in each checkpoint; a resumed run must have the
same config, or it is refused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from embspace.defaults import METRICS

LOSSES = ("clip", "m2mix", "m3mix", "cua", "cuaxu", "latent")
HEADS = ("linear", "mlp")
DEFAULT_DIM = 256
"""Output dimension of projection heads when ``FitConfig.dim`` is None."""
EVAL_FRACTION = 0.2
"""Share of the pairs held out for evaluation when one dump is split (:func:`~embspace.finetune.data.split_pairs`)."""


@dataclass(frozen=True)
class FitConfig:
    """How to train the two towers; the defaults suit a few thousand pairs on a CPU."""

    loss: str = "m2mix"  # clip | m2mix | m3mix | cua | cuaxu | latent (see embspace.finetune.objectives)
    loss_options: dict[str, float] = field(default_factory=dict)  # keyword overrides of the loss module (weight=0.05)
    head: str = "linear"  # tower type: "linear" (one matrix, no bias) or "mlp" (Linear-GELU-Linear)
    adapter: bool = False  # residual adapters z + f(z), identity at init (needs equal input dims), not projections
    dim: int | None = None  # output dimension of projection heads (None: DEFAULT_DIM); adapters keep their input dim
    hidden: int = 512  # hidden width of the "mlp" head
    epochs: int = 30  # passes over the training pairs
    batch_size: int = 256  # pairs per step; the shuffled rows are cut into max(1, N // batch_size) even batches
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.1  # AdamW decoupled weight decay of the tower weights (not of the logit scale)
    learn_logit_scale: bool = True  # learn log(1/τ) as CLIP does; False keeps it at init_logit_scale
    init_logit_scale: float = 1 / 0.07  # 1/τ at the start (CLIP's 1/0.07)
    max_logit_scale: float = 100.0  # clamp of 1/τ (CLIP's 100)
    augment_dropout: float = 0.1  # "latent" only: feature dropout that makes the augmented view of cached features
    seed: int = 0  # seeds the tower init, the shuffling, the augmentation and the loss's λ draws
    eval_metrics: str = METRICS  # metric families of the per-epoch reports (embspace.measure's `metrics`)
    device: str = "cpu"  # "cpu", "cuda" or "auto"; bitwise reproducibility is promised on the CPU only

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        for name in ("epochs", "batch_size", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"dim must be ≥ 1, got {self.dim}")
        if not 0 <= self.augment_dropout < 1:
            raise ValueError(f"augment_dropout must be in [0, 1), got {self.augment_dropout}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def replace(self, **changes: Any) -> FitConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**data)
