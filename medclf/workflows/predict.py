"""Predict with a checkpoint on unlabeled images: a CSV of image paths or a folder of images."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medclf.config import PredictConfig
from medclf.data.manifest import Manifest
from medclf.data.transforms import is_image_file
from medclf.engine.loops import check_finite
from medclf.errors import ConfigError, ManifestError
from medclf.model.checkpoint import load_checkpoint
from medclf.reporting.tables import write_predictions
from medclf.workflows.analyses import reported_and_calls
from medclf.workflows.dicom_results import check_dicom_request, write_findings_srs
from medclf.workflows.inference import output_dir, resolve_thresholds, run_inference

log = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    """What :func:`predict_images` returns; plain values only."""

    predictions_csv: str
    n_images: int
    thresholds: list[float]
    skipped: list[dict] = field(default_factory=list)


def find_images(folder: str | Path) -> list[str]:
    """Image files under ``folder`` (recursively), sorted: PNG/JPEG/BMP/TIFF, NIfTI, DICOM (by suffix or magic)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"image folder not found: {root}")
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and is_image_file(p))


def predict_images(config: PredictConfig | None = None, **overrides: Any) -> PredictionResult:
    """Write ``predictions.csv``: per image, one probability and one 0/1 call per label.

    Preprocessing (labels, image size) and the per-label thresholds come from the checkpoint, unless
    ``threshold`` sets one for all labels. Unreadable images are kept in the CSV with an ``error`` and
    no probabilities.

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).
    """
    config = dataclasses.replace(config, **overrides) if config else PredictConfig(**overrides)
    if bool(config.csv) == bool(config.images):
        raise ConfigError("give exactly one of --csv (a list of images) or --images (a folder)")
    checkpoint = load_checkpoint(config.checkpoint, map_location="cpu")
    labels = list(checkpoint.labels)
    temperatures = list(checkpoint.temperatures) if config.calibration and checkpoint.temperatures else None
    raw_thresholds, thresholds, source = resolve_thresholds(config, checkpoint, temperatures)
    records = _records(config)
    if config.dicom_sr:  # before any work: a bad label or no DICOM input is refused with nothing written
        check_dicom_request([str(r["image"]) for r in records], labels, "--dicom-sr")
    result, _ = run_inference(
        checkpoint, records, with_labels=False, device=config.device, amp=config.amp,
        batch_size=config.batch_size, num_workers=config.num_workers, progress=config.progress, desc="predict",
        tta=config.tta,
    )  # fmt: skip
    check_finite(result, f"{Path(checkpoint.path).name} on {len(result.paths)} images")
    reported, calls = reported_and_calls(result, temperatures, raw_thresholds)
    probs = torch.from_numpy(reported)
    path = output_dir(config.out, checkpoint, f"{Path(checkpoint.path).stem}_predict") / "predictions.csv"
    write_predictions(path, result.paths, result.rows, labels, probs, calls=calls, skipped=result.skipped)
    if config.dicom_sr:
        write_findings_srs(config.dicom_sr, checkpoint, result.paths, probs.numpy(), calls, raw_thresholds)
    if result.skipped:
        log.warning("%d unreadable image(s) listed with their error in %s", len(result.skipped), path)
    log.info("predicted %d images with %s (thresholds: %s; calibration: %s%s); wrote %s", len(result.paths),
             checkpoint.path, source, "temperature scaling" if temperatures else "none",
             ", test-time augmentation" if config.tta else "", path)  # fmt: skip
    return PredictionResult(str(path), len(result.paths), thresholds, result.skipped)


def _records(config: PredictConfig) -> list[dict]:
    if config.images:
        paths = find_images(config.images)
        if not paths:
            raise ConfigError(f"no images (PNG, JPEG, BMP, TIFF, DICOM, NIfTI) found under {config.images}")
        return [{"image": p, "row": i + 1, "index": i} for i, p in enumerate(paths)]
    manifest = Manifest.from_csv(config.csv, (), required_splits=(), require_labels=False)
    if config.split and not (manifest.frame["split"] == config.split).any():
        raise ManifestError(config.csv, [f"no rows with split {config.split}"])
    return manifest.records(config.split or None)
