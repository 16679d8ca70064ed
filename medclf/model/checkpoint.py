"""Checkpoints: a typed :class:`Checkpoint`, saved as state_dicts and plain values only, written
atomically and read back with ``torch.load(weights_only=True)``.

On disk a checkpoint is a dict with ``format`` = ``"medclf-checkpoint"``, ``format_version`` and the
fields of :class:`Checkpoint`; files written by medclf 0.1.0 have the same keys and load unchanged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError
from medclf.model.input_convention import apply_convention
from medclf.model.networks import build_model
from medclf.model.safe_load import load_weights_only
from medclf.reporting.files import atomic_write
from medclf.reporting.run_lock import LOCK_NAME, RUN_MARKERS

log = logging.getLogger(__name__)

FORMAT = "medclf-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_name", "labels", "image_size")
_OPTIONAL = frozenset({"thresholds", "partial", "optimizer", "scheduler", "scaler", "ema"})
# What a run writes before its first checkpoint: a folder with these and no RUN_MARKERS is a run killed early.
_EARLY_FILES = ("config.json", "label_counts.csv", LOCK_NAME)


@dataclass
class TrainState:
    """What a run must carry across a restart (saved in every checkpoint).

    ``thresholds`` (Youden's J) and ``temperatures`` (temperature scaling, :mod:`medclf.metrics.calibration`)
    are per label, fitted on VALIDATION at the best epoch; ``temperatures`` is empty in checkpoints written
    before calibration existed.
    """

    thresholds: list[float] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    epoch: int = 0
    partial: dict[str, Any] | None = None
    best_metric: float = -math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> TrainState:
        """The state a checkpoint was saved with."""
        names = [f.name for f in fields(cls)]
        return cls(**{name: getattr(checkpoint, name) for name in names})

    def as_fields(self) -> dict[str, Any]:
        """The state as :class:`~medclf.model.checkpoint.Checkpoint` fields."""
        return {f.name: getattr(self, f.name) for f in fields(TrainState)}

    def stopped_early(self, patience: int) -> bool:
        """Whether ``patience`` epochs (> 0) have passed without a gain."""
        return patience > 0 and self.epochs_without_improvement >= patience


@dataclass(kw_only=True)
class Checkpoint(TrainState):
    """Everything a run saves: the network and how to rebuild it, plus the state needed to resume
    (the :class:`TrainState` fields it extends).

    Attributes:
        model: The network's state_dict.
        model_name: Network name for :func:`~medclf.model.networks.build_model`.
        labels: Label names, in output order.
        image_size: Side length the images were resized to.
        in_channels: Image channels.
        config: The resolved training settings (``TrainConfig`` as plain values).
        optimizer, scheduler, scaler: state_dicts (None where not used).
        rng: Random states (see :mod:`medclf.engine.seeding`).
        medclf_version: Version that wrote the file.
        provenance: Versions, date, command, git commit, device and manifest hashes of the run
            (:mod:`medclf.reporting.provenance`); empty in files written before 0.2.0.
        input: The input convention of the weights (:mod:`medclf.model.input_convention`; ``{}``: medclf's
            own, [0, 1] and the whole image), which every reader of the checkpoint feeds the network.
        ema: With ``--ema-decay``, in ``last.pt``: the trained weights and the update count
            (:mod:`medclf.engine.ema`); ``model`` then holds the averaged weights, the ones validated.
        path: Where it was loaded from (not saved).
    """

    model: dict[str, torch.Tensor]
    model_name: str
    labels: list[str]
    image_size: int
    in_channels: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    medclf_version: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Any] | None = None
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``torch.save`` (tensors, containers and scalars only)."""
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **state}

    @classmethod
    def from_dict(cls, state: dict[str, Any], path: str | Path = "") -> Checkpoint:
        """Inverse of :meth:`to_dict`; unknown keys (from other versions) are ignored.

        Raises:
            CheckpointError: when a required field is missing.
        """
        missing = [k for k in REQUIRED_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
        known = {f.name for f in fields(cls)} - {"path"}
        # A None where a container is expected (an older writer's "not set") takes the default instead.
        values = {k: v for k, v in state.items() if k in known and (v is not None or k in _OPTIONAL)}
        return cls(**values, path=str(path))

    @property
    def batch_size(self) -> int:
        """The training batch size (the default for inference)."""
        return int(self.config.get("batch_size", 32))

    # Dict-style reading, as ``load_checkpoint`` returned a dict in medclf 0.1.0.
    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in {f.name for f in fields(self)}

    def get(self, key: str, default: Any = None) -> Any:
        """``checkpoint[key]``, or ``default`` when there is no such field or it is None."""
        value = getattr(self, key, None) if key in self else None
        return default if value is None else value


def save_checkpoint(path: str | Path, checkpoint: Checkpoint | dict[str, Any]) -> None:
    """Write a checkpoint (or a dict of its fields) to ``path`` atomically (temp file, fsync, rename)."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.from_dict(checkpoint, path)
    with atomic_write(path, "wb") as f:
        torch.save(checkpoint.to_dict(), f)


def holds_checkpoint(run_dir: str | Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from (``last.pt`` or ``best.pt``)."""
    return any((Path(run_dir) / name).is_file() for name in ("last.pt", "best.pt"))


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file from a file path or a run folder (its ``last.pt``, else its ``best.pt``)."""
    path = Path(path)
    if path.is_dir():  # a full disk can keep best.pt and fail on last.pt in the first epoch
        path = path / ("best.pt" if not (path / "last.pt").is_file() and (path / "best.pt").is_file() else "last.pt")
    if not path.is_file():
        run = path.parent
        if not any((run / m).exists() for m in RUN_MARKERS) and any((run / f).exists() for f in _EARLY_FILES):
            raise CheckpointError(
                f"no checkpoint in {run}: its run stopped before its first checkpoint was saved, so there is nothing "
                "to resume. Starting it again is safe: run the same command without --resume"
            )
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a medclf checkpoint safely.

    Args:
        path: A checkpoint file, or a run folder (its ``last.pt``; its ``best.pt`` when ``last.pt`` is
            missing or unreadable), or a cross-validation study folder (a
            :class:`~medclf.model.ensemble.StudyCheckpoint` of its folds' ``best.pt``).
        map_location: Where tensors are loaded.

    Raises:
        CheckpointError: when the file is missing, truncated, not a medclf checkpoint, or holds pickled
            Python objects (which are refused, never executed).
    """
    if (Path(path) / "study.json").is_file():  # a cross-validation study: its fold ensemble
        from medclf.model.ensemble import load_study

        return load_study(path, map_location)
    folder, path = Path(path).is_dir(), resolve_checkpoint_path(path)
    try:
        state = load_weights_only(path, map_location)
    except CheckpointError:
        if not folder or path.name != "last.pt" or not (path.parent / "best.pt").is_file():
            raise
        path = path.parent / "best.pt"
        state = load_weights_only(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = ", ".join(map(str, list(state)[:8])) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a medclf checkpoint (found: {keys})")
    return Checkpoint.from_dict(state, path)


def check_compatible(
    checkpoint: Checkpoint,
    *,
    labels: Sequence[str] | None = None,
    image_size: int | None = None,
    model_name: str | None = None,
) -> None:
    """Refuse a checkpoint whose labels, image size or network differ from what the caller uses.

    Raises:
        CheckpointError: saying every difference.
    """
    where = checkpoint.path or "checkpoint"
    problems = []
    if labels is not None and list(labels) != list(checkpoint.labels):
        ours, theirs = list(labels), list(checkpoint.labels)
        detail = []
        if set(theirs) - set(ours):
            detail.append(f"only in the checkpoint: {', '.join(sorted(set(theirs) - set(ours)))}")
        if set(ours) - set(theirs):
            detail.append(f"only in the manifest/settings: {', '.join(sorted(set(ours) - set(theirs)))}")
        if not detail:
            detail.append(f"same labels in another order (checkpoint: {', '.join(theirs)})")
        problems.append("labels differ: " + "; ".join(detail))
    if image_size is not None and int(image_size) != int(checkpoint.image_size):
        problems.append(f"image size differs: checkpoint {checkpoint.image_size}, settings {image_size}")
    if model_name is not None and model_name != checkpoint.model_name:
        problems.append(f"model differs: checkpoint {checkpoint.model_name}, settings {model_name}")
    if problems:
        raise CheckpointError(f"{where} does not match: " + "; ".join(problems))


def model_from_checkpoint(checkpoint: Checkpoint, device: str | torch.device = "cpu") -> nn.Module:
    """The checkpoint's network with its weights, in eval mode, on ``device`` (a study's: its fold ensemble)."""
    if getattr(checkpoint, "folds", None):
        from medclf.model.ensemble import ensemble_model

        return ensemble_model(checkpoint, device)  # type: ignore[arg-type]
    model = build_model(checkpoint.model_name, len(checkpoint.labels), in_channels=checkpoint.in_channels)
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as e:
        raise CheckpointError(
            f"weights in {checkpoint.path or 'checkpoint'} do not fit {checkpoint.model_name}: {str(e).splitlines()[0]}"
        ) from None
    apply_convention(model, checkpoint.input, checkpoint.path or "checkpoint")
    return model.to(device).eval()
