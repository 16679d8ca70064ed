"""The ``learning_curve`` workflow: AUROC against the number of labelled images.

Each point trains on a seeded, patient-wise, label-stratified share of TRAIN (``--train-fraction``), once per
repeat (repeat r uses seed ``seed + r``), on the fixed TRAIN/VALIDATION split or, with ``folds``, by
cross-validation (:func:`~medclf.workflows.crossval.crossval`, the share taken of each fold's TRAIN). A point
is scored on VALIDATION at its best epoch (the pooled out-of-fold predictions with ``folds``) with a
bootstrap interval; ``learning_curve.csv`` and ``learning_curve.png`` hold the curve. Points already trained
are passed over, so running the command again continues an interrupted curve.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf.config import (
    CrossvalConfig,
    LearningCurveConfig,
    TrainConfig,
    ValidateConfig,
    parse_fractions,
    settings_dict,
)
from medclf.config.recipes import with_recipe
from medclf.data.folds import patient_ids, study_manifest
from medclf.data.sources import read_manifests
from medclf.errors import ConfigError
from medclf.model.checkpoint import holds_checkpoint
from medclf.model.ensemble import is_study
from medclf.reporting.files import make_folder, save_figure, write_csv
from medclf.reporting.mlflow_log import open_tracker
from medclf.reporting.run_log import default_run_dir
from medclf.reporting.study_figures import learning_curve_figure
from medclf.workflows.crossval import crossval
from medclf.workflows.train import train
from medclf.workflows.validate import evaluate

log = logging.getLogger(__name__)


@dataclass
class LearningCurveResult:
    """What :func:`learning_curve` returns: one row per fraction (means over the repeats), and every run."""

    out_dir: str
    points: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    interrupted_by: str | None = None


def learning_curve(config: LearningCurveConfig | None = None, **overrides: Any) -> LearningCurveResult:
    """Train every (fraction, repeat) point, score it, and write the curve's table and figure.

    Raises:
        MedclfError: bad manifests or settings, with one message naming them.
    """
    config = dataclasses.replace(config, **overrides) if config else LearningCurveConfig(**with_recipe(overrides))
    if not config.csv:
        raise ConfigError("a manifest is required (LearningCurveConfig.csv / --csv)")
    out = Path(config.out or default_run_dir()).absolute()
    make_folder(out, "the learning-curve folder")
    tracker = open_tracker(config.mlflow, out.name, settings_dict(config), curve=str(out))
    result = LearningCurveResult(str(out))
    try:
        for fraction in parse_fractions(config.fractions):
            for repeat in range(config.repeats):
                run = _point(config, out, fraction, repeat)
                if run.get("interrupted_by"):
                    result.interrupted_by = run["interrupted_by"]
                    log.warning("curve stopped at fraction %g, repeat %d; run the same command to go on", fraction,
                                repeat + 1)  # fmt: skip
                    return result
                result.runs.append(run)
        result.points = curve_rows(result.runs, list(config.labels))
        write_csv(out / "learning_curve.csv", result.points)
        write_csv(out / "learning_curve_runs.csv", result.runs)
        save_figure(out / "learning_curve.png", learning_curve_figure(result.points, list(config.labels)))
        if tracker is not None:
            for i, point in enumerate(result.points):
                tracker.log_metrics(
                    {"macro_auroc": point["macro_auroc"], "train_images": point["train_images"]}, step=i
                )
            tracker.log_files(out / name for name in ("learning_curve.csv", "learning_curve_runs.csv",
                                                      "learning_curve.png"))  # fmt: skip
        log.info("learning curve: %s", ", ".join(f"{p['train_images']:.0f} images -> {_num(p['macro_auroc'])}"
                                                  for p in result.points))  # fmt: skip
        return result
    finally:
        if tracker is not None:
            tracker.end("KILLED" if result.interrupted_by else "FINISHED")


def _point(config: LearningCurveConfig, out: Path, fraction: float, repeat: int) -> dict[str, Any]:
    """Train and score one point; returns its row (sizes, macro and per-label AUROC, interval)."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    run_dir = out / f"fraction_{fraction:g}_repeat_{repeat + 1}"
    values.update(train_fraction=fraction, seed=config.seed + repeat, out=str(run_dir), resume="")
    row: dict[str, Any] = {"fraction": fraction, "repeat": repeat + 1, "run": str(run_dir)}
    if config.folds:
        if is_study(run_dir):
            values["resume"] = str(run_dir)
        study = crossval(CrossvalConfig(**values, folds=config.folds))
        if study.interrupted_by:
            return {"interrupted_by": study.interrupted_by}
        metrics = _read_metrics(run_dir / "metrics.json")
        row.update(_train_sizes(config, fraction, config.seed + repeat, run_dir / "folds.csv", config.folds))
    else:
        values["resume"] = str(run_dir) if holds_checkpoint(run_dir) else ""
        trained = train(TrainConfig(**values))
        if trained.interrupted_by:
            return {"interrupted_by": trained.interrupted_by}
        metrics = evaluate(ValidateConfig(
            checkpoint=trained.best_checkpoint, csv=list(config.csv), split="VALIDATION", seed=config.seed,
            device=config.device, num_workers=config.num_workers, progress=False, out=str(run_dir / "best_validation"),
        )).metrics  # fmt: skip
        row.update(_train_sizes(config, fraction, config.seed + repeat))
    macro = metrics["macro"]
    row.update(macro_auroc=metrics["macro_auroc"], macro_ci_low=macro.get("auroc_ci_low"),
               macro_ci_high=macro.get("auroc_ci_high"),
               **{f"auroc_{r['label']}": r.get("auroc") for r in metrics["per_label"]})  # fmt: skip
    return row


def _train_sizes(
    config: LearningCurveConfig, fraction: float, seed: int, folds_csv: Path | None = None, folds: int = 0
) -> dict[str, float]:
    """Labelled TRAIN images and patients a point trained on (with folds: the mean over its folds)."""
    manifest = read_manifests(config.csv, config.labels, required_splits=("TRAIN", "VALIDATION"))
    sizes = []
    for fold in range(1, folds + 1) if folds else [0]:
        part = study_manifest(manifest, str(folds_csv) if fold else "", fold, fraction, config.patient_column, seed,
                              config.uncertain).select("TRAIN")  # fmt: skip
        sizes.append((len(part), len(set(patient_ids(part, config.patient_column)))))
    images, patients = np.mean(sizes, axis=0)
    return {"train_images": float(images), "train_patients": float(patients)}


def _read_metrics(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def curve_rows(runs: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """One row per fraction: the mean over its repeats of every number (and the spread of the macro AUROC)."""
    rows = []
    for fraction in sorted({r["fraction"] for r in runs}):
        mine = [r for r in runs if r["fraction"] == fraction]
        row: dict[str, Any] = {"fraction": fraction, "repeats": len(mine)}
        for key in ("train_images", "train_patients", "macro_auroc", "macro_ci_low", "macro_ci_high",
                    *[f"auroc_{name}" for name in labels]):  # fmt: skip
            values = [float(r[key]) for r in mine if r.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        aurocs = [float(r["macro_auroc"]) for r in mine if r.get("macro_auroc") is not None]
        row["macro_auroc_sd"] = float(np.std(aurocs, ddof=1)) if len(aurocs) > 1 else None
        rows.append(row)
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
