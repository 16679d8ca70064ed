"""Build a medclf manifest from the official MIMIC-CXR-JPG files.

:func:`prepare_mimic_cxr_manifest` joins ``mimic-cxr-2.0.0-metadata.csv`` (one row per image,
``dicom_id``) with the official ``mimic-cxr-2.0.0-split.csv`` and with the study labels of
``mimic-cxr-2.0.0-chexpert.csv``: one manifest row per image, carrying its study's 14 labels as in the
source (1, 0, -1 uncertain, blank not mentioned) and the official split (train -> TRAIN, validate ->
VALIDATION, test -> TEST). :func:`medclf.reporting.manifest_csv.write_manifest` writes the result
atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, SPLIT_COLUMN
from medclf.data.prepare.chexpert import CXR_LABELS, CXR_OBSERVATIONS, label_columns
from medclf.data.prepare.common import (
    MAX_PROBLEMS,
    check_not_blank,
    check_unique,
    check_views,
    finish_frame,
    read_source_csv,
)
from medclf.errors import ConfigError, ManifestError

__all__ = ["MIMIC_EXTRA_COLUMNS", "SUFFIXES", "prepare_mimic_cxr_manifest"]

log = logging.getLogger(__name__)

#: Columns after the labels in a MIMIC-CXR manifest.
MIMIC_EXTRA_COLUMNS: tuple[str, ...] = ("patient_id", "study_id", "dicom_id", "view")
#: Image file suffixes: MIMIC-CXR-JPG (``.jpg``) or MIMIC-CXR (``.dcm``).
SUFFIXES: tuple[str, ...] = (".jpg", ".dcm")
_IDS = ("subject_id", "study_id")
_SPLITS = {"train": "TRAIN", "validate": "VALIDATION", "test": "TEST"}


def prepare_mimic_cxr_manifest(
    chexpert_csv: str | os.PathLike,
    metadata_csv: str | os.PathLike,
    split_csv: str | os.PathLike,
    root: str | os.PathLike,
    views: Sequence[str] | None = None,
    suffix: str = ".jpg",
) -> pd.DataFrame:
    """Build the manifest frame of MIMIC-CXR.

    Args:
        chexpert_csv: ``mimic-cxr-2.0.0-chexpert.csv`` (labels per study).
        metadata_csv: ``mimic-cxr-2.0.0-metadata.csv`` (one row per image, with ``ViewPosition``).
        split_csv: ``mimic-cxr-2.0.0-split.csv`` (the official split per image).
        root: The data set folder holding ``files/``; ``image`` is
            ``root/files/pXX/p<subject_id>/s<study_id>/<dicom_id><suffix>`` (absolute), ``XX`` being the
            first two digits of the subject id.
        views: Keep only these ``ViewPosition`` values (e.g. ``("PA", "AP")``); None keeps all.
        suffix: ``.jpg`` (MIMIC-CXR-JPG) or ``.dcm`` (MIMIC-CXR).

    Returns:
        The manifest frame: ``image``, ``split``, the 14 label columns as text (``"1"``, ``"0"``,
        ``"-1"`` or ``""``), ``patient_id`` (the subject id), ``study_id``, ``dicom_id`` and ``view``.
        Images without a split or whose study has no labels are dropped (with a warning).

    Raises:
        ManifestError: A file is missing or malformed (a missing column, a blank or non-numeric id, a
            label value other than 1, 0, -1 or blank, an unknown split), no row is left, or a patient is
            in two splits.
        ConfigError: ``views`` or ``suffix`` are invalid.
    """
    if suffix not in SUFFIXES:
        raise ConfigError(f"suffix must be one of {', '.join(SUFFIXES)}, got {suffix!r}")
    wanted = check_views(views)
    labels = _read_labels(Path(chexpert_csv))
    images = _read_metadata(Path(metadata_csv))
    splits = _read_splits(Path(split_csv))
    frame = images.merge(splits, on="dicom_id", how="left")
    _drop_warn(frame[SPLIT_COLUMN].isna(), "have no official split", split_csv)
    frame = frame[frame[SPLIT_COLUMN].notna()]
    if wanted is not None:
        keep = frame["view"].str.upper().isin(wanted)
        log.info("views %s: kept %d image(s), dropped %d", ",".join(wanted), keep.sum(), (~keep).sum())
        frame = frame[keep]
    frame = frame.merge(labels, on="study_id", how="left")
    no_labels = frame[CXR_LABELS[0]].isna()
    _drop_warn(no_labels, "belong to a study without labels", chexpert_csv)
    frame = frame[~no_labels].copy()
    base = os.path.abspath(root).rstrip(os.sep) + os.sep + "files" + os.sep
    subject = frame["subject_id"]
    frame[IMAGE_COLUMN] = (
        base + "p" + subject.str[:2] + os.sep + "p" + subject + os.sep + "s" + frame["study_id"] + os.sep
    ) + (frame["dicom_id"] + suffix)
    frame["patient_id"] = subject
    frame = finish_frame(frame, (*CXR_LABELS, *MIMIC_EXTRA_COLUMNS), split_csv)
    log.info("MIMIC-CXR: %d image(s) of %d patient(s)", len(frame), frame["patient_id"].nunique())
    return frame


def _read_labels(path: Path) -> pd.DataFrame:
    """``study_id`` and the 14 label columns (text), one row per study."""
    raw = read_source_csv(path, (*_IDS, *CXR_OBSERVATIONS), "MIMIC-CXR label file")
    _check_ids(path, raw, _IDS)
    check_unique(path, raw, "study_id", "study")
    return pd.concat([raw[["study_id"]], label_columns(path, raw)], axis=1)


def _read_metadata(path: Path) -> pd.DataFrame:
    """``dicom_id``, ``subject_id``, ``study_id`` and ``view`` per image."""
    raw = read_source_csv(path, ("dicom_id", *_IDS, "ViewPosition"), "MIMIC-CXR metadata file")
    check_not_blank(path, raw, ("dicom_id",))
    _check_ids(path, raw, _IDS)
    check_unique(path, raw, "dicom_id", "image")
    return pd.DataFrame(
        {
            "dicom_id": raw["dicom_id"],
            "subject_id": raw["subject_id"],
            "study_id": raw["study_id"],
            "view": raw["ViewPosition"],
        }
    )


def _read_splits(path: Path) -> pd.DataFrame:
    """``dicom_id`` and its manifest split (TRAIN/VALIDATION/TEST)."""
    raw = read_source_csv(path, ("dicom_id", "split"), "MIMIC-CXR split file")
    check_not_blank(path, raw, ("dicom_id",))
    check_unique(path, raw, "dicom_id", "image")
    split = raw["split"].str.lower().map(_SPLITS)
    bad = np.flatnonzero(split.isna().to_numpy())
    if len(bad):
        raise ManifestError(
            path,
            [
                f"row {i + 2}, column 'split': {raw['split'].iat[i]!r} is not one of {', '.join(_SPLITS)}"
                for i in bad[:MAX_PROBLEMS]
            ],
        )
    return pd.DataFrame({"dicom_id": raw["dicom_id"], SPLIT_COLUMN: split})


def _check_ids(path: Path, raw: pd.DataFrame, columns: Sequence[str]) -> None:
    """:class:`ManifestError` naming each row whose id in ``columns`` is not a whole number."""
    problems = []
    for column in columns:
        bad = np.flatnonzero(~raw[column].str.fullmatch(r"\d+").to_numpy())
        problems += [f"row {i + 2}, column {column!r}: {raw[column].iat[i]!r} is not an id" for i in bad[:MAX_PROBLEMS]]
    if problems:
        raise ManifestError(path, problems)


def _drop_warn(dropped: pd.Series, why: str, source: str | os.PathLike) -> None:
    if dropped.any():
        log.warning("%d image(s) %s (%s), dropped", int(dropped.sum()), why, source)
