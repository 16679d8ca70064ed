"""Build a medclf manifest from the official NIH ChestX-ray14 label file.

:func:`prepare_nih_manifest` reads ``Data_Entry_2017_v2020.csv`` (or ``.csv.gz``), turns ``Finding Labels``
into the 14 lower-case label columns of :data:`~medclf.data.manifest.NIH_LABELS`, and assigns patient-wise
TRAIN/VALIDATION/TEST splits, either from the official ``test_list.txt`` (and ``train_val_list.txt``) or
at random. :func:`write_nih_manifest` writes the result. Everything is vectorised: the 112,120 rows of
the full file take about a second. The reading and splitting helpers live in
:mod:`medclf.data.nih_splits`; the names below are the public interface.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, NIH_LABELS, SPLITS
from medclf.data.nih_splits import (
    EXTRA_COLUMNS,
    MANIFEST_COLUMNS,
    NIH_FINDINGS,
    NO_FINDING,
    apply_official_lists,
    assign_splits,
    check_fractions,
    check_views,
    files_in,
    read_label_file,
    split_stats,
)
from medclf.errors import ConfigError, ManifestError
from medclf.reporting.files import atomic_write, neutralise_cell

__all__ = [
    "EXTRA_COLUMNS",
    "MANIFEST_COLUMNS",
    "NIH_FINDINGS",
    "NO_FINDING",
    "positives_table",
    "prepare_nih_manifest",
    "write_nih_manifest",
]

log = logging.getLogger(__name__)


def prepare_nih_manifest(
    data_entry: str | os.PathLike,
    images_dir: str | os.PathLike,
    *,
    test_list: str | os.PathLike | None = None,
    train_val_list: str | os.PathLike | None = None,
    views: Sequence[str] | None = None,
    require_images: bool = False,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build the manifest frame of NIH ChestX-ray14.

    Args:
        data_entry: The official label file (``Data_Entry_2017_v2020.csv`` or ``.csv.gz``).
        images_dir: Folder holding the PNG files; ``image`` is ``images_dir / Image Index`` (absolute).
        test_list: Official ``test_list.txt`` (one file name a line). Its images become TEST; without it,
            TEST is a random patient-wise part of ``split_fractions[2]`` of the images.
        train_val_list: Official ``train_val_list.txt``; with ``test_list``, images in neither list are
            dropped. Without it, every image not in the test list is train/val.
        views: Keep only these ``View Position`` values (e.g. ``("PA",)``); None keeps all.
        require_images: Drop rows whose file is not in ``images_dir``.
        split_fractions: TRAIN, VALIDATION, TEST fractions of the images (summing to 1). VALIDATION is
            always carved patient-wise out of the non-test images, ``split_fractions[1]`` of all images.
        seed: Seed of the random patient assignment.

    Returns:
        The manifest frame (columns :data:`MANIFEST_COLUMNS`, labels as 0/1 ints) and a stats dict
        with ``images``, ``patients`` and ``positives`` per split, ``dropped`` counts by reason,
        ``n_input`` and ``n_output``.

    Raises:
        ManifestError: An input file is missing or malformed (e.g. an unknown finding name), no row is
            left, or the official lists put one patient in two splits.
        ConfigError: ``split_fractions`` or ``views`` are invalid.
    """
    data_entry = Path(data_entry)
    images_dir = Path(images_dir)
    fractions = check_fractions(split_fractions)
    wanted_views = check_views(views)
    if train_val_list is not None and test_list is None:
        raise ConfigError("a train/val list was given without a test list; give both or neither")
    test_path = None if test_list is None else Path(test_list)
    tv_path = None if train_val_list is None else Path(train_val_list)

    frame = read_label_file(data_entry)
    stats: dict[str, Any] = {"n_input": len(frame), "dropped": {}}
    split = pd.Series("", index=frame.index, dtype=object)
    if test_path is not None:
        frame, split = apply_official_lists(frame, split, test_path, tv_path, stats["dropped"])
    frame, split = _filter(frame, split, wanted_views, images_dir if require_images else None, stats["dropped"])
    if frame.empty:
        raise ManifestError(data_entry, [f"no image is left after filtering (dropped: {stats['dropped']})"])

    frame = assign_splits(data_entry, frame, split, fractions, test_path, seed)
    base = os.path.abspath(images_dir).rstrip(os.sep)
    frame[IMAGE_COLUMN] = base + os.sep + frame["name"]
    frame = frame[list(MANIFEST_COLUMNS)].reset_index(drop=True)
    stats.update(split_stats(frame))
    empty = [s for s in SPLITS if not stats["images"][s]]
    if empty:
        log.warning("split(s) %s have no image (%d image(s) in all)", ", ".join(empty), len(frame))
    return frame, stats


def _filter(
    frame: pd.DataFrame,
    split: pd.Series,
    views: tuple[str, ...] | None,
    images_dir: Path | None,
    dropped: dict[str, int],
) -> tuple[pd.DataFrame, pd.Series]:
    """Keep the rows of the wanted views and, when ``images_dir`` is given, those whose file is there."""
    if views is not None:
        keep = frame["view"].isin(views)
        dropped["view"] = int((~keep).sum())
        frame, split = frame[keep], split[keep]
        log.info("views %s: kept %d image(s), dropped %d", ",".join(views), keep.sum(), (~keep).sum())
    if images_dir is not None:
        keep = frame["name"].isin(files_in(images_dir))
        dropped["missing_image"] = int((~keep).sum())
        frame, split = frame[keep], split[keep]
        log.info("require images: %d of %d listed image(s) not in %s, dropped", (~keep).sum(), len(keep), images_dir)
    return frame, split


def write_nih_manifest(frame: pd.DataFrame, out: str | os.PathLike) -> Path:
    """Write a manifest frame atomically as CSV (through :func:`medclf.reporting.files.atomic_write`).

    Image paths under the CSV's folder are written relative to it (so that the folder can move as a
    whole); all others stay absolute. Text cells that a spreadsheet would run as a formula get a leading
    ``'`` (:func:`~medclf.reporting.files.neutralise_cell`), which the manifest reader removes from ``image``.

    Returns:
        The CSV path.
    """
    out = Path(out)
    folder = os.path.abspath(out.parent)
    frame = frame.copy()
    parts = frame[IMAGE_COLUMN].str.rpartition(os.sep)
    mapping = {d: _relative_dir(d, folder) for d in parts[0].unique()}
    frame[IMAGE_COLUMN] = parts[0].map(mapping) + parts[2]
    for column in frame.select_dtypes(include=["object", "string"]).columns:  # numbers (labels 0/1) stay numbers
        frame[column] = frame[column].map(neutralise_cell)
    with atomic_write(out, "w", encoding="utf-8", newline="") as f:
        frame.to_csv(f, index=False, lineterminator="\n")
    log.info("wrote %d image(s) to %s", len(frame), out)
    return out


def positives_table(stats: dict[str, Any]) -> str:
    """Per-split, per-label positive counts, image and patient counts as a plain-text table."""
    header = ["", *SPLITS, "total"]
    rows = [
        ["images", *(stats["images"][s] for s in SPLITS), sum(stats["images"].values())],
        ["patients", *(stats["patients"][s] for s in SPLITS), sum(stats["patients"].values())],
    ]
    for label in NIH_LABELS:
        counts = [stats["positives"][s][label] for s in SPLITS]
        rows.append([label, *counts, sum(counts)])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [str(r[0]).ljust(widths[0])] + [str(v).rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _relative_dir(directory: str, folder: str) -> str:
    """``directory`` + separator, relative to ``folder`` when it lies inside it, else as is."""
    try:
        relative = os.path.relpath(directory, folder)
    except ValueError:  # another drive on Windows
        return directory + os.sep
    if relative == os.curdir:
        return ""
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return directory + os.sep
    return relative + os.sep
