"""A generator of Xue et al.'s data model: paired image/text features built from core, spurious and detail latents.

Xue, Joshi, Nguyen & Mirzasoleiman (ICLR 2024, "Understanding the robustness of multi-modal contrastive learning to
distribution shift", arXiv 2310.04971) explain CLIP's robustness on a model in which every image–caption pair is
made of latent features pushed through an encoder, x = D·μ + ξ:

* **core** features, which define the class and vary inside it (the variance that *intra-class contrasting* keeps);
* **spurious** features, which agree with the class in most training pairs — *over-represented* — but not under
  the distribution shift of the test data;
* **detail** features, shared by every class, that a caption mentions only sometimes (*caption richness*; details
  annotated in one class help the others: *inter-class feature sharing*).

This module is embspace's instance of that model: the definitions below fix every detail (block sizes,
distributions, what a caption carries, the prompt) as embspace's choice, each documented here and in
``docs/synthetic.md`` and tested (``tests/test_synthetic.py``):

========================  ==========================================================================================
latent block (size)       image latent μᴵ of pair i with class y_i and spurious attribute s_i
========================  ==========================================================================================
core (``classes``)        ``core_strength``·e_{y_i} + ``core_std``·g_i,     g_i ~ N(0, I)   (within-class variance)
spurious (``classes``)    ``spurious_strength``·e_{s_i} + ``spurious_std``·h_i,  h_i ~ N(0, I)
detail (``details``)      ``detail_strength``·b_ij,  b_ij ~ Bernoulli(``detail_rate``), independent of the class
========================  ==========================================================================================

* classes are balanced: the labels are a seeded permutation of ``n`` rows cycling through the classes (each class
  has ⌊n/K⌋ or ⌈n/K⌉ rows);
* over-representation: s_i = y_i with probability ``spurious_rate`` (exactly that rate, in expectation), else a
  class drawn uniformly from the K − 1 others; under the shift (``split="shift"``) the rate is
  ``shift_spurious_rate`` (default 0: the spurious attribute never agrees with the class);
* the caption's latent μᵀ is the image's core and spurious latent (the caption describes the same object, its
  intra-class variation and its context) and each present detail with probability ``caption_richness``
  (m_ij ~ Bernoulli(π), μᵀ_detail = b_ij·m_ij·``detail_strength``);
* encoders: ``"linear"`` — x = D·μ + ``noise_std``·ξ, D an ``image_dim``×k (resp. ``text_dim``×k) matrix with
  orthonormal columns, one per modality, drawn from ``seed``; ``"mlp"`` — x = D·μ + ``mlp_scale``·B·tanh(Cμ) +
  noise (B orthonormal columns, C Gaussian/√k), a small nonlinear encoder whose linear part D still holds the true
  directions;
* class prompts (zero-shot): the text encoder applied, without noise, to the latent of a caption that names only
  the class: core = ``core_strength``·e_c, spurious = 0, details = 0.

The true directions are the columns of D grouped by block (``directions["image"]["core"]`` is (K, image_dim), one
row per latent coordinate). The encoders depend on ``seed`` only; the rows of each split on ``(seed, split)``, so
``train``, ``test`` and ``shift`` share the encoders and differ in their rows.

>>> data = generate(XueModel(classes=3), 600, seed=0)
>>> data.image.shape, data.text.shape, sorted(data.directions["image"])
((600, 32), (600, 32), ['core', 'detail', 'spurious'])
>>> round(float((data.spurious == data.labels).mean()), 1)
0.9
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from embspace.errors import InputError

__all__ = ["ENCODERS", "SPLITS", "SyntheticData", "XueModel", "generate"]

ENCODERS = ("linear", "mlp")
SPLITS = ("train", "test", "shift")
BLOCKS = ("core", "spurious", "detail")


@dataclass(frozen=True)
class XueModel:
    """The parameters of the data model, named in the paper's vocabulary; see the module docstring."""

    classes: int = 4  # K: classes, and the size of the core and spurious latent blocks
    details: int = 4  # detail latents, shared by every class
    core_strength: float = 1.0  # mean of the class's own core coordinate
    core_std: float = 1.0  # within-class standard deviation of every core coordinate
    spurious_strength: float = 1.0  # mean of the spurious attribute's coordinate
    spurious_std: float = 0.1  # standard deviation of every spurious coordinate
    spurious_rate: float = 0.9  # over-representation: P(spurious attribute = class) in training (and "test")
    shift_spurious_rate: float = 0.0  # the same probability under the distribution shift (split "shift")
    detail_rate: float = 0.5  # P(a detail is present in an image)
    detail_strength: float = 1.0  # value of a present detail
    caption_richness: float = 0.5  # π: P(the caption mentions a present detail)
    noise_std: float = 0.1  # standard deviation of the encoders' input noise ξ, per input coordinate
    image_dim: int = 32  # dimension of the image features
    text_dim: int = 32  # dimension of the text features
    encoder: str = "linear"  # "linear" (x = Dμ + ξ) or "mlp" (x = Dμ + mlp_scale·B·tanh(Cμ) + ξ)
    mlp_scale: float = 0.5  # weight of the nonlinear part of the "mlp" encoder

    def __post_init__(self) -> None:
        for name in ("classes", "details", "image_dim", "text_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InputError(name, f"must be an integer, got {value!r}")
        if self.classes < 2:
            raise InputError("classes", f"needs at least 2 classes, got {self.classes}")
        if self.details < 0:
            raise InputError("details", f"must be ≥ 0, got {self.details}")
        for name in ("spurious_rate", "shift_spurious_rate", "detail_rate", "caption_richness"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise InputError(name, f"is a probability and must be in [0, 1], got {value!r}")
        for name in ("core_strength", "core_std", "spurious_strength", "spurious_std", "detail_strength",
                     "noise_std", "mlp_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise InputError(name, f"must be a finite number ≥ 0, got {value!r}")
        if self.encoder not in ENCODERS:
            raise InputError("encoder", f"unknown encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        for name in ("image_dim", "text_dim"):
            if getattr(self, name) < self.latent_dim:
                raise InputError(name, f"must be ≥ the latent dimension 2·classes + details = {self.latent_dim} "
                                       f"(the encoder's columns are orthonormal), got {getattr(self, name)}")

    @property
    def latent_dim(self) -> int:
        """k = 2K + details: the core, spurious and detail blocks, in that order."""
        return 2 * self.classes + self.details

    def blocks(self) -> dict[str, slice]:
        """Where each block lies in a latent vector."""
        k = self.classes
        return {"core": slice(0, k), "spurious": slice(k, 2 * k), "detail": slice(2 * k, 2 * k + self.details)}

    def replace(self, **changes: object) -> XueModel:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SyntheticData:
    """One split of the data model. Row i of every array is pair i."""

    model: XueModel
    split: str  # "train", "test" (same distribution) or "shift"
    image: np.ndarray  # (N, image_dim) float32 image features
    text: np.ndarray  # (N, text_dim) float32 caption features
    labels: np.ndarray  # (N,) int64 classes in [0, K)
    spurious: np.ndarray  # (N,) int64 spurious attributes in [0, K)
    details: np.ndarray  # (N, details) bool: detail j present in image i
    mentioned: np.ndarray  # (N, details) bool: detail j mentioned by caption i (only where present)
    image_latents: np.ndarray  # (N, k) float64 μᴵ
    text_latents: np.ndarray  # (N, k) float64 μᵀ
    class_prompts: np.ndarray  # (K, text_dim) float32 text features of the captions that name only a class
    directions: dict[str, dict[str, np.ndarray]] = field(repr=False)  # modality → block → (size, dim) unit rows

    @property
    def n(self) -> int:
        return len(self.labels)


def generate(model: XueModel | None = None, n: int = 2000, *, seed: int = 0, split: str = "train") -> SyntheticData:
    """``n`` pairs of the data model ``model`` (default :class:`XueModel`), deterministic in ``(seed, split)``.

    ``split="shift"`` draws the spurious attribute with ``model.shift_spurious_rate`` instead of
    ``model.spurious_rate``; ``"train"`` and ``"test"`` are two independent draws of the training distribution.
    """
    model = model or XueModel()
    if split not in SPLITS:
        raise InputError("split", f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError("n", f"must be an integer ≥ 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", f"must be an integer ≥ 0, got {seed!r}")
    encoders = _Encoders(model, seed)
    rng = np.random.default_rng([seed, 1 + SPLITS.index(split)])
    k, blocks = model.classes, model.blocks()

    labels = rng.permutation(np.arange(n) % k).astype(np.int64)  # balanced classes
    rate = model.shift_spurious_rate if split == "shift" else model.spurious_rate
    agree = rng.random(n) < rate
    other = (labels + rng.integers(1, k, size=n)) % k  # uniform over the K − 1 other classes
    spurious = np.where(agree, labels, other).astype(np.int64)
    details = rng.random((n, model.details)) < model.detail_rate
    mentioned = details & (rng.random((n, model.details)) < model.caption_richness)

    latents = np.zeros((n, model.latent_dim))  # (N, k)
    eye = np.eye(k)
    latents[:, blocks["core"]] = model.core_strength * eye[labels] + model.core_std * rng.standard_normal((n, k))
    latents[:, blocks["spurious"]] = (model.spurious_strength * eye[spurious]
                                      + model.spurious_std * rng.standard_normal((n, k)))
    latents[:, blocks["detail"]] = model.detail_strength * details
    text_latents = latents.copy()
    text_latents[:, blocks["detail"]] = model.detail_strength * mentioned

    prompts = np.zeros((k, model.latent_dim))
    prompts[:, blocks["core"]] = model.core_strength * eye
    return SyntheticData(
        model=model, split=split,
        image=encoders.image(latents, rng).astype(np.float32),
        text=encoders.text(text_latents, rng).astype(np.float32),
        labels=labels, spurious=spurious, details=details, mentioned=mentioned,
        image_latents=latents, text_latents=text_latents,
        class_prompts=encoders.text(prompts, None).astype(np.float32),
        directions={"image": encoders.directions("image"), "text": encoders.directions("text")})


class _Encoders:
    """The two encoders of one seed: D (orthonormal columns) per modality and, for "mlp", B and C."""

    def __init__(self, model: XueModel, seed: int) -> None:
        self.model = model
        rng = np.random.default_rng([seed, 0])
        k = model.latent_dim
        self.maps = {}
        for name, dim in (("image", model.image_dim), ("text", model.text_dim)):
            d, _ = np.linalg.qr(rng.standard_normal((dim, k)))  # (dim, k), orthonormal columns
            b, _ = np.linalg.qr(rng.standard_normal((dim, k)))  # (dim, k)
            c = rng.standard_normal((k, k)) / np.sqrt(k)  # (k, k)
            self.maps[name] = (d, b, c)

    def _encode(self, name: str, latents: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        d, b, c = self.maps[name]
        x = latents @ d.T  # (N, k) @ (k, dim) = (N, dim)
        if self.model.encoder == "mlp":
            x = x + self.model.mlp_scale * np.tanh(latents @ c.T) @ b.T
        if rng is not None:
            x = x + self.model.noise_std * rng.standard_normal(x.shape)
        return x

    def image(self, latents: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        return self._encode("image", latents, rng)

    def text(self, latents: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        return self._encode("text", latents, rng)

    def directions(self, name: str) -> dict[str, np.ndarray]:
        d = self.maps[name][0]
        return {block: d[:, where].T.copy() for block, where in self.model.blocks().items()}  # (size, dim) each
