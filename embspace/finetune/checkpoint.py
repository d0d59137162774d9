"""Checkpoints of a fine-tuning run, written atomically after every epoch.

A checkpoint holds everything the next epoch depends on, so that a run resumed from it reaches bitwise the same
weights as one that was never interrupted (on the CPU, same torch build and thread count):

``{"format": "embspace.finetune/1", "epoch": k, "step": s, "model": state_dict, "optimizer": state_dict,
"rng": {"shuffle": state, "augment": state, "lambda": state}, "history": [...], "config": {...},
"fingerprint": "…"}``

``fingerprint`` identifies the data and the config; resuming with other data or settings is refused. The file is
read with ``torch.load(weights_only=True)``: plain tensors, numbers, strings, lists and dicts only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from embspace.io.atomic import atomic_write_bytes

FORMAT = "embspace.finetune/1"
CHECKPOINT_NAME = "checkpoint.pt"
RUN_FILES = ("config.json", "epoch_*.json", "comparison.json", "history.json", "trajectory.json", "eval_before.npy",
             "eval_adapted.npy", CHECKPOINT_NAME)
"""The files a run writes into its output folder (names or glob patterns): none of them may be an input."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Serialise ``state`` (plus the format tag) and write it atomically: a reader never sees half a file."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no pickled code runs). A damaged,
    truncated or foreign file — one whose unpickling would call anything but tensor constructors included — is an
    :class:`~embspace.errors.InputError` in one line, naming the file."""
    import pickle
    import warnings

    from embspace.errors import InputError
    from embspace.io.common import check_file, translated
    from embspace.io.torch_files import refusal

    path = Path(path)
    check_file(path, note=False)  # read, then replaced by the next epoch's checkpoint: not an input to protect
    with translated(str(path), "cannot resume from this checkpoint"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's note on an unusual pickle protocol: refused below anyway
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Weights only" in str(exc) or "WeightsUnpickler" in str(exc):
                raise InputError(str(path), f"cannot resume from this checkpoint: {refusal(exc)}") from None
            raise
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(str(path), "not an embspace fine-tuning checkpoint; use another output folder")
    return state


def fingerprint(config: dict[str, Any], *tensors: torch.Tensor) -> str:
    """sha256 of the config (as sorted JSON) and of the tensors' shapes, dtypes and bytes."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(flat.shape)}{flat.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()
