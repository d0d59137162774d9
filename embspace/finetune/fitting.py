"""`fit`: fine-tune two towers on cached training features, measure the held-out pairs after every epoch, and state
what changed between before and after beyond the noise.

>>> import numpy as np
>>> from embspace.finetune import fit, FitConfig
>>> rng = np.random.default_rng(0)
>>> latent = rng.normal(size=(300, 8))
>>> image, text = latent @ rng.normal(size=(8, 24)), latent @ rng.normal(size=(8, 16))
>>> result = fit((image[:240], text[:240]), (image[240:], text[240:]), loss="m2mix",
...              config=FitConfig(epochs=3, dim=8, batch_size=64, eval_metrics="gap,alignment"), resamples=100)
>>> len(result.reports), result.image.shape
(4, (60, 8))

"Before" is the eval set through the towers at initialisation (epoch 0): random projection heads, or — for
residual adapters, which start as the identity — the input embeddings themselves. "After" is the last epoch.
Against random heads nearly every change exceeds the noise; the question a loss has to answer is whether it beats
plain CLIP fine-tuning. With ``baseline="train"`` (the CLI's default) a loss other than ``clip`` is followed by the
CLIP-loss run of the same config and seed (same init, shuffling and epochs), and ``baseline_comparison`` compares
that run's adapted eval embeddings (before) with the method's (after), paired over the same eval pairs;
``baseline=FOLDER`` takes a finished clip run of the same settings and data from an earlier ``fit(out=FOLDER)``.

Files written to ``out`` (all atomically): ``config.json``; ``epoch_{k}.json`` (the measure report of the eval
embeddings after epoch k, k = 0 before training); ``checkpoint.pt`` (after every epoch; the run resumes from it);
``eval_before.npy`` and ``eval_adapted.npy`` ((2, N, d) float32 unit rows, the eval pairs before and after);
``comparison.json`` (before vs after with the paired-bootstrap ``significance`` block); ``history.json`` (mean
training loss terms per epoch); ``trajectory.json`` (the epoch reports as an :class:`embspace.trajectory.Trajectory`,
for ``embspace plot`` and notebooks). With a baseline: ``baseline_clip/`` (the trained CLIP-loss run, the same
files) and ``comparison_baseline.json`` (the clip run's last epoch vs the method's, with ``significance``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embspace.compare import RESAMPLES, Comparison, compare
from embspace.embeddings import Embeddings
from embspace.finetune.checkpoint import CHECKPOINT_NAME, fingerprint
from embspace.finetune.config import FitConfig
from embspace.finetune.data import Pairs, as_pairs
from embspace.finetune.heads import TwoTower, build_model
from embspace.finetune.labelled import check_eval_labels, image_labels, label_options, prompt_features, with_zeroshot
from embspace.finetune.train import StepHook, Trainer, train
from embspace.io.atomic import atomic_write_bytes, atomic_write_text
from embspace.kernels.backend import resolve_device
from embspace.kernels.dense import normalize
from embspace.report import Report

EMBED_CHUNK = 65_536
BASELINE_FOLDER = "baseline_clip"


@dataclass
class FitResult:
    """What :func:`fit` produced.

    ``image`` / ``text``: the adapted eval embeddings (N, d), float32 unit rows; ``before_image`` /
    ``before_text``: the eval embeddings at epoch 0; ``reports[k]``: the eval report after epoch k (0 = before);
    ``history[k]``: mean training loss terms of epoch k + 1; ``comparison``: before vs after, with significance;
    ``baseline_comparison``: the CLIP-loss baseline's last epoch vs this run's (None without a baseline),
    ``baseline_out`` the folder of that baseline run.
    """

    config: FitConfig
    names: tuple[str, str]
    image: np.ndarray
    text: np.ndarray
    before_image: np.ndarray
    before_text: np.ndarray
    reports: list[Report]
    history: list[dict[str, float]]
    comparison: Comparison
    model: TwoTower = field(repr=False)
    out: Path | None = None
    baseline_comparison: Comparison | None = None
    baseline_out: Path | None = None

    @property
    def before(self) -> Report:
        return self.reports[0]

    @property
    def after(self) -> Report:
        return self.reports[-1]

    @property
    def trajectory(self):  # -> embspace.trajectory.Trajectory
        """The eval reports by epoch (0 = before training), for curves of gap, uniformity, recall…"""
        return _trajectory(self.reports, self.config, self.out)


@torch.no_grad()
def embed(model: TwoTower, pairs: Pairs, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Both modalities through their towers, L2-normalised, as float32 arrays (chunked over rows)."""
    model.eval()
    outputs: list[list[torch.Tensor]] = [[], []]
    for start in range(0, pairs.n, EMBED_CHUNK):
        rows = slice(start, start + EMBED_CHUNK)
        x, y = model(pairs.image[rows].to(device), pairs.text[rows].to(device))
        outputs[0].append(normalize(x.float()).cpu())
        outputs[1].append(normalize(y.float()).cpu())
    return torch.cat(outputs[0]).numpy(), torch.cat(outputs[1]).numpy()


def fit(
    train_data: Pairs | Mapping[str, Any] | Sequence[Any],
    eval_data: Pairs | Mapping[str, Any] | Sequence[Any],
    loss: str | None = None,
    config: FitConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool | None = None,
    on_step: StepHook | None = None,
    resamples: int = RESAMPLES,
    baseline: str | os.PathLike[str] | None = None,
    labels: Any = None,
    prompts: Any = None,
) -> FitResult:
    """Train towers with ``loss`` on ``train_data``; measure ``eval_data`` every epoch; compare before and after.

    Args:
        train_data, eval_data: two paired modalities each (a mapping name → array/tensor/Embeddings, an
            (image, text) pair, or :class:`~embspace.finetune.data.Pairs`); the same names and per-modality
            dimensions in both. The modalities may differ in dimension (projection heads).
        loss: overrides ``config.loss`` (clip, m2mix, m3mix, cua, cuaxu, latent).
        config: :class:`FitConfig` (defaults otherwise).
        out: folder for the outputs and the checkpoint (created if missing); None keeps everything in memory.
        resume: continue the run whose checkpoint is in ``out``; without it a folder that holds a checkpoint is
            refused rather than overwritten.
        progress: tqdm bar on stderr; None shows it when stderr is a tty.
        on_step: ``hook(epoch, step)`` after every optimiser step (tests use it to interrupt a run).
        resamples: bootstrap resamples of the before/after comparison.
        baseline: ``"train"``: when ``loss`` is not clip, also train the CLIP-loss run of the same config and
            seed (into ``out/baseline_clip``) and compare its last epoch with this run's; a folder: the finished
            clip run of the same settings and data to compare with; None: no baseline.
    """
    config = config or FitConfig()
    if loss is not None:
        config = config.replace(loss=loss)
    train_pairs, eval_pairs = as_pairs(train_data, "train"), as_pairs(eval_data, "eval", _names_of(train_data))
    _check_compatible(train_pairs, eval_pairs)
    check_eval_labels(labels, eval_pairs.names[0], eval_pairs.n, eval_pairs.dims[0])
    prompt_table = None if prompts is None else prompt_features(prompts, eval_pairs.dims[1])
    given_baseline = None
    if baseline is not None and str(baseline) != "train":
        given_baseline = _baseline_run(Path(baseline), config, train_pairs, eval_pairs)
    device = resolve_device(config.device)
    model = build_model(*train_pairs.dims, config).to(device)
    folder = _prepare_folder(out, resume)
    trainer = Trainer(model, config, train_pairs.image.to(device), train_pairs.text.to(device))
    names = train_pairs.names
    reports: dict[int, Report] = {}
    prompts_seen: dict[int, Any] = {}

    def evaluate(epoch: int, current: TwoTower) -> None:
        x, y = embed(current, eval_pairs, device)
        options = label_options(current, labels, prompt_table, device, names[0])
        prompts_seen[epoch] = options.get("prompts")
        reports[epoch] = _measure(x, y, names, config, epoch, **options)
        if folder is not None:
            reports[epoch].to_json(folder / f"epoch_{epoch}.json")

    checkpoint = folder / CHECKPOINT_NAME if folder is not None else None
    key = fingerprint(config.to_dict(), train_pairs.image, train_pairs.text, eval_pairs.image, eval_pairs.text)
    resuming = checkpoint is not None and checkpoint.exists()
    if not resuming:
        evaluate(0, model)
        before = embed(model, eval_pairs, device)
        if folder is not None:
            atomic_write_text(folder / "config.json", config.to_json())
            _save_stack(folder / "eval_before.npy", *before)
    train(trainer, checkpoint=checkpoint, fingerprint=key, on_epoch=evaluate, on_step=on_step, progress=progress)
    if resuming:
        before = _load_stack(folder / "eval_before.npy")
        reports.update({k: Report.from_json(folder / f"epoch_{k}.json") for k in range(config.epochs + 1)
                        if k not in reports})
    after = embed(model, eval_pairs, device)
    ordered = [reports[k] for k in range(config.epochs + 1)]
    labelled = ({"labels": image_labels(labels, names[0]), "prompts_before": prompts_seen.get(0),
                 "prompts_after": prompts_seen.get(config.epochs)}
                if labels is not None and prompts_seen.get(0) is not None else {})
    comparison = compare(ordered[0], ordered[-1], data_before={names[0]: before[0], names[1]: before[1]},
                         data_after={names[0]: after[0], names[1]: after[1]}, resamples=resamples, seed=config.seed,
                         **labelled)
    if folder is not None:
        _save_stack(folder / "eval_adapted.npy", *after)
        atomic_write_text(folder / "comparison.json", json.dumps(comparison.to_dict(), indent=2) + "\n")
        atomic_write_text(folder / "history.json", json.dumps(trainer.history, indent=2) + "\n")
        _trajectory(ordered, config, folder).to_json(folder / "trajectory.json", embed=False)
    result = FitResult(config, names, after[0], after[1], before[0], before[1], ordered, trainer.history, comparison,
                       model, folder)
    if config.loss != "clip" and baseline is not None:
        if given_baseline is None:
            base_folder = folder / BASELINE_FOLDER if folder is not None else None
            clip = fit(train_pairs, eval_pairs, config=_baseline_config(config), out=base_folder,
                       resume=resume and base_folder is not None and (base_folder / CHECKPOINT_NAME).exists(),
                       progress=progress, resamples=resamples)
            given_baseline = (clip.after, (clip.image, clip.text), base_folder)
        report, embeddings, result.baseline_out = given_baseline
        result.baseline_comparison = compare(
            report, result.after, data_before={names[0]: embeddings[0], names[1]: embeddings[1]},
            data_after={names[0]: after[0], names[1]: after[1]}, resamples=resamples, seed=config.seed)
        if folder is not None:
            atomic_write_text(folder / "comparison_baseline.json",
                              json.dumps({"baseline": str(result.baseline_out) if result.baseline_out else None,
                                          **result.baseline_comparison.to_dict()}, indent=2) + "\n")
    return result


def _baseline_config(config: FitConfig) -> FitConfig:
    """The CLIP-loss run that ``config``'s loss is measured against: every other setting (and the seed) kept."""
    return config.replace(loss="clip", loss_options={})


# settings a baseline run must share with the method's (loss, its options and the device may differ)
BASELINE_SETTINGS = ("head", "adapter", "dim", "hidden", "epochs", "batch_size", "lr", "weight_decay",
                     "learn_logit_scale", "init_logit_scale", "max_logit_scale", "seed")


def _baseline_run(folder: Path, config: FitConfig, train_pairs: Pairs,
                  eval_pairs: Pairs) -> tuple[Report, tuple[np.ndarray, np.ndarray], Path]:
    """The last report and adapted eval embeddings of a finished clip run in ``folder``, checked to be the run of
    the same settings on the same training and eval data (its checkpoint's fingerprint)."""
    from embspace.errors import InputError
    from embspace.finetune.checkpoint import load_checkpoint

    where = f"--baseline {folder}"
    if config.loss == "clip":
        raise InputError(where, "the loss is clip already: a baseline compares another loss with clip")
    files = {name: folder / name for name in ("config.json", CHECKPOINT_NAME, "eval_adapted.npy")}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise InputError(where, f"is not a finished fine-tuning run (no {', '.join(missing)})")
    try:
        theirs = FitConfig.from_dict(json.loads(files["config.json"].read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}/config.json", f"unreadable: {exc}") from None
    if theirs.loss != "clip":
        raise InputError(where, f"is a {theirs.loss} run; the baseline is a clip run")
    differing = [key for key in BASELINE_SETTINGS if getattr(theirs, key) != getattr(config, key)]
    if differing:
        key = differing[0]
        raise InputError(where, f"was trained with {key}={getattr(theirs, key)!r}, this run with "
                                f"{key}={getattr(config, key)!r} (the baseline needs the same settings)")
    try:
        state = load_checkpoint(files[CHECKPOINT_NAME])
    except (ValueError, RuntimeError, OSError) as exc:
        raise InputError(f"{where}/{CHECKPOINT_NAME}", f"unreadable: {exc}") from None
    key = fingerprint(theirs.to_dict(), train_pairs.image, train_pairs.text, eval_pairs.image, eval_pairs.text)
    if state.get("fingerprint") != key:
        raise InputError(where, "was trained on other training or eval data")
    if int(state.get("epoch", -1)) != theirs.epochs:
        raise InputError(where, f"is unfinished (epoch {state.get('epoch')} of {theirs.epochs}); resume it first")
    report_path = folder / f"epoch_{theirs.epochs}.json"
    if not report_path.is_file():
        raise InputError(where, f"has no {report_path.name}")
    stack = np.load(files["eval_adapted.npy"], allow_pickle=False)
    if stack.ndim != 3 or stack.shape[0] != 2 or stack.shape[1] != eval_pairs.n:
        raise InputError(f"{where}/eval_adapted.npy", f"has shape {stack.shape}, expected (2, {eval_pairs.n}, d)")
    return Report.from_json(report_path), (stack[0], stack[1]), folder


def _trajectory(reports: list[Report], config: FitConfig, folder: Path | None):
    from embspace.trajectory import Trajectory

    paths = [str(folder / f"epoch_{k}.json") for k in range(len(reports))] if folder is not None else []
    return Trajectory(list(range(len(reports))), reports, paths=paths, name=config.loss, unit="epoch")


def _names_of(data: Any) -> tuple[str, str] | None:
    """The modality names of the training data, so that an unnamed eval pair takes them."""
    if isinstance(data, Pairs):
        return data.names
    if isinstance(data, Mapping) and len(data) == 2:
        return tuple(data)  # type: ignore[return-value]
    return None


def _check_compatible(train_pairs: Pairs, eval_pairs: Pairs) -> None:
    from embspace.errors import InputError

    if train_pairs.names != eval_pairs.names:
        raise InputError("eval", f"modalities {list(eval_pairs.names)} differ from training's "
                                 f"{list(train_pairs.names)}")
    if train_pairs.dims != eval_pairs.dims:
        raise InputError("eval", f"dimensions {eval_pairs.dims} differ from training's {train_pairs.dims}")


def _prepare_folder(out: str | os.PathLike[str] | None, resume: bool) -> Path | None:
    from embspace.errors import InputError

    if out is None:
        if resume:
            raise InputError("resume", "needs an output folder that holds the run's checkpoint")
        return None
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(str(folder), "exists and is not a folder")
    if (folder / CHECKPOINT_NAME).exists() and not resume:
        raise InputError(str(folder), "holds a fine-tuning run already; pass resume=True to continue it "
                                      "or choose another output folder")
    existing = next(p for p in folder.absolute().parents if p.exists())
    if not existing.is_dir():
        raise InputError(str(folder), f"{existing} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)  # missing parent folders are made, as measure's --out makes its own
    return folder


def _measure(x: np.ndarray, y: np.ndarray, names: tuple[str, str], config: FitConfig, epoch: int,
             **label_options: Any) -> Report:
    from embspace.measure import measure

    label = f"eval({config.loss})@epoch{epoch}"  # the loss in the name: a clip baseline's source differs
    data = {names[0]: Embeddings.from_array(x, f"{label}:{names[0]}"),
            names[1]: Embeddings.from_array(y, f"{label}:{names[1]}")}
    metrics = with_zeroshot(config.eval_metrics) if label_options else config.eval_metrics
    return measure(data, metrics=metrics, device=config.device, seed=config.seed, **label_options)


def _save_stack(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """(2, N, d) float32 .npy, written atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.stack([x, y]).astype(np.float32))
    atomic_write_bytes(path, buffer.getvalue())


def _load_stack(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from embspace.io.common import check_file, translated

    check_file(path, note=False)  # a run folder resumed without its eval_before.npy: one line, not a traceback
    with translated(str(path), "cannot resume this run"):
        stack = np.load(path, allow_pickle=False)
    return stack[0], stack[1]
