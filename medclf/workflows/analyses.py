"""The analyses ``validate`` adds to its report: calibration, test-time augmentation, subgroups (and per
data source) and the feature space.

Each function takes the inference result and returns a JSON-ready block (or the pieces a writer
needs); the maths is in :mod:`medclf.metrics`, the writing in :mod:`medclf.reporting`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclf.config import ValidateConfig
from medclf.data.manifest import Manifest
from medclf.data.sources import SOURCE_COLUMN
from medclf.engine.loops import Inference, check_finite
from medclf.errors import ConfigError, ImageError
from medclf.metrics.bootstrap import label_aurocs
from medclf.metrics.calibration import (
    calibration_scores,
    fit_temperatures,
    reported_probabilities,
    small_set_warnings,
    too_few_to_fit,
)
from medclf.metrics.curves import decisions
from medclf.metrics.subgroups import SubgroupSpec, assign_groups, parse_subgroups, subgroup_analysis
from medclf.model.checkpoint import Checkpoint
from medclf.workflows.inference import run_inference

log = logging.getLogger(__name__)


def subgroup_specs(config: ValidateConfig, manifest: Manifest) -> list[SubgroupSpec]:
    """``--subgroups``, plus ``source`` when the evaluated split mixes data sets; checked before inference.

    Raises:
        ConfigError: a bad spec, an absent column or a non-numeric value in a binned column.
    """
    try:
        specs = parse_subgroups(config.subgroups) if config.subgroups.strip() else []
        frame = manifest.select(config.split)
        mixed = SOURCE_COLUMN in frame.columns and frame[SOURCE_COLUMN].nunique() > 1
        if mixed and all(spec.column != SOURCE_COLUMN for spec in specs):
            specs.append(SubgroupSpec(SOURCE_COLUMN))
        for spec in specs:
            assign_groups(frame, spec)
    except ConfigError as e:
        raise ConfigError(f"--subgroups: {e}") from None
    return specs


def subgroup_block(
    specs: list[SubgroupSpec],
    manifest: Manifest,
    config: ValidateConfig,
    result: Inference,
    labels: list[str],
    thresholds: list[float],
) -> dict[str, Any] | None:
    """Per group: n, positives, AUROC with CI, TPR/FPR at the thresholds; the largest gaps."""
    if not specs:
        return None
    # Images are unique across combined manifests, so they align rows even when row numbers repeat.
    frame = manifest.select(config.split).set_index("image").loc[result.paths].reset_index()
    groups = {spec.column: assign_groups(frame, spec) for spec in specs}
    return subgroup_analysis(
        result.probs, result.targets, groups, labels, thresholds, n_bootstrap=config.bootstrap, seed=config.seed
    )


def temperatures_for(
    config: ValidateConfig, checkpoint: Checkpoint, manifest: Manifest
) -> tuple[list[float] | None, str]:
    """The temperatures to apply and where they came from: fitted now (``--calibrate``), the checkpoint's,
    or none (``--no-calibration``, or a checkpoint trained before calibration existed)."""
    if config.calibrate:
        if manifest.select("VALIDATION").empty:
            raise ConfigError("--calibrate fits on the VALIDATION split, but the CSV has no VALIDATION rows")
        fitted, _ = infer_split(config, checkpoint, manifest, "VALIDATION", "VALIDATION (calibration)")
        targets = fitted.targets.cpu().numpy()
        temperatures = fit_temperatures(fitted.logits.float().cpu().numpy(), targets)
        for text in small_set_warnings(targets, checkpoint.labels):
            log.warning("--calibrate on VALIDATION: %s", text)
        kept = len(too_few_to_fit(targets, checkpoint.labels))
        kept_text = f"; {kept} label(s) kept at T = 1: too few positives or negatives" if kept else ""
        return temperatures, f"fitted now on VALIDATION ({len(fitted.paths)} images{kept_text})"
    if config.calibration and checkpoint.temperatures:
        return list(checkpoint.temperatures), "checkpoint (fitted on VALIDATION at the best epoch)"
    why = "--no-calibration" if not config.calibration else "the checkpoint has no temperatures (use --calibrate)"
    return None, f"none ({why})"


def infer_split(
    config: ValidateConfig, checkpoint: Checkpoint, manifest: Manifest, split: str, desc: str
) -> tuple[Inference, list[dict]]:
    """The network over one split, with the uncertainty policy of training; and the split's records.

    Raises:
        ImageError: when none of the split's images could be read.
        TrainingError: when the network gives non-finite outputs (see :func:`check_finite`).
    """
    records = manifest.records(split, checkpoint.config.get("uncertain", "ignore"))
    result, n_records = run_inference(
        checkpoint, records, with_labels=True, device=config.device, amp=config.amp,
        batch_size=config.batch_size, num_workers=config.num_workers, progress=config.progress, desc=desc,
        tta=config.tta,
    )  # fmt: skip
    if result.targets is None or len(result.paths) == 0:
        raise ImageError(f"none of the {n_records} {split} images in {', '.join(config.csv)} could be read")
    check_finite(result, f"{Path(checkpoint.path).name} on {desc}")
    if result.skipped:
        first = result.skipped[0]
        log.warning("skipped %d unreadable image(s), e.g. %s: %s", len(result.skipped), first["path"], first["error"])
    return result, records


def calibrated(result: Inference, temperatures: list[float] | None) -> np.ndarray:
    """The probabilities to report (float64): temperature-scaled when ``temperatures`` are given, otherwise
    exactly the probabilities the thresholds were chosen on (``result.probs``, widened)."""
    return reported_probabilities(result.logits, temperatures)


def reported_and_calls(
    result: Inference, temperatures: list[float] | None, raw_thresholds: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities to report and the calls, the one comparison every count, figure and ``pred_``
    column comes from: made on the raw outputs the thresholds were chosen on (calibration keeps each
    label's order, so the calls hold on both scales)."""
    return calibrated(result, temperatures), decisions(result.probs.cpu().numpy(), raw_thresholds)


def calibration_block(
    result: Inference, probs: np.ndarray, labels: list[str], temperatures: list[float] | None, source: str
) -> dict[str, Any]:
    """ECE and Brier score per label and macro, before and after temperature scaling."""
    targets = result.targets.cpu().numpy()
    raw = result.probs.double().cpu().numpy()
    return {
        "applied": temperatures is not None,
        "temperatures_from": source,
        "temperatures": dict(zip(labels, temperatures, strict=True)) if temperatures else None,
        "before": calibration_scores(raw, targets, labels),
        "after": calibration_scores(probs, targets, labels) if temperatures else None,
    }


def tta_block(result: Inference, labels: list[str], n_views: int) -> dict[str, Any] | None:
    """Macro and per-label AUROC without and with test-time augmentation, and the change."""
    if result.plain_logits is None:
        return None
    without = label_aurocs(torch.sigmoid(result.plain_logits.float()), result.targets)
    with_tta = label_aurocs(result.probs, result.targets)
    both = [j for j in range(len(labels)) if without[j] is not None and with_tta[j] is not None]
    macro = (float(np.mean([without[j] for j in both])), float(np.mean([with_tta[j] for j in both]))) if both else None
    return {
        "views": n_views,
        "macro_auroc_without": macro[0] if macro else None,
        "macro_auroc_with": macro[1] if macro else None,
        "macro_change": macro[1] - macro[0] if macro else None,
        "auroc_without": dict(zip(labels, without, strict=True)),
        "auroc_with": dict(zip(labels, with_tta, strict=True)),
    }
