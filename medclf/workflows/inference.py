"""The inference set-up shared by ``validate``, ``predict`` and ``explain``.

checkpoint -> device -> loader -> model -> AMP -> :func:`~medclf.engine.loops.infer`, the decision
thresholds to apply, and the rule that outputs go in a folder next to the checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medclf.data.augment import tta_views
from medclf.data.loaders import build_dataset, make_loader
from medclf.data.transforms import preprocessing
from medclf.engine.device import amp_settings, resolve_device
from medclf.engine.loops import Inference, infer
from medclf.errors import ConfigError
from medclf.metrics.calibration import scale_thresholds, unscale_thresholds
from medclf.model.checkpoint import Checkpoint, model_from_checkpoint
from medclf.model.input_convention import centre_crop


def output_dir(given: str, checkpoint: Checkpoint, name: str) -> Path:
    """``given`` when set, else ``<checkpoint folder>/<name>`` (e.g. ``runs/exp1/best_test``)."""
    return Path(given) if given else Path(checkpoint.path).parent / name


def run_inference(
    checkpoint: Checkpoint,
    records: Sequence[dict],
    *,
    with_labels: bool,
    device: str,
    amp: bool,
    batch_size: int,
    num_workers: int,
    progress: bool,
    desc: str,
    tta: bool = False,
) -> tuple[Inference, int]:
    """Run the checkpoint's network over ``records`` with the checkpoint's preprocessing.

    Args:
        checkpoint: A loaded checkpoint (its labels and image size set the preprocessing).
        records: Samples from :meth:`~medclf.data.manifest.Manifest.records` (or ``image``/``row``/``index``).
        with_labels: Whether the records carry the checkpoint's label columns.
        device: ``auto``, ``cpu`` or ``cuda``.
        amp: Mixed precision on CUDA.
        batch_size: Images per batch (0: the checkpoint's training batch size).
        num_workers: DataLoader worker processes.
        progress: Show a progress bar.
        desc: Progress bar label.
        tta: Test-time augmentation: average over shifted copies, and the mirror image when the model
            was trained with flips (see :func:`tta_for`).

    Returns:
        The :class:`~medclf.engine.loops.Inference` and the number of records.
    """
    parts = inference_parts(checkpoint, records, with_labels, device, amp, batch_size, num_workers)
    views = tta_for(checkpoint) if tta else None
    result = infer(
        parts.model, parts.loader, parts.device, amp_dtype=parts.amp_dtype, channels_last=parts.channels_last,
        desc=desc, show_progress=progress, views=views,
    )  # fmt: skip
    return result, len(parts.loader.dataset)


@dataclass
class InferenceParts:
    """What a pass of a checkpoint's network over records needs."""

    loader: Any
    model: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool = False


def inference_parts(
    checkpoint: Checkpoint,
    records: Sequence[dict],
    with_labels: bool,
    device: str,
    amp: bool,
    batch_size: int,
    num_workers: int,
) -> InferenceParts:
    """Device, loader (the checkpoint's preprocessing, no cache) and model for a pass over ``records``."""
    where = resolve_device(device)
    labels = list(checkpoint.labels) if with_labels else ()
    chain = preprocessing(int(checkpoint.image_size), labels, crop=centre_crop(checkpoint.input))
    dataset = build_dataset(records, chain, cache="none")
    loader = make_loader(
        dataset, batch_size=batch_size or checkpoint.batch_size, cache="none", num_workers=num_workers, device=where
    )
    amp_dtype, _ = amp_settings(where, amp)
    # The memory format training used (channels-last on CUDA by default): the same kernels, the same
    # outputs, so validate reproduces the epoch's val_auroc on a GPU too.
    channels_last = bool(checkpoint.config.get("channels_last", True)) and where.type == "cuda"
    model = model_from_checkpoint(checkpoint, where)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return InferenceParts(loader, model, where, amp_dtype, channels_last)


def tta_for(checkpoint: Checkpoint) -> list:
    """The test-time augmentation views for a checkpoint: shifts, plus a mirror if it was trained with flips."""
    trained = checkpoint.config
    flipped = bool(trained.get("augment", True)) and bool(trained.get("hflip", True))
    return tta_views(hflip=flipped)


def resolve_thresholds(
    config: Any, checkpoint: Checkpoint, temperatures: Sequence[float] | None = None
) -> tuple[list[float], list[float], str]:
    """Per-label decision thresholds, on the raw outputs and on the reported probabilities, and their source.

    Order of precedence: ``--thresholds file.json``, ``--threshold t``, the checkpoint's thresholds
    (Youden's J on VALIDATION at the best epoch), 0.5. The checkpoint's are on the raw outputs; a user's
    are on the probabilities the user sees (calibrated when ``temperatures`` are applied). Each is moved
    to the other scale so that every call is the same on both.

    Returns:
        ``(raw, reported, source)``.
    """
    labels = list(checkpoint.labels)
    stored = [float(t) for t in (checkpoint.thresholds or [0.5] * len(labels))]
    stored_shown = scale_thresholds(stored, temperatures) if temperatures else list(stored)
    given: list[float | None] = [None] * len(labels)
    if getattr(config, "thresholds", ""):
        path = Path(config.thresholds)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read thresholds file {path}: {e}") from None
        unknown = sorted(set(data) - set(labels)) if isinstance(data, dict) else ["(not a JSON object)"]
        if unknown:
            raise ConfigError(f"thresholds file {path}: unknown label(s) {', '.join(unknown)}")
        given, source = [_threshold(path, name, data[name]) if name in data else None for name in labels], str(path)
    elif config.threshold:
        given, source = [float(config.threshold)] * len(labels), f"fixed {config.threshold}"
    else:
        source = "checkpoint (Youden's J on VALIDATION)" if checkpoint.thresholds else "default 0.5"
    shown = [stored_shown[j] if g is None else g for j, g in enumerate(given)]
    raw_given = unscale_thresholds(shown, temperatures) if temperatures else list(shown)
    raw = [stored[j] if g is None else raw_given[j] for j, g in enumerate(given)]
    return raw, shown, source


def _threshold(path: Path, label: str, value: Any) -> float:
    """A thresholds-file value: a finite number in [0, 1], else an error naming the file and the key."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not 0.0 <= number <= 1.0:  # also false for NaN
        raise ConfigError(f"thresholds file {path}: {label!r} is {value!r}; a threshold is a number in [0, 1]")
    return float(number)
