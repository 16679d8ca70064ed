"""Build a medclf manifest from the official CheXpert label files (``train.csv``, ``valid.csv``).

:func:`prepare_chexpert_manifest` keeps the 14 observations of the CheXpert labeler as in the source
(1, 0, -1 uncertain, blank not mentioned) under lower-case names (:data:`CXR_LABELS`, also used by
:mod:`medclf.data.prepare.mimic_cxr`, whose labels come from the same labeler), splits the rows of
``train.csv`` patient-wise and at random into TRAIN/VALIDATION (and TEST without ``valid.csv``), and
makes the rows of ``valid.csv`` TEST. :func:`medclf.reporting.manifest_csv.write_manifest` writes the
result atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, SPLIT_COLUMN
from medclf.data.prepare import common
from medclf.errors import ManifestError

__all__ = ["CHEXPERT_EXTRA_COLUMNS", "CXR_LABELS", "CXR_OBSERVATIONS", "label_columns", "prepare_chexpert_manifest"]

log = logging.getLogger(__name__)

#: The 14 observation columns of CheXpert and of ``mimic-cxr-2.0.0-chexpert.csv``, in file order.
CXR_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)


def label_name(observation: str) -> str:
    """The manifest column of an observation: lower case, spaces as underscores (``pleural_effusion``)."""
    return "_".join(observation.strip().lower().split())


#: The manifest label columns, in the order of :data:`CXR_OBSERVATIONS`.
CXR_LABELS: tuple[str, ...] = tuple(label_name(o) for o in CXR_OBSERVATIONS)
# Every spelling of a label cell accepted, and the text it is written as.
_VALUES = {"1": "1", "1.0": "1", "0": "0", "0.0": "0", "-1": "-1", "-1.0": "-1", "": ""}


#: Columns after the labels in a CheXpert manifest.
CHEXPERT_EXTRA_COLUMNS: tuple[str, ...] = ("patient_id", "age", "sex", "view")
_PATH = "Path"
_REQUIRED = (_PATH, "Sex", "Age", "Frontal/Lateral", "AP/PA", *CXR_OBSERVATIONS)
_PATIENT = r"(patient\d+)"


def label_columns(path: Path, raw: pd.DataFrame) -> pd.DataFrame:
    """The 14 label columns of ``raw`` renamed (:data:`CXR_LABELS`), as text ``"1"``/``"0"``/``"-1"``/``""``.

    Raises:
        ManifestError: A cell is not 1, 0, -1 (optionally as ``1.0`` etc.) or blank; every such cell is
            named by row and column.
    """
    labels = {}
    problems = []
    for observation, label in zip(CXR_OBSERVATIONS, CXR_LABELS, strict=True):
        values = raw[observation].map(_VALUES)
        bad = np.flatnonzero(values.isna().to_numpy())
        for i in bad[: common.MAX_PROBLEMS]:
            problems.append(
                f"row {i + 2}, column {observation!r}: {raw[observation].iat[i]!r} is not 1, 0, -1 or blank"
            )
        labels[label] = values.to_numpy(dtype=object)
    if problems:
        raise ManifestError(path, problems)
    return pd.DataFrame(labels, index=raw.index)


def prepare_chexpert_manifest(
    csv: str | os.PathLike,
    root: str | os.PathLike,
    valid_csv: str | os.PathLike | None = None,
    views: Sequence[str] | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> pd.DataFrame:
    """Build the manifest frame of CheXpert.

    Args:
        csv: The official ``train.csv``.
        root: Folder that the ``Path`` column is relative to (the one holding ``CheXpert-v1.0-small``);
            ``image`` is ``root / Path``, absolute.
        valid_csv: The official ``valid.csv``; its rows become TEST. Without it, TEST is a random
            patient-wise part of ``train.csv`` (``fractions[2]``).
        views: Keep only frontal images whose ``AP/PA`` is one of these (e.g. ``("PA", "AP")``); None
            keeps every image, lateral ones included.
        fractions: TRAIN, VALIDATION, TEST fractions (summing to 1). With ``valid_csv`` the TEST share
            is ignored and ``train.csv`` is split TRAIN:VALIDATION as ``fractions[0]:fractions[1]``.
        seed: Seed of the random patient assignment.

    Returns:
        The manifest frame: ``image``, ``split``, the 14 label columns as text (``"1"``, ``"0"``,
        ``"-1"`` or ``""``), ``patient_id``, ``age``, ``sex`` and ``view`` (``AP``/``PA``/... for frontal
        images, ``LATERAL`` for lateral ones).

    Raises:
        ManifestError: A file is missing or malformed (a missing column, a label value other than 1, 0,
            -1 or blank, a path without a patient id), no row is left, or a patient is in two splits
            (e.g. in both ``train.csv`` and ``valid.csv``).
        ConfigError: ``fractions`` or ``views`` are invalid.
    """
    shares = common.check_fractions(fractions)
    wanted = common.check_views(views)
    base = os.path.abspath(root).rstrip(os.sep) + os.sep
    train = _read(Path(csv), base)
    train = _filter_views(train, wanted)
    rng = np.random.default_rng(seed)
    if valid_csv is None:
        train[SPLIT_COLUMN] = common.assign_patient_splits(train["patient_id"], shares, rng)
        frame = train
    else:
        val_share = shares[1] / (shares[0] + shares[1])
        train[SPLIT_COLUMN] = common.assign_patient_splits(train["patient_id"], (1 - val_share, val_share, 0.0), rng)
        test = _filter_views(_read(Path(valid_csv), base), wanted)
        test[SPLIT_COLUMN] = "TEST"
        frame = pd.concat([train, test], ignore_index=True)
    source = csv if valid_csv is None else valid_csv
    frame = common.finish_frame(frame, (*CXR_LABELS, *CHEXPERT_EXTRA_COLUMNS), source)
    log.info("CheXpert: %d image(s) of %d patient(s)", len(frame), frame["patient_id"].nunique())
    return frame


def _read(path: Path, base: str) -> pd.DataFrame:
    """One CheXpert label file as a frame with image, labels and extra columns (no split yet)."""
    raw = common.read_source_csv(path, _REQUIRED, "CheXpert label file")
    common.check_not_blank(path, raw, (_PATH,))
    common.check_unique(path, raw, _PATH, "image")
    labels = label_columns(path, raw)
    patient = raw[_PATH].str.extract(_PATIENT, expand=False)
    missing = np.flatnonzero(patient.isna().to_numpy())
    if len(missing):
        raise ManifestError(
            path,
            [f"row {i + 2}, column {_PATH!r}: no patient id (patientNNNNN) in {raw[_PATH].iat[i]!r}" for i in missing],
        )
    frontal = raw["Frontal/Lateral"].str.lower() == "frontal"
    view = raw["AP/PA"].str.upper().where(frontal, "LATERAL")
    frame = pd.DataFrame({IMAGE_COLUMN: base + raw[_PATH].str.lstrip("/")})
    frame = pd.concat([frame, labels], axis=1)
    frame["patient_id"] = patient.to_numpy()
    frame["age"] = raw["Age"].to_numpy()
    frame["sex"] = raw["Sex"].to_numpy()
    frame["view"] = view.to_numpy()
    frame["_frontal"] = frontal.to_numpy()
    return frame


def _filter_views(frame: pd.DataFrame, views: tuple[str, ...] | None) -> pd.DataFrame:
    """Keep the frontal rows whose view is one of ``views``; None keeps all rows."""
    frame = frame.copy()
    if views is not None:
        keep = frame["_frontal"] & frame["view"].isin(views)
        log.info("views %s: kept %d image(s), dropped %d", ",".join(views), keep.sum(), (~keep).sum())
        frame = frame[keep]
    return frame.drop(columns="_frontal").reset_index(drop=True)
