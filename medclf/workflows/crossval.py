"""The ``crossval`` workflow: k patient-wise folds over TRAIN + VALIDATION, one training run per fold, the
pooled out-of-fold evaluation, and the fold ensemble on TEST.

The study folder holds ``folds.csv`` (image, patient, fold), ``study.json`` (format, settings, results),
``fold_k/`` (ordinary run folders, trained by :func:`~medclf.workflows.train.train` with ``--folds-csv`` and
``--fold k``), the out-of-fold outputs (:mod:`medclf.workflows.study_report`) and ``test_ensemble/``.
Under ``torchrun`` every rank runs every fold together (one process group for the whole study); rank 0
writes the study's files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medclf import __version__
from medclf.config import CrossvalConfig, TrainConfig, ValidateConfig, settings_dict
from medclf.config.recipes import with_recipe
from medclf.data.folds import STUDY_SPLITS, assign_folds, check_folds, fold_sizes, patient_ids, read_folds
from medclf.data.manifest import Manifest
from medclf.data.sources import read_manifests
from medclf.engine.distributed import World, barrier, broadcast, close_world, init_world
from medclf.errors import ConfigError
from medclf.model.checkpoint import holds_checkpoint
from medclf.model.ensemble import STUDY_FILE, STUDY_FORMAT, STUDY_VERSION, is_study, read_study
from medclf.reporting.files import make_folder, write_csv, write_json
from medclf.reporting.mlflow_log import open_tracker
from medclf.reporting.result_folder import new_result_set
from medclf.reporting.run_log import default_run_dir
from medclf.workflows.study_report import fold_predictions, write_study_evaluation
from medclf.workflows.train import train
from medclf.workflows.validate import evaluate

log = logging.getLogger(__name__)


@dataclass
class CrossvalResult:
    """What :func:`crossval` returns; plain values only."""

    study_dir: str
    folds: list[dict[str, Any]] = field(default_factory=list)  # the per-fold table, then its mean and sd rows
    oof: dict[str, Any] = field(default_factory=dict)  # pooled out-of-fold macro AUROC and its interval
    test: dict[str, Any] | None = None  # the fold ensemble on TEST, when the manifest has TEST images
    finished_before: bool = False
    interrupted_by: str | None = None


def crossval(config: CrossvalConfig | None = None, **overrides: Any) -> CrossvalResult:
    """Cross-validate: train one run per fold, then evaluate the pooled out-of-fold predictions.

    Args:
        config: Settings (every train setting, plus ``folds`` and ``folds_csv``); keyword arguments override
            its fields (or build it when it is None). ``resume`` continues the study in that folder.

    Raises:
        MedclfError: bad manifests, settings or folds files, an older study, with one message naming them.
    """
    config = dataclasses.replace(config, **overrides) if config else CrossvalConfig(**with_recipe(overrides))
    if not config.csv:
        raise ConfigError("a manifest is required (CrossvalConfig.csv / --csv)")
    world, _ = init_world(config.device)
    try:
        return _study(config, world)
    finally:
        close_world(world)


def _study(config: CrossvalConfig, world: World) -> CrossvalResult:
    config = dataclasses.replace(
        config, csv=[os.path.abspath(p) for p in config.csv], folds_csv=_absolute(config.folds_csv),
        pretrained=_absolute(config.pretrained), cache_dir=_absolute(config.cache_dir),
    )  # fmt: skip
    study = Path(broadcast(str(Path(config.resume or config.out or default_run_dir()).absolute()), world))
    saved = _check_study_folder(study, bool(config.resume))
    same = {**settings_dict(config), "resume": "", "out": str(study)} == saved.get("settings")
    if saved.get("complete") and same:  # with other settings (e.g. more --epochs) the folds go on
        log.info("%s is finished: all %d folds are trained and evaluated; nothing was trained", study, saved["folds"])
        return CrossvalResult(str(study), finished_before=True, **saved.get("results", {}))
    manifest = read_manifests(config.csv, config.labels, required_splits=STUDY_SPLITS)
    folds_csv, n_folds = _folds_file(config, manifest, study, world)
    record = {"format": STUDY_FORMAT, "format_version": STUDY_VERSION, "medclf_version": __version__,
              "folds": n_folds, "settings": {**settings_dict(config), "resume": "", "out": str(study)}}  # fmt: skip
    if world.main:
        write_json(study / STUDY_FILE, {**record, "complete": False})
    tracker = open_tracker(config.mlflow, study.name, record["settings"], study=str(study)) if world.main else None
    try:
        result = _folds_then_evaluation(config, world, manifest, study, folds_csv, n_folds, tracker)
        if world.main and not result.interrupted_by:
            results = {"folds": result.folds, "oof": result.oof, "test": result.test}
            write_json(study / STUDY_FILE, {**record, "complete": True, "results": results})
        if tracker is not None:
            tracker.log_files([study / STUDY_FILE])
            tracker.end("KILLED" if result.interrupted_by else "FINISHED")
        return result
    finally:
        if tracker is not None:
            tracker.end("FAILED")  # only when not ended above


def _folds_then_evaluation(config: CrossvalConfig, world: World, manifest: Manifest, study: Path, folds_csv: Path,
                           n_folds: int, tracker: Any) -> CrossvalResult:  # fmt: skip
    """Train every fold (a finished fold is passed over), then rank 0 evaluates while the others wait."""
    result = CrossvalResult(str(study))
    for k in range(1, n_folds + 1):
        run = train(fold_config(config, study, folds_csv, k))
        if run.interrupted_by:
            log.warning("study stopped in fold %d; continue with: python -m medclf.crossval --resume %s", k, study)
            result.interrupted_by = run.interrupted_by
            return result
    if world.main:
        predictions = [
            fold_predictions(config, manifest, folds_csv, k, study / f"fold_{k}") for k in range(1, n_folds + 1)
        ]
        with new_result_set(study, "the study folder") as staging:
            written = write_study_evaluation(staging, config, manifest, predictions, study)
        summary = written["summary"]
        result.folds = summary["folds"]
        result.oof = {"macro_auroc": summary["macro_auroc"], "ci_low": summary["macro"].get("auroc_ci_low"),
                      "ci_high": summary["macro"].get("auroc_ci_high"),
                      "images": sum(int(r["images"]) for r in result.folds[:n_folds])}  # fmt: skip
        if not manifest.select("TEST").empty:
            result.test = _test_ensemble(config, study)
        if tracker is not None:
            test = {"test_macro_auroc": result.test["macro_auroc"]} if result.test else {}
            tracker.log_metrics({"oof_macro_auroc": result.oof["macro_auroc"], "oof_ci_low": result.oof["ci_low"],
                                 "oof_ci_high": result.oof["ci_high"], **test})  # fmt: skip
            tracker.log_files(study / name for name in ("metrics.json", "metrics.csv", "report.html", "folds.csv",
                                                         "folds_metrics.csv", "folds_auroc.png"))  # fmt: skip
    barrier(world)
    return result


def _absolute(path: str) -> str:
    return os.path.abspath(path) if path else path


def fold_config(config: CrossvalConfig, study: Path, folds_csv: Path, fold: int) -> TrainConfig:
    """Fold ``fold``'s training settings: the study's, its run folder, its fold; resumed if it has a checkpoint."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    run_dir = study / f"fold_{fold}"
    resume = str(run_dir) if holds_checkpoint(run_dir) else ""
    values.update(out=str(run_dir), folds_csv=str(folds_csv), fold=fold, resume=resume)
    return TrainConfig(**values)


def _check_study_folder(study: Path, resume: bool) -> dict[str, Any]:
    """The saved study when resuming (refused when it is not one); a new study must not overwrite one."""
    if resume:
        if not is_study(study):
            raise ConfigError(f"{study} is not a cross-validation study (no {STUDY_FILE}); start one with --out")
        return read_study(study)
    if is_study(study):
        raise ConfigError(f"{study} already holds a study: continue it with --resume {study}, or choose another --out")
    return {}


def _folds_file(config: CrossvalConfig, manifest: Manifest, study: Path, world: World) -> tuple[Path, int]:
    """The study's ``folds.csv``: given (``--folds-csv``), kept (a resumed study) or drawn now; and its folds."""
    target = study / "folds.csv"
    rows = manifest.frame[manifest.frame["split"].isin(STUDY_SPLITS)]
    images = rows["image"].astype(str).reset_index(drop=True)
    patients = patient_ids(rows, config.patient_column)
    source = Path(config.folds_csv) if config.folds_csv else target if target.is_file() else None
    if source is not None:
        folds = check_folds(source, read_folds(source), images).to_numpy()
    else:
        targets = manifest.targets(None, config.uncertain)[rows.index.to_numpy()]
        folds = assign_folds(patients, targets, config.folds, config.seed, list(manifest.labels))
    n_folds = int(folds.max())
    if sorted(set(folds.tolist())) != list(range(1, n_folds + 1)):
        raise ConfigError(f"folds file {source}: column 'fold' holds {sorted(set(folds.tolist()))}; folds are 1..K")
    if world.main:
        make_folder(study, "the study folder")
        if source is None or source.resolve() != target.resolve():
            write_csv(target, [{"image": i, "patient": p, "fold": int(f)}
                               for i, p, f in zip(images, patients, folds, strict=True)])  # fmt: skip
        sizes = fold_sizes(np.asarray(folds))
        log.info("%d folds over TRAIN + VALIDATION (%s images; %d patients)%s: %s", n_folds,
                 ", ".join(str(n) for n in sizes.values()), len(set(patients)),
                 f", from {source}" if source else "", target)  # fmt: skip
    barrier(world)  # every rank reads the file rank 0 wrote
    return target, n_folds


def _test_ensemble(config: CrossvalConfig, study: Path) -> dict[str, Any]:
    """The fold ensemble (mean calibrated probability) on TEST, written to ``test_ensemble/``."""
    evaluated = evaluate(ValidateConfig(
        checkpoint=str(study), csv=list(config.csv), split="TEST", out=str(study / "test_ensemble"),
        seed=config.seed, device=config.device, amp=config.amp, num_workers=config.num_workers,
        batch_size=config.batch_size, progress=config.progress,
    ))  # fmt: skip
    macro = evaluated.metrics["macro"]
    return {"macro_auroc": evaluated.metrics["macro_auroc"], "ci_low": macro.get("auroc_ci_low"),
            "ci_high": macro.get("auroc_ci_high"), "out": evaluated.out_dir}  # fmt: skip
