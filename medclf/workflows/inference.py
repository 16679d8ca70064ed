"""The inference set-up shared by ``validate``, ``predict`` and ``explain``.

checkpoint -> device -> loader -> model -> AMP -> :func:`~medclf.engine.loops.infer`, the decision
thresholds to apply, and the rule that outputs go in a folder next to the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medclf.data.loaders import build_dataset, make_loader
from medclf.data.transforms import preprocessing
from medclf.engine.device import amp_settings, resolve_device
from medclf.engine.loops import Inference, infer
from medclf.errors import ConfigError
from medclf.model.checkpoint import Checkpoint, model_from_checkpoint


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

    Returns:
        The :class:`~medclf.engine.loops.Inference` and the number of records.
    """
    where = resolve_device(device)
    labels = list(checkpoint.labels) if with_labels else ()
    dataset = build_dataset(records, preprocessing(int(checkpoint.image_size), labels), cache="none")
    loader = make_loader(
        dataset, batch_size=batch_size or checkpoint.batch_size, cache="none", num_workers=num_workers, device=where
    )
    model = model_from_checkpoint(checkpoint, where)
    amp_dtype, _ = amp_settings(where, amp)
    return infer(model, loader, where, amp_dtype=amp_dtype, desc=desc, show_progress=progress), len(dataset)


def resolve_thresholds(config: Any, checkpoint: Checkpoint) -> tuple[list[float], str]:
    """Per-label decision thresholds and where they came from.

    Order of precedence: ``--thresholds file.json``, ``--threshold t``, the checkpoint's thresholds
    (Youden's J on VALIDATION at the best epoch), 0.5.
    """
    labels = list(checkpoint.labels)
    stored = checkpoint.thresholds or [0.5] * len(labels)
    if getattr(config, "thresholds", ""):
        path = Path(config.thresholds)
        try:
            given = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read thresholds file {path}: {e}") from None
        unknown = sorted(set(given) - set(labels)) if isinstance(given, dict) else ["(not a JSON object)"]
        if unknown:
            raise ConfigError(f"thresholds file {path}: unknown label(s) {', '.join(unknown)}")
        return [float(given.get(name, t)) for name, t in zip(labels, stored, strict=True)], str(path)
    if config.threshold:
        return [float(config.threshold)] * len(labels), f"fixed {config.threshold}"
    source = "checkpoint (Youden's J on VALIDATION)" if checkpoint.thresholds else "default 0.5"
    return [float(t) for t in stored], source
