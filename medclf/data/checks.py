"""Data checks reported while a run starts and runs: one-class labels and unreadable images."""

from __future__ import annotations

import logging

import pandas as pd

from medclf.config import TrainConfig
from medclf.data.loaders import cached_errors, scan_errors
from medclf.data.manifest import SPLITS, Manifest
from medclf.data.prepare.common import patients_in_several_splits
from medclf.data.sources import SOURCE_COLUMN
from medclf.errors import ConfigError, ImageError, ManifestError
from medclf.metrics.calibration import small_set_warnings

log = logging.getLogger(__name__)


def log_label_counts(manifest: Manifest, uncertain: str = "ignore") -> None:
    """Log positives, negatives, uncertain and missing per label and split (and the data sets combined);
    warn about labels that have only one class (after the uncertainty policy) or no label at all."""
    log.info("labels per split (uncertain -1 used as: %s; blank is always masked):\n%s", uncertain,
             label_counts_table(manifest.positives()))  # fmt: skip
    if "source" in manifest.frame.columns and manifest.frame["source"].nunique() > 1:
        sizes = manifest.frame.groupby(["source", "split"], sort=False).size()
        parts = [f"{src}: " + ", ".join(f"{sizes[src, s]} {s}" for s in SPLITS if (src, s) in sizes.index)
                 for src in dict.fromkeys(manifest.frame["source"])]  # fmt: skip
        log.info("data sets: %s", "; ".join(parts))
    for split in ("TRAIN", "VALIDATION"):
        targets = manifest.targets(split, uncertain)
        positives, negatives = (targets == 1).sum(axis=0), (targets == 0).sum(axis=0)
        unlabelled = [name for j, name in enumerate(manifest.labels) if positives[j] + negatives[j] == 0]
        one_class = [name for j, name in enumerate(manifest.labels) if (positives[j] == 0) != (negatives[j] == 0)]
        if unlabelled:
            log.warning("%s: %s %s no labelled image (every cell blank or masked)", split, ", ".join(unlabelled),
                        "has" if len(unlabelled) == 1 else "have")  # fmt: skip
        if one_class:
            log.warning(
                "%s: %s %s only one class; %s",
                split, ", ".join(one_class), "has" if len(one_class) == 1 else "have",
                "its AUROC is undefined and left out of the macro mean" if split == "VALIDATION"
                else "the model cannot learn it from this split",
            )  # fmt: skip
    for text in small_set_warnings(manifest.targets("VALIDATION", uncertain), manifest.labels):
        log.warning("VALIDATION, where temperature scaling is fitted at each best epoch: %s", text)


def label_counts_table(counts: pd.DataFrame) -> str:
    """:meth:`Manifest.positives` as text: one line per label, ``pos neg unc miss`` per split."""
    kinds = ("positives", "negatives", "uncertain", "missing")
    splits = list(dict.fromkeys(counts["split"]))
    labels = list(dict.fromkeys(counts["label"]))
    cells = counts.set_index(["split", "label"])
    width = max([5, *map(len, labels)])
    widths = {s: max(7, len(s)) for s in splits}
    head = [f"{'':<{width}}"] + [f"{s:>{widths[s] + 24}}" for s in splits]
    sub = [f"{'label':<{width}}"] + [f"{'pos':>{widths[s]}}{'neg':>8}{'unc':>8}{'miss':>8}" for s in splits]
    lines = ["  ".join(head), "  ".join(sub)]
    for name in labels:
        parts = [f"{name:<{width}}"]
        for s in splits:
            c = cells.loc[(s, name)]
            parts.append(f"{c[kinds[0]]:>{widths[s]}}" + "".join(f"{c[k]:>8}" for k in kinds[1:]))
        lines.append("  ".join(parts))
    return "\n".join(lines)


def check_unreadable(datasets: dict, config: TrainConfig) -> set[str]:
    """With --check-images stop on any unreadable image; otherwise report those found while caching.

    Returns the paths reported, so that epochs do not report them again.
    """
    found = []
    for split, dataset in datasets.items():
        errors = scan_errors(dataset, config.progress) if config.check_images else cached_errors(dataset)
        found += [(split, e) for e in errors]
        if errors and len(errors) == len(dataset):
            raise ImageError(
                f"none of the {len(dataset)} {split} images could be read; first error: "
                f"{errors[0]['path']} (row {errors[0]['row']}): {errors[0]['error']}"
            )
    if not found:
        return set()
    lines = [f"{e['path']} (row {e['row']}, {split}): {e['error']}" for split, e in found]
    if config.check_images:
        raise ImageError(f"{len(found)} unreadable image(s) in {', '.join(config.csv)}:\n  " + "\n  ".join(lines))
    more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
    log.warning("skipping %d unreadable image(s):\n  %s%s", len(found), "\n  ".join(lines[:20]), more)
    return {e["path"] for _, e in found}


def warn_skipped(skipped: list[dict], split: str, reported: set[str]) -> None:
    """Warn once per image about images that failed to decode during an epoch (uncached data)."""
    new = [s for s in skipped if s["path"] not in reported]
    reported.update(s["path"] for s in new)
    if new:
        log.warning("%s: skipped %d unreadable image(s), e.g. %s: %s", split, len(new), new[0]["path"], new[0]["error"])


def check_patient_overlap(
    manifest: Manifest, column: str = "patient_id", allow: bool = False, shared_ids: bool = False
) -> None:
    """Refuse (or with ``allow`` warn about) patients whose images are in more than one split.

    Images of one patient in TRAIN and TEST let a model score on the patient rather than the finding
    (leakage). Checked whenever the manifest has ``column``. Ids are compared within each data set (the
    ``source`` column): patient 1001 of one hospital is not patient 1001 of another, unless
    ``shared_ids`` says the data sets number their patients alike.

    Raises:
        ManifestError: listing a few patients, their splits and rows, unless ``allow``.
    """
    frame = manifest.frame
    if column not in frame.columns:
        log.debug("no %r column: patients across splits not checked", column)
        return
    named = frame[frame[column].astype(str).str.strip() != ""]
    mixed = SOURCE_COLUMN in frame.columns and frame[SOURCE_COLUMN].nunique() > 1  # several data sets
    keys = [column] if shared_ids or not mixed else [SOURCE_COLUMN, column]
    shared = patients_in_several_splits(named, keys)
    if shared.empty:
        return
    examples = []
    for key, in_splits in list(shared.items())[:5]:
        key = key if isinstance(key, tuple) else (key,)
        rows = named[(named[keys] == pd.Series(key, index=keys)).all(axis=1)]
        sources = rows[SOURCE_COLUMN] if mixed else rows["csv_row"]
        where = [f"{s} row {r}" if mixed else str(r) for s, r in zip(sources, rows["csv_row"], strict=True)]
        patient = key[-1]
        examples.append(f"{patient} in {', '.join(in_splits)} (rows {', '.join(where[:6])})")
    text = f"{len(shared)} patient(s) of column '{column}' have images in more than one split, e.g. " + "; ".join(
        examples
    )
    if not allow:
        raise ManifestError(manifest.path, [text + ". Split by patient, or pass --allow-patient-overlap"])
    log.warning("%s (allowed by --allow-patient-overlap: metrics may be optimistic)", text)


def check_batches(n_train: int, batch_size: int, processes: int = 1) -> None:
    """Say how TRAIN fills its batches when it cannot fill them evenly; refuse a split of one image.

    Batch norm cannot train on one image, so a last batch of one is merged into the one before
    (:class:`~medclf.data.loaders.EpochBatchSampler`); this says so instead of doing it silently.

    Raises:
        ConfigError: when a process would have fewer than two TRAIN images.
    """
    each = " per process" if processes > 1 else ""
    if n_train < 2:
        raise ConfigError(
            f"TRAIN has {n_train} image(s){each}: at least two are needed (batch norm cannot train on one image)"
        )
    if n_train < batch_size:
        log.warning("TRAIN has %d images%s, fewer than --batch-size %d: each epoch is one batch of %d",
                    n_train, each, batch_size, n_train)  # fmt: skip
    elif n_train % batch_size == 1:
        log.warning("TRAIN's last batch%s would hold one image (%d = %d x %d + 1): it is merged into the batch "
                    "before, which then holds %d", each, n_train, n_train // batch_size, batch_size,
                    batch_size + 1)  # fmt: skip
