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
import torch

from medclf.config import ValidateConfig, parse_label_map, settings_dict
from medclf.data.manifest import Manifest
from medclf.data.sources import read_manifests
from medclf.data.transforms import load_image
from medclf.engine.loops import Inference
from medclf.errors import ConfigError, ManifestError
from medclf.metrics.curves import confident_errors_by_kind, confusion_from_calls
from medclf.metrics.summary import evaluation_report, micro_average
from medclf.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from medclf.reporting.files import write_bytes, write_csv, write_json, write_text
from medclf.reporting.provenance import changed_manifests, provenance
from medclf.reporting.result_folder import new_result_set
from medclf.reporting.tables import (
    evaluation_table,
    interval_text,
    metrics_table,
    write_predictions,
)
from medclf.workflows.analyses import (
    calibration_block,
    infer_split,
    reported_and_calls,
    subgroup_block,
    subgroup_specs,
    temperatures_for,
    tta_block,
)
from medclf.workflows.inference import output_dir, resolve_thresholds, tta_for

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
    labels = list(checkpoint.labels)
    out = output_dir(config.out, checkpoint, f"{Path(checkpoint.path).stem}_{config.split.lower()}")
    manifest = _read_manifest(config, labels, checkpoint.config.get("uncertain", "ignore"))
    with new_result_set(out) as staging:  # the previous results stay whole until this set is complete
        specs = subgroup_specs(config, manifest)
        temperatures, temperature_source = temperatures_for(config, checkpoint, manifest)
        thresholds, shown_thresholds, threshold_source = resolve_thresholds(config, checkpoint, temperatures)
        result, records = infer_split(config, checkpoint, manifest, config.split, config.split)
        probs, calls = reported_and_calls(result, temperatures, thresholds)
        metrics = report_metrics(config, result, probs, calls, labels, shown_thresholds)
        metrics["thresholds_from"] = threshold_source
        metrics["calibration"] = calibration_block(result, probs, labels, temperatures, temperature_source)
        metrics["tta"] = tta_block(result, labels, len(tta_for(checkpoint))) if config.tta else None
        metrics["subgroups"] = subgroup_block(specs, manifest, config, result, labels, thresholds)

        summary = {
            "checkpoint": checkpoint.path, "checkpoint_epoch": checkpoint.epoch, "csv": ", ".join(config.csv),
            "split": config.split, "absent_labels": list(manifest.absent_labels), **metrics,
            "skipped_images": result.skipped, "settings": settings_dict(config),
            "provenance": provenance(config.csv, checkpoint.path, result.logits.device),
        }  # fmt: skip
        for path in changed_manifests(checkpoint.get("provenance"), summary["provenance"]):
            log.warning("%s changed since this checkpoint was trained on it (its SHA-256 differs)", path)
        files = write_evaluation_outputs(
            staging, config, checkpoint, summary, result, (probs, calls), (thresholds, shown_thresholds), temperatures
        )
        if config.embeddings:
            from medclf.workflows.embeddings import write_embeddings  # scikit-learn's t-SNE, only when asked

            files += write_embeddings(staging, config, checkpoint, records, (result, probs))
    files = [out / f.relative_to(staging) for f in files]
    log.info("%s on %s (%s):\n%s", Path(checkpoint.path).name, config.split, summary["csv"], metrics_table(metrics))
    _log_analyses(metrics)
    log.info("wrote %s", ", ".join(str(f) for f in files))
    return EvaluationResult(
        out_dir=str(out),
        metrics=metrics,
        metrics_json=str(out / "metrics.json"),
        predictions_csv=str(out / "predictions.csv"),
        files=[str(f) for f in files],
        skipped=result.skipped,
    )


def _read_manifest(config: ValidateConfig, labels: list[str], uncertain: str) -> Manifest:
    """The CSV(s) with the checkpoint's labels; absent label columns are allowed and named.

    Raises:
        ManifestError: also when no image of the split has a known label: every number would be n/a.
    """
    manifest = read_manifests(
        config.csv, labels, required_splits=(config.split,), label_map=parse_label_map(config.label_map),
        allow_absent_labels=True,
    )  # fmt: skip
    if manifest.absent_labels:
        absent = ", ".join(manifest.absent_labels)
        log.warning("%s lacks label column(s) %s: not evaluated", ", ".join(config.csv), absent)
    if not np.isfinite(manifest.targets(config.split, uncertain)).any():
        uncertain_too = " or -1 (uncertain, ignored as in training)" if uncertain == "ignore" else ""
        why = f"no image has a known label (every label cell is blank{uncertain_too}): nothing to evaluate"
        raise ManifestError(", ".join(config.csv), [f"split {config.split}: {why}; predict scores unlabeled images"])
    return manifest


def report_metrics(
    config: ValidateConfig,
    result: Inference,
    probs: np.ndarray,
    calls: np.ndarray,
    labels: list[str],
    shown_thresholds: list[float],
    clusters: np.ndarray | None = None,
    rank_reported: bool = False,
) -> dict[str, Any]:
    """The evaluation report: ranking metrics on the raw outputs, counts of ``calls``, pooled AUROC as reported
    (``clusters``: each image's patient index, for a bootstrap over patients; ``rank_reported``: rank on the
    reported probabilities, for pooled folds)."""
    started = time.perf_counter()
    # Ranking metrics use the raw outputs: temperature scaling keeps each label's order, and float32
    # sigmoids of sharpened logits could tie. Not so for pooled folds: each fold has its own temperatures,
    # so the pooled order is that of the reported probabilities, the ones the predictions file holds.
    reported = torch.from_numpy(probs)
    ranked = reported if rank_reported else result.probs
    metrics = evaluation_report(
        ranked, result.targets, labels, shown_thresholds, calls=calls, n_bootstrap=config.bootstrap,
        seed=config.seed, clusters=clusters,
    )  # fmt: skip
    # Pooled AUROC/AP on the reported (calibrated) probabilities; the counts and their intervals are the same.
    pooled = micro_average(reported, result.targets.cpu(), calls)
    metrics["micro"] = {**metrics["micro"], **pooled}
    metrics["bootstrap"]["seconds"] = round(time.perf_counter() - started, 3)
    return metrics


def write_evaluation_outputs(
    out: Path,
    config: ValidateConfig,
    checkpoint: Checkpoint,
    summary: dict[str, Any],
    result: Inference,
    reported: tuple[np.ndarray, np.ndarray],
    both_thresholds: tuple[list[float], list[float]],
    temperatures: list[float] | None,
    predictions_name: str = "predictions.csv",
) -> list[Path]:
    """metrics.json/.csv, predictions.csv, subgroups.csv, a calibrated checkpoint copy, figures and report.

    ``reported`` is (the reported probabilities, the calls); ``both_thresholds`` is (on the raw outputs, on
    the reported probabilities)."""
    labels, (probs, calls) = list(checkpoint.labels), reported
    write_json(out / "metrics.json", summary)
    write_csv(out / "metrics.csv", evaluation_table(summary))
    write_predictions(
        out / predictions_name, result.paths, result.rows, labels, torch.from_numpy(probs), result.targets,
        calls, skipped=result.skipped,
    )  # fmt: skip
    files = [out / "metrics.json", out / "metrics.csv", out / predictions_name]
    if summary["subgroups"]:
        write_csv(out / "subgroups.csv", summary["subgroups"]["rows"])
        files.append(out / "subgroups.csv")
    if config.calibrate and temperatures is not None:
        path = out / f"{Path(checkpoint.path).stem}_calibrated.pt"
        save_checkpoint(path, dataclasses.replace(checkpoint, temperatures=list(temperatures)))
        files.append(path)
    if config.figures:
        files += _write_figures(
            out, config, summary, result, reported, labels, both_thresholds, int(checkpoint.image_size)
        )
    return files


def _log_analyses(metrics: dict[str, Any]) -> None:
    calibration = metrics["calibration"]
    before, after = calibration["before"], calibration["after"]
    text = f"ECE {_num(before['ece']['macro'])}, Brier {_num(before['brier']['macro'])}"
    if after:
        text += f" -> {_num(after['ece']['macro'])}, {_num(after['brier']['macro'])} after temperature scaling"
    log.info("calibration (macro over labels): %s; temperatures: %s", text, calibration["temperatures_from"])
    if metrics["tta"]:
        tta = metrics["tta"]
        log.info("test-time augmentation (%d views): macro AUROC %s without, %s with (change %+.4f)",
                 tta["views"], _num(tta["macro_auroc_without"]), _num(tta["macro_auroc_with"]),
                 tta["macro_change"] or 0.0)  # fmt: skip
    subgroups = metrics["subgroups"] or {"gaps": []}
    no_interval = "[no interval: a group too small]" if subgroups.get("bootstrap", {}).get("resamples") else ""
    for gap in subgroups["gaps"]:
        if gap["label"] == "macro" and gap["difference"] is not None:
            log.info("subgroups by %s: macro AUROC %s (%s) vs %s (%s), gap %.3f %s", gap["attribute"],
                     _num(gap["high_auroc"]), gap["high_group"], _num(gap["low_auroc"]), gap["low_group"],
                     gap["difference"], _interval(gap["ci_low"], gap["ci_high"]) or no_interval)  # fmt: skip


def _write_figures(
    out: Path,
    config: ValidateConfig,
    metrics: dict[str, Any],
    result: Inference,
    reported: tuple[np.ndarray, np.ndarray],
    labels: list[str],
    both_thresholds: tuple[list[float], list[float]],
    image_size: int,
) -> list[Path]:
    """The plots, the most-confident-errors grid and report.html (``reported``: probabilities and calls)."""
    from medclf.reporting import figures
    from medclf.reporting.evaluation_page import evaluation_page
    from medclf.reporting.figures_calibration import calibration_figure

    raw_thresholds, thresholds = both_thresholds
    probs, calls = reported
    raw = result.probs.double().cpu().numpy()
    targets = result.targets.cpu().numpy()
    calibration = metrics["calibration"]
    intervals = [(row.get("auroc_ci_low"), row.get("auroc_ci_high")) for row in metrics["per_label"]]
    points = {"thresholds": raw_thresholds, "shown_thresholds": thresholds}  # curves on the raw outputs
    built = {
        "roc_curves.png": (
            "ROC curves per label: AUROC with its bootstrap interval; red dot: the operating threshold",
            figures.roc_figure(raw, targets, labels, intervals=intervals, **points),
        ),
        "pr_curves.png": (
            "Precision-recall curves per label; red dot: the operating threshold",
            figures.pr_figure(raw, targets, labels, **points),
        ),
        "confusion_matrices.png": (
            "Confusion matrices at the operating thresholds, rows normalised per true class",
            figures.confusion_figure(confusion_from_calls(calls, targets), labels, thresholds),
        ),
        "calibration.png": (
            "Calibration (reliability) per label with its ECE and the images per bin"
            + (", before (dashed) and after temperature scaling" if calibration["applied"] else ""),
            calibration_figure(probs, targets, labels, raw_probs=raw if calibration["applied"] else None),
        ),
    }
    if metrics["subgroups"]:
        from medclf.reporting.forest import forest_figure

        overall = {row["label"]: row["auroc"] for row in metrics["per_label"]} | {"macro": metrics["macro"]["auroc"]}
        forest = forest_figure(metrics["subgroups"]["rows"], labels, overall)
        built["subgroups_forest.png"] = ("AUROC per subgroup with 95% bootstrap intervals", forest)
    label = config.errors_label or labels[int(np.argmax(np.nansum(targets, axis=0)))]
    if label not in labels:
        raise ConfigError(f"errors_label {label!r} is not one of the checkpoint's labels: {', '.join(labels)}")
    built["most_confident_errors.png"] = (
        f"Most confident false positives and false negatives for {label}",
        _errors_figure(
            result, reported, targets, labels.index(label), (label, thresholds), image_size, config.errors_count
        ),
    )
    pngs = []
    for name, (caption, figure) in built.items():
        png = figures.figure_png(figure)  # rendered once, for the file and the page
        write_bytes(out / name, png)
        pngs.append((caption, png))
    write_text(out / "report.html", evaluation_page(metrics, pngs))
    return [out / name for name in built] + [out / "report.html"]


def _errors_figure(
    result: Any,
    reported: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    j: int,
    label_thresholds: tuple[str, list[float]],
    image_size: int,
    count: int,
) -> Any:
    """The most confident false positives and false negatives of one label, up to half of ``count`` each."""
    from medclf.reporting.figures_errors import errors_figure

    (probs, calls), (label, thresholds) = reported, label_thresholds
    false_pos, false_neg = confident_errors_by_kind(probs[:, j], targets[:, j], calls[:, j], (count + 1) // 2)

    def shown(indices: list[int]) -> tuple[list[np.ndarray], list[str]]:
        images = [load_image(result.paths[i], image_size)[0].numpy() for i in indices]
        return images, [f"{Path(result.paths[i]).name}\np = {probs[i, j]:.3f}" for i in indices]

    matrix = confusion_from_calls(calls[:, [j]], targets[:, [j]])[0]
    title = f"{label}: most confident errors at threshold {thresholds[j]:.3f}"
    return errors_figure(shown(false_pos), shown(false_neg), title, totals=(int(matrix[0, 1]), int(matrix[1, 0])))


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(low: float | None, high: float | None) -> str:
    return interval_text(low, high, digits=3)
