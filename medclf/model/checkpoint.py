"""Checkpoints: a typed :class:`Checkpoint`, saved as state_dicts and plain values only, written
atomically and read back with ``torch.load(weights_only=True)``.

On disk a checkpoint is a dict with ``format`` = ``"medclf-checkpoint"``, ``format_version`` and the
fields of :class:`Checkpoint`; files written by medclf 0.1.0 have the same keys and load unchanged.
"""

from __future__ import annotations

import logging
import math
import pickle
import pickletools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError, describe_os_error
from medclf.model.networks import build_model
from medclf.reporting.files import atomic_write
from medclf.reporting.run_lock import LOCK_NAME, RUN_MARKERS

log = logging.getLogger(__name__)

FORMAT = "medclf-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "model_name", "labels", "image_size")
_OPTIONAL = frozenset({"thresholds", "partial", "optimizer", "scheduler", "scaler"})
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since PyTorch 1.6
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of an old-style torch.save file (MAGIC_NUMBER)
_OBJECT_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})
_STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"})
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


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file from a file path or a run folder (whose ``last.pt`` is taken)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
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
    return Checkpoint.from_dict(state, path)


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into a CheckpointError.

    A file holding pickled Python objects is refused (never executed); a truncated or foreign file is
    reported as such. ``what`` names the file in messages ("checkpoint", "pretrained weights").
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        _check_pickle_file(path, what)
        return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        detail = _unpickling_detail(str(e))
        if "GLOBAL" in str(e):
            raise _refused(what, path, detail) from None
        raise _corrupt(what, path, detail) from None
    except OSError as e:
        raise CheckpointError(f"cannot read {what} {path}: {describe_os_error(e)}") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... on a cut or foreign file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _corrupt(what, path, detail) from None


def _refused(what: str, path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"refused to load {what} {path}: it contains pickled Python objects, which could run code "
        f"({detail}). Only state_dicts and plain values are accepted; the file was not executed."
    )


def _corrupt(what: str, path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"cannot read {what} {path}: the file is truncated or corrupt ({detail})")


def _check_pickle_file(path: Path, what: str) -> None:
    """Refuse a file in pickle format that is not a complete old-style ``torch.save`` file.

    torch's zip format is left to ``torch.load``. An old-style torch file (its first pickle is torch's magic
    number) must hold its next three pickles whole; ``torch.load`` then refuses any object in them. Any other
    pickle (``pickle.dump``, any protocol) is refused without being loaded. Pickle opcodes are only read.
    """
    with open(path, "rb") as f:
        if f.read(4) == _ZIP_MAGIC:
            return
        f.seek(0)
        value, names, protocol, error = _scan_pickle(f)
        if error is None and value == _LEGACY_MAGIC:
            for _ in range(3):  # protocol version, system information, the saved object
                error = _scan_pickle(f)[3]
                if error is not None:
                    raise _corrupt(what, path, f"old-style torch file cut short: {error}")
            return
    # A cut pickle that names real globals is refused as such; text read as opcodes names no identifiers.
    if names and (error is None or all(_dotted(n.removeprefix("GLOBAL ")) for n in names)):
        raise _refused(what, path, f"a pickle file holding {', '.join(names[:3])}")
    if error is not None:
        raise _corrupt(what, path, error)
    raise _refused(what, path, f"a plain pickle file of protocol {protocol}, not a torch checkpoint")


def _scan_pickle(f: Any) -> tuple[Any, list[str], int, str | None]:
    """Read one pickle's opcodes from ``f`` without running them.

    Returns:
        The value when the pickle is a single number, the globals it names, its protocol, and an error
        text when it is cut short or not a pickle (else None).
    """
    names: list[str] = []
    strings: list[str] = []
    first, count, protocol = None, 0, 0
    try:
        for opcode, arg, _ in pickletools.genops(f):
            if opcode.name == "PROTO":
                protocol = int(arg)
            elif opcode.name in _STRING_OPCODES:
                strings.append(str(arg))
            elif opcode.name == "STACK_GLOBAL":
                names.append(f"GLOBAL {'.'.join(strings[-2:]) or '?'}")  # a memo fetch may hide the names
            elif opcode.name in _OBJECT_OPCODES:
                parts = str(arg).split(" ")  # GLOBAL and INST: "module name"; EXT*: a number
                names.append(f"GLOBAL {'.'.join(parts) if len(parts) == 2 else '?'}")
            if opcode.name not in ("PROTO", "FRAME", "STOP"):
                first, count = (arg if count == 0 else first), count + 1
    except (ValueError, EOFError, OverflowError, MemoryError) as e:  # genops raises ValueError on a cut file
        return None, names, protocol, str(e).strip() or type(e).__name__
    return (first if count == 1 else None), names, protocol, None


def _dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's long weights-only error (the blocked global or opcode)."""
    blocked = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if blocked:
        return f"GLOBAL {blocked.group(1)} is not allowed"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line.rstrip(".")
    return lines[-1] if lines else "unpickling error"


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
    """The checkpoint's network with its weights, in eval mode, on ``device``."""
    model = build_model(checkpoint.model_name, len(checkpoint.labels), in_channels=checkpoint.in_channels)
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as e:
        raise CheckpointError(
            f"weights in {checkpoint.path or 'checkpoint'} do not fit {checkpoint.model_name}: {str(e).splitlines()[0]}"
        ) from None
    return model.to(device).eval()
