"""Data checks reported while a run starts and runs: one-class labels and unreadable images."""

from __future__ import annotations

import logging

from medclf.config import TrainConfig
from medclf.data.loaders import cached_errors, scan_errors
from medclf.data.manifest import Manifest
from medclf.errors import ImageError

log = logging.getLogger(__name__)


def log_label_counts(manifest: Manifest) -> None:
    """Warn about labels with only one class in TRAIN or VALIDATION."""
    for split in ("TRAIN", "VALIDATION"):
        n = len(manifest.select(split))
        counts = manifest.positives(split)
        one_class = [name for name, c in counts.items() if c in (0, n)]
        if one_class:
            log.warning(
                "%s: %s %s only one class; %s",
                split, ", ".join(one_class), "has" if len(one_class) == 1 else "have",
                "its AUROC is undefined and left out of the macro mean" if split == "VALIDATION"
                else "the model cannot learn it from this split",
            )  # fmt: skip


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
        raise ImageError(f"{len(found)} unreadable image(s) in {config.csv}:\n  " + "\n  ".join(lines))
    more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
    log.warning("skipping %d unreadable image(s):\n  %s%s", len(found), "\n  ".join(lines[:20]), more)
    return {e["path"] for _, e in found}


def warn_skipped(skipped: list[dict], split: str, reported: set[str]) -> None:
    """Warn once per image about images that failed to decode during an epoch (uncached data)."""
    new = [s for s in skipped if s["path"] not in reported]
    reported.update(s["path"] for s in new)
    if new:
        log.warning("%s: skipped %d unreadable image(s), e.g. %s: %s", split, len(new), new[0]["path"], new[0]["error"])
