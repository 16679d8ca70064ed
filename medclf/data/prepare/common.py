"""What every manifest preparation shares: reading, checks, patient-wise splits and the leakage check.

Reading an official CSV file with its required columns checked, blank and repeated cells named by row
(the header is row 1), the split-fraction and view checks, the random patient-wise split, the one
patient-leakage check (also used at training time by :func:`medclf.data.checks.check_patient_overlap`)
and the per-split summary printed after a preparation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, SPLIT_COLUMN, SPLITS
from medclf.errors import ConfigError, ManifestError

__all__ = [
    "MAX_PROBLEMS",
    "assign_patient_splits",
    "assign_patients",
    "check_fractions",
    "check_no_leakage",
    "check_not_blank",
    "check_unique",
    "check_views",
    "finish_frame",
    "patients_in_several_splits",
    "read_source_csv",
    "split_table",
]

#: At most this many problems are listed in one error.
MAX_PROBLEMS = 50


def read_source_csv(path: str | os.PathLike, required: Sequence[str], what: str) -> pd.DataFrame:
    """An official CSV file as stripped text (blank cells as ``""``), with its required columns checked.

    Args:
        path: The file.
        required: Columns that must be present.
        what: What the file is, for messages (e.g. ``"CheXpert label file"``).

    Raises:
        ManifestError: The file is missing, unreadable, lacks a required column or has no row.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [f"{what} not found: {path}"])
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise ManifestError(path, [f"cannot read the {what}: {e}"]) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        found = ", ".join(raw.columns) or "none"
        raise ManifestError(path, [f"missing column {c!r} (found: {found})" for c in missing])
    if raw.empty:
        raise ManifestError(path, [f"the {what} has a header but no rows"])
    for column in raw.columns:
        raw[column] = raw[column].str.strip()
    return raw


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """TRAIN, VALIDATION, TEST fractions as floats; :class:`ConfigError` unless valid."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not np.isfinite(f) or f < 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(
            f"split fractions must be three non-negative numbers (TRAIN, VALIDATION, TEST) summing to 1, "
            f"got {', '.join(map(str, fractions))}"
        )
    if values[0] == 0:
        raise ConfigError("the TRAIN split fraction must be above 0")
    return values  # type: ignore[return-value]


def check_views(views: Sequence[str] | None) -> tuple[str, ...] | None:
    """Upper-case view positions from a sequence or a comma-separated string; None keeps all."""
    if views is None:
        return None
    if isinstance(views, str):
        views = views.split(",")
    wanted = tuple(v.strip().upper() for v in views if v.strip())
    if not wanted:
        raise ConfigError("views is empty; give view positions such as PA,AP")
    return wanted


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


def _shuffled_patients(patients: pd.Series, rng: np.random.Generator) -> tuple[pd.Index, np.ndarray]:
    """Patient ids in a random order, and where the middle of each one's images falls (cumulated)."""
    counts = patients.value_counts().sort_index()
    order = rng.permutation(len(counts))
    sizes = counts.to_numpy()[order]
    return counts.index[order], np.cumsum(sizes) - sizes / 2


def assign_patient_splits(
    patients: pd.Series, fractions: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """TRAIN/VALIDATION/TEST per row, by whole patients, about ``fractions`` of the rows each.

    Patients are shuffled with ``rng``; a patient goes into TEST (then VALIDATION) while the middle of
    its images lies within that split's share of the rows. The rest is TRAIN.
    """
    ids, middle = _shuffled_patients(patients, rng)
    n_rows = len(patients)
    test_end = fractions[2] * n_rows
    val_end = test_end + fractions[1] * n_rows
    per_patient = np.where(middle < test_end, "TEST", np.where(middle < val_end, "VALIDATION", "TRAIN"))
    mapping = dict(zip(ids, per_patient, strict=True))
    return patients.map(mapping).to_numpy(dtype=object)


def assign_patients(
    patients: pd.Series, split: pd.Series, name: str, n_images: float, rng: np.random.Generator
) -> pd.Series:
    """Give ``name`` to random whole patients of the rows whose ``split`` is ``""``, about ``n_images``
    images in all (a patient goes in when its middle image is within the target)."""
    free = split == ""
    if n_images <= 0 or not free.any():
        return split
    ids, middle = _shuffled_patients(patients[free], rng)
    chosen = set(ids[middle < n_images])
    split = split.copy()
    split[free & patients.isin(chosen)] = name
    return split


def patients_in_several_splits(frame: pd.DataFrame, keys: str | list[str]) -> pd.Series:
    """The sorted splits of each patient (index: ``keys``) found in more than one ``split``, by patient."""
    pairs = frame[[*([keys] if isinstance(keys, str) else keys), SPLIT_COLUMN]].drop_duplicates()
    pairs = pairs[pairs.duplicated(keys, keep=False)]  # only patients with two splits or more
    splits = pairs.groupby(keys, sort=True)[SPLIT_COLUMN].agg(lambda s: sorted(set(s)))
    return splits[splits.map(len) > 1]


def check_no_leakage(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """:class:`ManifestError` listing every ``patient_id`` found in more than one ``split``."""
    leaked = patients_in_several_splits(frame, "patient_id")
    if len(leaked):
        problems = [f"patient {p} is in splits {', '.join(s)}" for p, s in leaked.head(MAX_PROBLEMS).items()]
        raise ManifestError(path, ["patient leakage between splits:", *problems])


def finish_frame(frame: pd.DataFrame, columns: Sequence[str], source: str | os.PathLike) -> pd.DataFrame:
    """``frame`` reduced to image, split and ``columns`` in order, after the leakage check; ManifestError
    when empty."""
    if frame.empty:
        raise ManifestError(source, ["no image is left after filtering"])
    check_no_leakage(source, frame)
    return frame[[IMAGE_COLUMN, SPLIT_COLUMN, *columns]].reset_index(drop=True)


def split_table(frame: pd.DataFrame) -> str:
    """Images and patients per split, as a small plain-text table."""
    lines = [f"{'split':<12}{'images':>10}{'patients':>10}"]
    for split in SPLITS:
        part = frame[frame[SPLIT_COLUMN] == split]
        lines.append(f"{split:<12}{len(part):>10}{part['patient_id'].nunique():>10}")
    lines.append(f"{'total':<12}{len(frame):>10}{frame['patient_id'].nunique():>10}")
    return "\n".join(lines)
