"""Helpers shared by the CheXpert and MIMIC-CXR manifest preparation.

Both data sets label the same 14 observations (the CheXpert labeler's), with 1 (positive), 0
(negative), -1 (uncertain) or blank (not mentioned). This module holds the label names, the reading of
the official CSV files with row-level errors, the normalisation of label cells to the text ``"1"``,
``"0"``, ``"-1"`` or ``""``, the patient-wise split and leakage check, and the per-split summary.
Row numbers count the header as row 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, SPLIT_COLUMN, SPLITS
from medclf.data.nih import write_nih_manifest
from medclf.data.nih_splits import check_fractions, check_views, read_source_csv
from medclf.errors import ManifestError

__all__ = [
    "CXR_LABELS",
    "CXR_OBSERVATIONS",
    "MAX_PROBLEMS",
    "assign_patient_splits",
    "check_fractions",
    "check_no_leakage",
    "check_unique",
    "check_views",
    "label_columns",
    "read_source_csv",
    "split_table",
    "write_cxr_manifest",
]

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
MAX_PROBLEMS = 50
# Every spelling of a label cell accepted, and the text it is written as.
_VALUES = {"1": "1", "1.0": "1", "0": "0", "0.0": "0", "-1": "-1", "-1.0": "-1", "": ""}


#: Re-exported writer: the manifest CSV, written atomically (image paths under its folder made relative).
def write_cxr_manifest(frame: pd.DataFrame, out: str | os.PathLike) -> Path:
    """Write a prepared manifest atomically, as the NIH preparation does."""
    return write_nih_manifest(frame, out)


def check_not_blank(path: Path, raw: pd.DataFrame, columns: Sequence[str]) -> None:
    """:class:`ManifestError` naming every row (header = row 1) where one of ``columns`` is blank."""
    problems = []
    rows = np.arange(len(raw)) + 2
    for column in columns:
        for row in rows[(raw[column] == "").to_numpy()][:MAX_PROBLEMS]:
            problems.append(f"row {row}, column {column!r}: blank")
    if problems:
        raise ManifestError(path, problems)


def check_unique(path: Path, raw: pd.DataFrame, column: str, what: str = "value") -> None:
    """:class:`ManifestError` naming every row (header = row 1) whose ``column`` repeats an earlier row's.

    Refused at preparation, where the message can name the source file and both rows, rather than in the
    prepared manifest at training time.
    """
    first: dict[str, int] = {}
    problems = []
    for row, value in enumerate(raw[column], start=2):
        if value in first:
            problems.append(f"row {row}, column {column!r}: {value!r} repeats row {first[value]} (one {what} twice)")
        first.setdefault(value, row)
    if problems:
        raise ManifestError(path, problems[:MAX_PROBLEMS])


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
        for i in bad[:MAX_PROBLEMS]:
            problems.append(
                f"row {i + 2}, column {observation!r}: {raw[observation].iat[i]!r} is not 1, 0, -1 or blank"
            )
        labels[label] = values.to_numpy(dtype=object)
    if problems:
        raise ManifestError(path, problems)
    return pd.DataFrame(labels, index=raw.index)


def assign_patient_splits(
    patients: pd.Series, fractions: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """TRAIN/VALIDATION/TEST per row, by whole patients, about ``fractions`` of the rows each.

    Patients are shuffled with ``rng``; a patient goes into TEST (then VALIDATION) while the middle of
    its images lies within that split's share of the rows. The rest is TRAIN.
    """
    counts = patients.value_counts().sort_index()
    order = rng.permutation(len(counts))
    sizes = counts.to_numpy()[order]
    middle = np.cumsum(sizes) - sizes / 2
    n_rows = len(patients)
    test_end = fractions[2] * n_rows
    val_end = test_end + fractions[1] * n_rows
    per_patient = np.where(middle < test_end, "TEST", np.where(middle < val_end, "VALIDATION", "TRAIN"))
    mapping = dict(zip(counts.index[order], per_patient, strict=True))
    return patients.map(mapping).to_numpy(dtype=object)


def check_no_leakage(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """:class:`ManifestError` listing every ``patient_id`` found in more than one ``split``."""
    splits = frame.groupby("patient_id", sort=True)[SPLIT_COLUMN].unique()
    leaked = splits[splits.map(len) > 1]
    if len(leaked):
        problems = [f"patient {p} is in splits {', '.join(sorted(s))}" for p, s in leaked.head(MAX_PROBLEMS).items()]
        raise ManifestError(path, ["patient leakage between splits:", *problems])


def finish_frame(frame: pd.DataFrame, columns: Sequence[str], source: str | os.PathLike) -> pd.DataFrame:
    """``frame`` reduced to ``columns`` in order, after the leakage check; ManifestError when empty."""
    if frame.empty:
        raise ManifestError(source, ["no image is left after filtering"])
    check_no_leakage(source, frame)
    return frame[[IMAGE_COLUMN, SPLIT_COLUMN, *CXR_LABELS, *columns]].reset_index(drop=True)


def split_table(frame: pd.DataFrame) -> str:
    """Images and patients per split, as a small plain-text table."""
    lines = [f"{'split':<12}{'images':>10}{'patients':>10}"]
    for split in SPLITS:
        part = frame[frame[SPLIT_COLUMN] == split]
        lines.append(f"{split:<12}{len(part):>10}{part['patient_id'].nunique():>10}")
    lines.append(f"{'total':<12}{len(frame):>10}{frame['patient_id'].nunique():>10}")
    return "\n".join(lines)
