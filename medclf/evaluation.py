"""Evaluate a checkpoint on one split of a manifest: metrics, a per-label table, per-image predictions."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclf.checkpoint import load_checkpoint, model_from_checkpoint
from medclf.config import ValidateConfig, settings_dict
from medclf.data import build_dataset, make_loader
from medclf.engine import amp_settings, infer, resolve_device
from medclf.errors import ConfigError, ImageError
from medclf.manifest import Manifest
from medclf.metrics import classification_metrics
from medclf.report import metrics_table, write_json, write_predictions
from medclf.transforms import preprocessing

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns; plain values only."""

    out_dir: str
    metrics: dict[str, Any]
    metrics_json: str
    predictions_csv: str
    skipped: list[dict] = field(default_factory=list)


def default_output_dir(checkpoint: str | Path, split: str) -> Path:
    """``<checkpoint folder>/<checkpoint stem>_<split>``, e.g. ``runs/exp1/best_test``."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f"{checkpoint.stem}_{split.lower()}"


def evaluate(config: ValidateConfig | None = None, **overrides: Any) -> EvaluationResult:
    """Evaluate a checkpoint on one split and write ``metrics.json`` and ``predictions.csv``.

    Preprocessing (labels, image size) comes from the checkpoint, so the numbers match those of
    training: run on the VALIDATION split, the macro AUROC equals the epoch's ``val_auroc``.

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        An :class:`EvaluationResult` whose ``metrics`` holds ``macro_auroc``, ``accuracy`` and
        per-label ``auroc``/``positives``/``negatives``.
    """
    config = dataclasses.replace(config, **overrides) if config else ValidateConfig(**overrides)
    if not config.checkpoint or not config.csv:
        raise ConfigError("evaluate needs a checkpoint and a csv")
    device = resolve_device(config.device)
    checkpoint = load_checkpoint(config.checkpoint, map_location="cpu")
    labels, image_size = list(checkpoint["labels"]), int(checkpoint["image_size"])
    manifest = Manifest.from_csv(config.csv, labels, required_splits=(config.split,))
    batch_size = config.batch_size or int(checkpoint.get("config", {}).get("batch_size", 32))

    dataset = build_dataset(manifest.records(config.split), preprocessing(image_size, labels), cache="none")
    loader = make_loader(dataset, batch_size=batch_size, cache="none", num_workers=config.num_workers, device=device)
    model = model_from_checkpoint(checkpoint, device)
    amp_dtype, _ = amp_settings(device, config.amp)
    result = infer(model, loader, device, amp_dtype=amp_dtype, desc=f"{config.split}", show_progress=config.progress)
    if result.targets is None or len(result.paths) == 0:
        raise ImageError(f"none of the {len(dataset)} {config.split} images in {config.csv} could be read")
    if result.skipped:
        log.warning("skipped %d unreadable image(s), e.g. %s: %s", len(result.skipped),
                    result.skipped[0]["path"], result.skipped[0]["error"])  # fmt: skip
    metrics = classification_metrics(result.probs, result.targets, labels)

    out = Path(config.out) if config.out else default_output_dir(checkpoint["path"], config.split)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "checkpoint": checkpoint["path"],
        "checkpoint_epoch": checkpoint.get("epoch"),
        "csv": str(config.csv),
        "split": config.split,
        **metrics,
        "skipped_images": result.skipped,
        "settings": settings_dict(config),
    }
    write_json(out / "metrics.json", summary)
    write_predictions(
        out / "predictions.csv", result.paths, result.rows, labels, result.probs, result.targets,
        thresholds=checkpoint.get("thresholds"),
    )  # fmt: skip
    log.info("%s on %s (%s):\n%s", Path(checkpoint["path"]).name, config.split, config.csv, metrics_table(metrics))
    log.info("wrote %s and %s", out / "metrics.json", out / "predictions.csv")
    return EvaluationResult(
        out_dir=str(out),
        metrics=metrics,
        metrics_json=str(out / "metrics.json"),
        predictions_csv=str(out / "predictions.csv"),
        skipped=result.skipped,
    )
