"""Evaluate a checkpoint on one split: metrics with confidence intervals, plots, an HTML report.

``evaluate`` runs the model once over the split, then hands probabilities and targets to pure functions
(:func:`medclf.metrics.summary.evaluation_report`, :mod:`medclf.reporting.figures`) and their results to the writers in
:mod:`medclf.reporting`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf.config import ValidateConfig, parse_label_map, settings_dict
from medclf.data.manifest import Manifest
from medclf.data.transforms import load_image
from medclf.errors import ConfigError, ImageError
from medclf.metrics.summary import evaluation_report, most_confident_errors
from medclf.model.checkpoint import load_checkpoint
from medclf.reporting.files import write_bytes, write_csv, write_json, write_text
from medclf.reporting.tables import (
    evaluation_table,
    interval_text,
    metrics_table,
    write_predictions,
)
from medclf.workflows.inference import output_dir, resolve_thresholds, run_inference

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns; plain values only."""

    out_dir: str
    metrics: dict[str, Any]
    metrics_json: str
    predictions_csv: str
    files: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def evaluate(config: ValidateConfig | None = None, **overrides: Any) -> EvaluationResult:
    """Evaluate a checkpoint on one split and write the full report.

    Preprocessing (labels, image size) comes from the checkpoint, so the numbers match those of
    training: run on the VALIDATION split, the macro AUROC equals the epoch's ``val_auroc``.

    Writes to ``config.out`` (default ``<checkpoint folder>/<stem>_<split>``): ``metrics.json``,
    ``metrics.csv``, ``predictions.csv`` and, unless ``figures`` is off, ``roc_curves.png``,
    ``pr_curves.png``, ``confusion_matrices.png``, ``calibration.png``, ``most_confident_errors.png``
    and a self-contained ``report.html``.

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        An :class:`EvaluationResult` whose ``metrics`` holds ``macro_auroc``, ``accuracy``, per-label
        ``auroc``/``positives``/``negatives`` and the full ``per_label``/``macro``/``micro`` tables.
    """
    config = dataclasses.replace(config, **overrides) if config else ValidateConfig(**overrides)
    if not config.checkpoint or not config.csv:
        raise ConfigError("evaluate needs a checkpoint and a csv")
    checkpoint = load_checkpoint(config.checkpoint, map_location="cpu")
    labels, image_size = list(checkpoint.labels), int(checkpoint.image_size)
    manifest = Manifest.from_csv(
        config.csv, labels, required_splits=(config.split,), label_map=parse_label_map(config.label_map),
        allow_absent_labels=True,
    )  # fmt: skip
    if manifest.absent_labels:
        log.warning("%s lacks label column(s) %s: not evaluated", config.csv, ", ".join(manifest.absent_labels))
    thresholds, threshold_source = resolve_thresholds(config, checkpoint)
    records = manifest.records(config.split, checkpoint.config.get("uncertain", "ignore"))  # as in training
    result, n_records = run_inference(
        checkpoint, records, with_labels=True, device=config.device, amp=config.amp,
        batch_size=config.batch_size, num_workers=config.num_workers, progress=config.progress, desc=config.split,
    )  # fmt: skip
    if result.targets is None or len(result.paths) == 0:
        raise ImageError(f"none of the {n_records} {config.split} images in {config.csv} could be read")
    if result.skipped:
        first = result.skipped[0]
        log.warning("skipped %d unreadable image(s), e.g. %s: %s", len(result.skipped), first["path"], first["error"])

    started = time.perf_counter()
    metrics = evaluation_report(
        result.probs, result.targets, labels, thresholds, n_bootstrap=config.bootstrap, seed=config.seed
    )
    metrics["bootstrap"]["seconds"] = round(time.perf_counter() - started, 3)
    metrics["thresholds_from"] = threshold_source

    out = output_dir(config.out, checkpoint, f"{Path(checkpoint.path).stem}_{config.split.lower()}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "checkpoint": checkpoint.path,
        "checkpoint_epoch": checkpoint.epoch,
        "csv": str(config.csv),
        "split": config.split,
        "absent_labels": list(manifest.absent_labels),
        **metrics,
        "skipped_images": result.skipped,
        "settings": settings_dict(config),
    }
    write_json(out / "metrics.json", summary)
    write_csv(out / "metrics.csv", evaluation_table(metrics))
    write_predictions(
        out / "predictions.csv", result.paths, result.rows, labels, result.probs, result.targets, thresholds,
        skipped=result.skipped,
    )  # fmt: skip
    files = [out / "metrics.json", out / "metrics.csv", out / "predictions.csv"]
    if config.figures:
        files += _write_figures(out, config, summary, result, labels, thresholds, image_size)
    log.info("%s on %s (%s):\n%s", Path(checkpoint.path).name, config.split, config.csv, metrics_table(metrics))
    log.info("wrote %s", ", ".join(str(f) for f in files))
    return EvaluationResult(
        out_dir=str(out),
        metrics=metrics,
        metrics_json=str(out / "metrics.json"),
        predictions_csv=str(out / "predictions.csv"),
        files=[str(f) for f in files],
        skipped=result.skipped,
    )


def _write_figures(
    out: Path,
    config: ValidateConfig,
    metrics: dict[str, Any],
    result: Any,
    labels: list[str],
    thresholds: list[float],
    image_size: int,
) -> list[Path]:
    """The plots, the most-confident-errors grid and report.html."""
    from medclf.reporting import figures
    from medclf.reporting.html import render_report

    probs = result.probs.double().cpu().numpy()
    targets = result.targets.cpu().numpy()
    built = {
        "roc_curves.png": ("ROC curves per label", figures.roc_figure(probs, targets, labels)),
        "pr_curves.png": ("Precision-recall curves per label", figures.pr_figure(probs, targets, labels)),
        "confusion_matrices.png": (
            "Confusion matrices at the operating thresholds",
            figures.confusion_figure(probs, targets, labels, thresholds),
        ),
        "calibration.png": (
            "Calibration (reliability) of the probabilities",
            figures.calibration_figure(probs, targets, labels),
        ),
    }
    label = config.errors_label or labels[int(np.argmax(np.nansum(targets, axis=0)))]
    if label not in labels:
        raise ConfigError(f"errors_label {label!r} is not one of the checkpoint's labels: {', '.join(labels)}")
    built["most_confident_errors.png"] = (
        f"Most confidently wrong images for {label}",
        _errors_figure(result, probs, targets, labels.index(label), label, thresholds, image_size, config.errors_count),
    )
    pngs = []
    for name, (caption, figure) in built.items():
        png = figures.figure_png(figure)  # rendered once, for the file and the page
        write_bytes(out / name, png)
        pngs.append((caption, png))
    macro, micro = metrics["macro"], metrics["micro"]
    ci = _interval(macro["auroc_ci_low"], macro["auroc_ci_high"])
    facts = [
        ("Checkpoint", f"{metrics['checkpoint']} (epoch {metrics['checkpoint_epoch']})"),
        ("Data", f"{metrics['csv']}, split {metrics['split']}: {metrics['n_images']} images"),
        ("Macro AUROC", f"{_num(metrics['macro_auroc'])} {ci} over "
                        f"{metrics['labels_averaged']}/{metrics['n_labels']} labels"),
        ("Micro AUROC", _num(micro["auroc"])),
        ("Macro average precision", _num(macro["average_precision"])),
        ("Thresholds", metrics["thresholds_from"]),
        ("Confidence intervals", f"{metrics['bootstrap']['resamples']} bootstrap resamples of the images, "
                                 f"seed {metrics['bootstrap']['seed']}, percentile 95%"),
        ("Unreadable images", str(len(metrics["skipped_images"]))),
        ("Labels absent from the data", ", ".join(metrics["absent_labels"]) or "none"),
    ]  # fmt: skip
    columns, rows = _html_rows(metrics)
    title = f"medclf evaluation: {Path(metrics['checkpoint']).name} on {metrics['split']}"
    write_text(out / "report.html", render_report(title, facts, columns, rows, pngs))
    return [out / name for name in built] + [out / "report.html"]


def _errors_figure(
    result: Any,
    probs: np.ndarray,
    targets: np.ndarray,
    j: int,
    label: str,
    thresholds: list[float],
    image_size: int,
    count: int,
) -> Any:
    from medclf.reporting.figures import image_grid_figure

    picked = most_confident_errors(probs[:, j], targets[:, j], thresholds[j], count)
    images, captions = [], []
    for i in picked:
        images.append(load_image(result.paths[i], image_size)[0].numpy())
        kind = "false positive" if targets[i, j] == 0 else "false negative"
        captions.append(f"{Path(result.paths[i]).name}\n{kind}: true {int(targets[i, j])}\np = {probs[i, j]:.3f}")
    return image_grid_figure(images, captions, f"{label}: most confidently wrong (threshold {thresholds[j]:.3f})")


def _html_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = ["label", "AUROC [95% CI]", "AP", "positives", "negatives", "threshold", "sensitivity",
               "specificity", "PPV", "NPV", "F1", "accuracy"]  # fmt: skip
    rows = []
    for row in metrics["per_label"]:
        rows.append([
            row["label"], f"{_num(row['auroc'])} {_interval(row['auroc_ci_low'], row['auroc_ci_high'])}".strip(),
            _num(row["average_precision"]), str(row["positives"]), str(row["negatives"]), _num(row["threshold"]),
            _num(row["sensitivity"]), _num(row["specificity"]), _num(row["ppv"]), _num(row["npv"]),
            _num(row["f1"]), _num(row["accuracy"]),
        ])  # fmt: skip
    for name in ("macro", "micro"):
        avg = metrics[name]
        ci = _interval(avg.get("auroc_ci_low"), avg.get("auroc_ci_high"))
        rows.append([
            f"{name} average", f"{_num(avg['auroc'])} {ci}".strip(), _num(avg["average_precision"]), "", "", "",
            _num(avg["sensitivity"]), _num(avg["specificity"]), _num(avg["ppv"]), _num(avg["npv"]),
            _num(avg["f1"]), _num(avg["accuracy"]),
        ])  # fmt: skip
    return columns, rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(low: float | None, high: float | None) -> str:
    return interval_text(low, high, digits=3)
