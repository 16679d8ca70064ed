"""Checkpoints: state_dicts and plain values only, written atomically, read with ``weights_only=True``.

A checkpoint is a dict with ``format`` = ``"medclf-checkpoint"`` and:
``model`` (state_dict), ``model_name``, ``labels``, ``image_size``, ``in_channels``, ``optimizer``,
``scheduler``, ``scaler`` (state_dicts or None), ``epoch`` (last completed epoch), ``partial`` (progress
inside the next epoch when a run was stopped there, else None), ``best_metric``, ``best_epoch``,
``epochs_without_improvement``, ``thresholds`` (per-label operating points chosen on VALIDATION),
``history`` (metrics.csv rows), ``config`` (resolved TrainConfig), ``rng`` and ``medclf_version``.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError
from medclf.files import atomic_write
from medclf.models import build_model

log = logging.getLogger(__name__)

FORMAT = "medclf-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_name", "labels", "image_size")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename)."""
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file from a file path or a run folder (whose ``last.pt`` is taken)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a medclf checkpoint safely.

    Args:
        path: A checkpoint file, or a run folder (its ``last.pt``).
        map_location: Where tensors are loaded.

    Raises:
        CheckpointError: when the file is missing, truncated, not a medclf checkpoint, or holds pickled
            Python objects (which are refused, never executed).
    """
    path = resolve_checkpoint_path(path)
    state = load_weights_only(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = ", ".join(map(str, list(state)[:8])) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a medclf checkpoint (found: {keys})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    state["path"] = str(path)
    return state


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into a CheckpointError.

    A file holding pickled Python objects is refused (never executed); a truncated or foreign file is
    reported as such. ``what`` names the file in messages ("checkpoint", "pretrained weights").
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickling_detail(str(e))
        if "GLOBAL" in str(e):
            raise CheckpointError(
                f"refused to load {what} {path}: it contains pickled Python objects, which could run code "
                f"({detail}). Only state_dicts and plain values are accepted; the file was not executed."
            ) from None
        raise CheckpointError(f"cannot read {what} {path}: the file is truncated or corrupt ({detail})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path}: the file is truncated or corrupt ({detail})") from None


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's long weights-only error (the blocked global or opcode)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line.rstrip(".")
    return lines[-1] if lines else "unpickling error"


def check_compatible(
    checkpoint: dict[str, Any],
    *,
    labels: Sequence[str] | None = None,
    image_size: int | None = None,
    model_name: str | None = None,
) -> None:
    """Refuse a checkpoint whose labels, image size or network differ from what the caller uses.

    Raises:
        CheckpointError: saying every difference.
    """
    where = checkpoint.get("path", "checkpoint")
    problems = []
    if labels is not None and list(labels) != list(checkpoint["labels"]):
        ours, theirs = list(labels), list(checkpoint["labels"])
        detail = []
        if set(theirs) - set(ours):
            detail.append(f"only in the checkpoint: {', '.join(sorted(set(theirs) - set(ours)))}")
        if set(ours) - set(theirs):
            detail.append(f"only in the manifest/settings: {', '.join(sorted(set(ours) - set(theirs)))}")
        if not detail:
            detail.append(f"same labels in another order (checkpoint: {', '.join(theirs)})")
        problems.append("labels differ: " + "; ".join(detail))
    if image_size is not None and int(image_size) != int(checkpoint["image_size"]):
        problems.append(f"image size differs: checkpoint {checkpoint['image_size']}, settings {image_size}")
    if model_name is not None and model_name != checkpoint["model_name"]:
        problems.append(f"model differs: checkpoint {checkpoint['model_name']}, settings {model_name}")
    if problems:
        raise CheckpointError(f"{where} does not match: " + "; ".join(problems))


def model_from_checkpoint(checkpoint: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """The checkpoint's network with its weights, in eval mode, on ``device``."""
    model = build_model(
        checkpoint["model_name"], len(checkpoint["labels"]), in_channels=checkpoint.get("in_channels", 1)
    )
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"weights in {checkpoint.get('path', 'checkpoint')} do not fit {checkpoint['model_name']}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    return model.to(device).eval()
