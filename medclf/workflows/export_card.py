"""The model card's VALIDATION metrics: AUROC, sensitivity and specificity with 95% bootstrap intervals,
measured now on the checkpoint's VALIDATION split when its manifest is reachable, else the training log's
per-label AUROC of the epoch kept (without intervals, said so)."""

from __future__ import annotations

import logging
import math
from typing import Any

from medclf.data.manifest import Manifest
from medclf.errors import MedclfError
from medclf.metrics.summary import evaluation_report
from medclf.model.checkpoint import Checkpoint
from medclf.workflows.inference import run_inference
from medclf.workflows.parity import manifest_paths

log = logging.getLogger(__name__)


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"


def _with_interval(row: dict[str, Any], metric: str) -> str:
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    interval = f" ({_number(low)}-{_number(high)})" if low is not None and high is not None else ""
    return _number(row.get(metric)) + interval


def measured_section(checkpoint: Checkpoint, csv: str, n_bootstrap: int = 1000) -> str | None:
    """Metrics on the VALIDATION split of ``csv`` (or the checkpoint's first manifest); None when unreachable."""
    path = next(iter(manifest_paths(checkpoint, csv)), "")
    if not path:
        return None
    try:
        manifest = Manifest.from_csv(path, list(checkpoint.labels), required_splits=("VALIDATION",))
        result, _ = run_inference(
            checkpoint, manifest.records("VALIDATION"), with_labels=True, device="cpu", amp=False, batch_size=0,
            num_workers=0, progress=False, desc="validation",
        )  # fmt: skip
    except (MedclfError, OSError) as e:
        log.info("model card: VALIDATION of %s not measured (%s)", path, str(e).splitlines()[0])
        return None
    report = evaluation_report(result.probs.cpu(), result.targets.cpu(), checkpoint.labels, checkpoint.thresholds,
                               n_bootstrap=n_bootstrap)  # fmt: skip
    rows = [
        f"| {r['label']} | {r['positives']} / {r['labelled']} | {_with_interval(r, 'auroc')} | "
        f"{_with_interval(r, 'sensitivity')} | {_with_interval(r, 'specificity')} |"
        for r in report["per_label"]
    ]
    return "\n".join([
        f"VALIDATION split of `{path}` ({len(result.paths)} images), measured at export; 95% percentile bootstrap "
        f"intervals ({n_bootstrap} resamples of images). Sensitivity and specificity at the thresholds below. "
        f"Macro AUROC {_with_interval(report['macro'], 'auroc')}.",
        "", "| label | positives / labelled | AUROC | sensitivity | specificity |", "| --- | --- | --- | --- | --- |",
        *rows,
    ])  # fmt: skip


def logged_section(checkpoint: Checkpoint) -> str:
    """The training log's VALIDATION AUROC per label at the epoch kept (no intervals)."""
    best = next((row for row in checkpoint.history if row.get("epoch") == checkpoint.best_epoch), None)
    if best is None:
        return "Not recorded in the checkpoint; run `python -m medclf.validate --split VALIDATION`."
    rows = [f"| {name} | {_number(best.get(f'auroc_{name}'))} |" for name in checkpoint.labels]
    return "\n".join([
        f"From the training log, VALIDATION split at epoch {checkpoint.best_epoch} (the epoch kept); the manifest "
        f"was not reachable at export, so no intervals. Macro AUROC {_number(best.get('val_auroc'))}.",
        "", "| label | AUROC |", "| --- | --- |", *rows,
    ])  # fmt: skip


def training_section(checkpoint: Checkpoint) -> str:
    """The model card's training data: settings, manifests with their SHA-256, images per split and TRAIN
    positives per label (when the manifest is reachable)."""
    config, prov = checkpoint.config, checkpoint.provenance
    digests = prov.get("manifests_sha256") or {}
    manifests = manifest_paths(checkpoint) or list(digests)
    lines = [
        f"{checkpoint.model_name} at {checkpoint.image_size} px, {checkpoint.epoch} epoch(s) trained, the epoch kept "
        f"{checkpoint.best_epoch}; uncertain labels: {config.get('uncertain', 'n/a')}; trained by medclf "
        f"{checkpoint.medclf_version or 'n/a'} on {prov.get('date', 'n/a')}.",
        "",
        *(f"- `{path}` (SHA-256 `{digests.get(path, 'n/a')}`)" for path in manifests),
    ]  # fmt: skip
    try:
        frame = Manifest.from_csv(manifests[0], list(checkpoint.labels), required_splits=()).frame
    except (MedclfError, OSError, IndexError):
        return "\n".join([*lines, "", "The manifest was not reachable at export: no counts."])
    splits = ", ".join(f"{name} {count}" for name, count in frame["split"].value_counts().items())
    train = frame[frame["split"] == "TRAIN"]
    positives = ", ".join(f"{name} {int((train[name] == 1).sum())}" for name in checkpoint.labels)
    return "\n".join([*lines, "", f"Images per split: {splits}.", "", f"TRAIN positives per label: {positives}."])


def validation_section(checkpoint: Checkpoint, csv: str = "") -> str:
    """The model card's "Validation metrics" section."""
    return measured_section(checkpoint, csv) or logged_section(checkpoint)
