"""Build a medclf manifest from the official NIH ChestX-ray14 label file.

:func:`prepare_nih_manifest` reads ``Data_Entry_2017_v2020.csv`` (or ``.csv.gz``), turns ``Finding Labels``
into the 14 lower-case label columns of :data:`~medclf.data.manifest.NIH_LABELS` (through
:mod:`medclf.data.prepare.nih_findings`), and assigns patient-wise TRAIN/VALIDATION/TEST splits, either
from the official ``test_list.txt`` (and ``train_val_list.txt``) or at random.
:func:`medclf.reporting.manifest_csv.write_manifest` writes the result. Everything is vectorised: the
112,120 rows of the full file take about a second.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, NIH_LABELS, SPLITS
from medclf.data.prepare.common import MAX_PROBLEMS, assign_patients, check_fractions, check_no_leakage, check_views
from medclf.data.prepare.nih_findings import EXTRA_COLUMNS, MANIFEST_COLUMNS, NIH_FINDINGS, NO_FINDING, read_label_file
from medclf.errors import ConfigError, ManifestError

__all__ = [
    "EXTRA_COLUMNS",
    "MANIFEST_COLUMNS",
    "NIH_FINDINGS",
    "NO_FINDING",
    "positives_table",
    "prepare_nih_manifest",
    "split_stats",
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


def apply_official_lists(
    frame: pd.DataFrame,
    split: pd.Series,
    test_list: Path,
    train_val_list: Path | None,
    dropped: dict[str, int],
) -> tuple[pd.DataFrame, pd.Series]:
    """Mark the images of ``test_list`` TEST; with ``train_val_list``, drop images in neither list."""
    test_names = _read_list(test_list)
    in_test = frame["name"].isin(test_names)
    _warn_unmatched(test_list, test_names, frame["name"])
    split = split.copy()
    split[in_test] = "TEST"
    keep = pd.Series(True, index=frame.index)
    if train_val_list is not None:
        tv_names = _read_list(train_val_list)
        _warn_unmatched(train_val_list, tv_names, frame["name"])
        in_tv = frame["name"].isin(tv_names)
        both = frame["name"][in_test & in_tv]
        if len(both):
            raise ManifestError(
                test_list,
                [f"image {n} is in both the test list and the train/val list {train_val_list}" for n in both],
            )
        keep = in_test | in_tv
    dropped["not_in_lists"] = int((~keep).sum())
    return frame[keep], split[keep]


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise ManifestError(path, [f"file not found: {path}"])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(path, [f"cannot read the image list: {e}"]) from None
    names = {line.strip() for line in text.splitlines() if line.strip()}
    if not names:
        raise ManifestError(path, ["the image list is empty"])
    return names


def _warn_unmatched(path: Path, names: set[str], known: pd.Series) -> None:
    unmatched = names - set(known)
    if unmatched:
        example = ", ".join(sorted(unmatched)[:3])
        log.warning("%s: %d name(s) are not in the label file (e.g. %s), ignored", path, len(unmatched), example)


def files_in(folder: Path) -> set[str]:
    """Names of the plain files directly in ``folder``."""
    if not folder.is_dir():
        raise ManifestError(folder, [f"images folder not found: {folder}"])
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.is_file()}


def assign_splits(
    data_entry: Path,
    frame: pd.DataFrame,
    split: pd.Series,
    fractions: tuple[float, float, float],
    test_list: Path | None,
    seed: int,
) -> pd.DataFrame:
    """``frame`` with a ``split`` column: TEST from the list or at random, then VALIDATION, then TRAIN.

    Every assignment is by whole patients; a patient in two splits raises :class:`ManifestError`.
    """
    rng = np.random.default_rng(seed)
    if test_list is not None:
        _check_lists_patientwise(test_list, frame, split)
    else:
        split = assign_patients(frame["patient_id"], split, "TEST", fractions[2] * len(frame), rng)
    split = assign_patients(frame["patient_id"], split, "VALIDATION", fractions[1] * len(frame), rng)
    split = split.copy()
    split[split == ""] = "TRAIN"
    frame = frame.assign(split=split.to_numpy())
    check_no_leakage(data_entry, frame)
    return frame


def _check_lists_patientwise(test_list: Path, frame: pd.DataFrame, split: pd.Series) -> None:
    is_test = split == "TEST"
    test_patients = set(frame["patient_id"][is_test])
    mixed = frame[~is_test & frame["patient_id"].isin(test_patients)]
    if mixed.empty:
        return
    problems = []
    for patient, part in list(mixed.groupby("patient_id", sort=True))[:MAX_PROBLEMS]:
        n_test = int((is_test & (frame["patient_id"] == patient)).sum())
        problems.append(
            f"patient {patient} has {n_test} image(s) in the test list and {len(part)} outside it "
            f"(e.g. {', '.join(part['name'].head(3))}); the lists are not patient-wise"
        )
    raise ManifestError(test_list, problems)


def split_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """``n_output`` and per-split ``images``, ``patients`` and per-label ``positives`` of a manifest frame."""
    by_split = frame.groupby("split")
    images = by_split.size()
    patients = by_split["patient_id"].nunique()
    positives = by_split[list(NIH_LABELS)].sum()
    return {
        "n_output": len(frame),
        "images": {s: int(images.get(s, 0)) for s in SPLITS},
        "patients": {s: int(patients.get(s, 0)) for s in SPLITS},
        "positives": {
            s: {label: int(positives.at[s, label]) if s in positives.index else 0 for label in NIH_LABELS}
            for s in SPLITS
        },
    }
