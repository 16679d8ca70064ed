"""A cross-validation study's evaluation: the folds' out-of-fold predictions pooled and reported.

Each fold's ``best.pt`` scores its held-out fold (its own temperatures and thresholds, the calls made once
by :func:`~medclf.metrics.curves.decisions`); the pooled predictions get validate's outputs
(:func:`~medclf.workflows.validate.write_evaluation_outputs`) with bootstrap intervals over patients, and
the per-fold table (AUROC per label and macro, mean and standard deviation) gets a CSV and a figure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclf.config import CrossvalConfig, ValidateConfig, settings_dict
from medclf.data.folds import patient_ids, study_manifest
from medclf.data.manifest import Manifest
from medclf.engine.loops import Inference, check_finite
from medclf.metrics.auroc import classification_metrics
from medclf.metrics.calibration import scale_thresholds
from medclf.model.checkpoint import Checkpoint, load_checkpoint
from medclf.reporting.files import save_figure, write_csv
from medclf.reporting.provenance import provenance
from medclf.reporting.study_figures import folds_figure
from medclf.reporting.tables import metrics_table
from medclf.workflows.analyses import calibration_block, reported_and_calls
from medclf.workflows.inference import run_inference
from medclf.workflows.validate import report_metrics, write_evaluation_outputs

log = logging.getLogger(__name__)

#: Bootstrap resamples (of patients) for the pooled out-of-fold intervals.
BOOTSTRAP = 1000


@dataclass
class FoldPredictions:
    """One fold's best epoch on its held-out images."""

    fold: int
    checkpoint: Checkpoint
    result: Inference  # raw logits
    probs: np.ndarray  # as reported: calibrated with the fold's temperatures when it has them
    calls: np.ndarray
    shown_thresholds: list[float]


def fold_predictions(
    config: CrossvalConfig, manifest: Manifest, folds_csv: Path, fold: int, run_dir: Path
) -> FoldPredictions:
    """The out-of-fold predictions of fold ``fold``'s ``best.pt``."""
    checkpoint = load_checkpoint(run_dir / "best.pt")
    held = study_manifest(manifest, str(folds_csv), fold, 1.0, config.patient_column, config.seed)
    result, _ = run_inference(
        checkpoint, held.records("VALIDATION", config.uncertain), with_labels=True, device=config.device,
        amp=config.amp, batch_size=config.batch_size, num_workers=config.num_workers, progress=config.progress,
        desc=f"fold {fold} out-of-fold",
    )  # fmt: skip
    check_finite(result, f"fold {fold} out-of-fold")
    temperatures = list(checkpoint.temperatures) or None
    thresholds = list(checkpoint.thresholds) or [0.5] * len(checkpoint.labels)
    probs, calls = reported_and_calls(result, temperatures, thresholds)
    shown = scale_thresholds(thresholds, temperatures) if temperatures else thresholds
    return FoldPredictions(fold, checkpoint, result, probs, calls, shown)


def pooled(folds: list[FoldPredictions]) -> Inference:
    """The folds' raw outputs as one :class:`Inference`, fold after fold."""
    parts = [f.result for f in folds]
    return Inference(
        logits=torch.cat([p.logits.cpu() for p in parts]), targets=torch.cat([p.targets.cpu() for p in parts]),
        paths=[x for p in parts for x in p.paths], rows=[x for p in parts for x in p.rows],
        indices=torch.cat([p.indices.cpu() for p in parts]), loss=None, skipped=[x for p in parts for x in p.skipped],
    )  # fmt: skip


def fold_rows(folds: list[FoldPredictions], labels: list[str], patients: dict[str, str]) -> list[dict[str, Any]]:
    """AUROC per label and macro for each fold, then their mean and standard deviation over the folds."""
    rows = []
    for f in folds:
        m = classification_metrics(f.result.probs.cpu(), f.result.targets.cpu(), labels)
        rows.append({"fold": str(f.fold), "images": len(f.result.paths),
                     "patients": len({patients[p] for p in f.result.paths}), "best_epoch": f.checkpoint.best_epoch,
                     "macro_auroc": m["macro_auroc"], **{f"auroc_{k}": v for k, v in m["auroc"].items()}})  # fmt: skip
    numeric = [k for k in rows[0] if k != "fold"]
    table = np.array([[np.nan if r[k] is None else float(r[k]) for k in numeric] for r in rows], dtype=np.float64)
    with np.errstate(all="ignore"):
        counts = (~np.isnan(table)).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(table, axis=0) / np.maximum(counts, 1), np.nan)
        sd = np.array([np.nanstd(table[:, j], ddof=1) if counts[j] > 1 else np.nan for j in range(len(numeric))])
    for name, values in (("mean", mean), ("sd", sd)):
        rows.append(
            {"fold": name, **{k: None if np.isnan(v) else float(v) for k, v in zip(numeric, values, strict=True)}}
        )
    return rows


def write_study_evaluation(
    staging: Path, config: CrossvalConfig, manifest: Manifest, folds: list[FoldPredictions], study_dir: Path
) -> dict[str, Any]:
    """The pooled out-of-fold evaluation and the per-fold table in ``staging``; returns the summary."""
    labels = list(folds[0].checkpoint.labels)
    frame = manifest.frame
    patients = dict(zip(frame["image"].astype(str), patient_ids(frame, config.patient_column), strict=True))
    result = pooled(folds)
    probs = np.concatenate([f.probs for f in folds])
    calls = np.concatenate([f.calls for f in folds])
    clusters = np.unique([patients[p] for p in result.paths], return_inverse=True)[1]
    shown = np.mean([f.shown_thresholds for f in folds], axis=0).tolist()
    raw = np.mean([list(f.checkpoint.thresholds) or [0.5] * len(labels) for f in folds], axis=0).tolist()
    view = ValidateConfig(checkpoint=str(study_dir), csv=list(config.csv), split="VALIDATION", bootstrap=BOOTSTRAP,
                          seed=config.seed, device=config.device, progress=False)  # fmt: skip
    metrics = report_metrics(view, result, probs, calls, labels, shown, clusters=clusters, rank_reported=True)
    metrics["thresholds_from"] = "each fold's (Youden's J on its held-out fold at its best epoch); shown: their mean"
    with_temps = any(f.checkpoint.temperatures for f in folds)
    source = "each fold's own, fitted on its held-out fold" if with_temps else "none"
    # "after" compares the reported probabilities (each fold's temperatures) with the raw ones
    metrics["calibration"] = calibration_block(result, probs, labels, [1.0] * len(labels) if with_temps else None,
                                               source)  # fmt: skip
    metrics["calibration"]["temperatures"] = None  # one set per fold, in each fold's best.pt
    metrics["tta"], metrics["subgroups"] = None, None
    rows = fold_rows(folds, labels, patients)
    summary = {
        "checkpoint": str(study_dir), "checkpoint_epoch": "best of each fold", "csv": ", ".join(config.csv),
        "split": f"out-of-fold, {len(folds)} folds of TRAIN + VALIDATION", "absent_labels": [], **metrics,
        "folds": rows, "skipped_images": result.skipped, "settings": settings_dict(config),
        "provenance": provenance(config.csv, device=result.logits.device),
    }  # fmt: skip
    files = write_evaluation_outputs(staging, view, folds[0].checkpoint, summary, result, (probs, calls), (raw, shown),
                                     None, predictions_name="oof_predictions.csv")  # fmt: skip
    write_csv(staging / "folds_metrics.csv", rows)
    save_figure(staging / "folds_auroc.png", folds_figure(rows, labels))
    log.info("out-of-fold predictions of %d folds (%d images):\n%s", len(folds), len(result.paths),
             metrics_table(metrics))  # fmt: skip
    return {"summary": summary, "files": [*files, staging / "folds_metrics.csv", staging / "folds_auroc.png"]}
