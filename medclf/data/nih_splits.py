"""Reading and splitting helpers behind :mod:`medclf.data.nih`.

The NIH finding names and manifest columns, the reader of the official label file (``Finding Labels``
parsed into 0/1 label columns), the official image lists, and the patient-wise split assignment and
leakage checks. Everything is vectorised over the 112,120 rows of the full file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, NIH_LABELS, SPLIT_COLUMN, SPLITS
from medclf.errors import ConfigError, ManifestError

log = logging.getLogger(__name__)

#: Finding names as spelled in the NIH label file, mapped to manifest label columns.
NIH_FINDINGS: dict[str, str] = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "effusion",
    "Infiltration": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Emphysema": "emphysema",
    "Fibrosis": "fibrosis",
    "Pleural_Thickening": "pleural_thickening",
    "Hernia": "hernia",
}
NO_FINDING = "No Finding"
EXTRA_COLUMNS: tuple[str, ...] = ("patient_id", "age", "sex", "view")
#: Columns of the prepared manifest, in order.
MANIFEST_COLUMNS: tuple[str, ...] = (IMAGE_COLUMN, SPLIT_COLUMN, *NIH_LABELS, *EXTRA_COLUMNS)

_IMAGE = "Image Index"
_FINDINGS = "Finding Labels"
_SOURCE_COLUMNS = {
    _IMAGE: None,
    _FINDINGS: None,
    "Patient ID": "patient_id",
    "Patient Age": "age",
    "Patient Gender": "sex",
    "View Position": "view",
}
_ALLOWED_NAMES = ", ".join([*NIH_FINDINGS, NO_FINDING])
MAX_PROBLEMS = 50


def _key(name: str) -> str:
    # Tolerate case and space/underscore differences ("pleural thickening"), nothing else.
    return name.strip().lower().replace(" ", "_")


_LABEL_INDEX = {_key(name): NIH_LABELS.index(label) for name, label in NIH_FINDINGS.items()}


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


def read_label_file(path: Path) -> pd.DataFrame:
    """The label file as a frame: ``name``, the extra columns and one 0/1 int column per label."""
    raw = _read_data_entry(path)
    labels = _parse_findings(path, raw)
    columns = {"name": raw[_IMAGE].to_numpy()}
    columns.update({target: raw[source].to_numpy() for source, target in _SOURCE_COLUMNS.items() if target})
    columns.update({label: labels[:, j] for j, label in enumerate(NIH_LABELS)})
    frame = pd.DataFrame(columns)
    frame["view"] = frame["view"].str.upper()
    return frame


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


def _read_data_entry(path: Path) -> pd.DataFrame:
    raw = read_source_csv(path, list(_SOURCE_COLUMNS), "label file")
    for column in _SOURCE_COLUMNS:
        raw[column] = raw[column].str.strip()
    problems = []
    rows = np.arange(len(raw)) + 2  # header is row 1
    for column in (_IMAGE, "Patient ID"):
        for row in rows[(raw[column] == "").to_numpy()][:MAX_PROBLEMS]:
            problems.append(f"row {row}, column {column!r}: blank")
    duplicated = raw[_IMAGE].duplicated(keep="first").to_numpy() & (raw[_IMAGE] != "").to_numpy()
    if duplicated.any():
        first = dict(zip(raw[_IMAGE][::-1], rows[::-1], strict=True))
        for row in rows[duplicated][:MAX_PROBLEMS]:
            name = raw[_IMAGE].iat[row - 2]
            problems.append(f"row {row}, column {_IMAGE!r}: {name} repeats row {first[name]}")
    if problems:
        raise ManifestError(path, problems)
    return raw


def _parse_findings(path: Path, raw: pd.DataFrame) -> np.ndarray:
    """(n_rows, 14) int64 0/1 matrix from ``Finding Labels``, parsing each distinct value once."""
    codes, uniques = pd.factorize(raw[_FINDINGS], sort=False)
    table = np.zeros((len(uniques), len(NIH_LABELS)), dtype=np.int64)
    bad: dict[int, str] = {}
    for i, value in enumerate(uniques):
        problem = None
        tokens = [t.strip() for t in str(value).split("|")]
        if not str(value).strip():
            problem = "blank; expected findings joined by '|' or 'No Finding'"
        elif any(not t for t in tokens):
            problem = f"{value!r} has an empty finding name (stray '|')"
        elif _key(NO_FINDING) in map(_key, tokens):
            if len(tokens) > 1:
                problem = f"{value!r} combines '{NO_FINDING}' with findings"
        else:
            unknown = [t for t in tokens if _key(t) not in _LABEL_INDEX]
            if unknown:
                names = ", ".join(repr(t) for t in unknown)
                problem = f"unknown finding {names} in {value!r}; expected one of {_ALLOWED_NAMES}"
            else:
                table[i, [_LABEL_INDEX[_key(t)] for t in tokens]] = 1
        if problem:
            bad[i] = problem
    if bad:
        rows = np.flatnonzero(np.isin(codes, list(bad)))
        problems = [
            f"row {r + 2} ({raw[_IMAGE].iat[r]}), column {_FINDINGS!r}: {bad[codes[r]]}" for r in rows[:MAX_PROBLEMS]
        ]
        if len(rows) > MAX_PROBLEMS:
            problems.append(f"... {len(rows) - MAX_PROBLEMS} more row(s) with bad findings")
        raise ManifestError(path, problems)
    return table[codes]


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
        split = _assign(frame, split, "TEST", fractions[2] * len(frame), rng)
    split = _assign(frame, split, "VALIDATION", fractions[1] * len(frame), rng)
    split = split.copy()
    split[split == ""] = "TRAIN"
    frame = frame.assign(split=split.to_numpy())
    _check_no_leakage(data_entry, frame)
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


def _assign(frame: pd.DataFrame, split: pd.Series, name: str, n_images: float, rng: np.random.Generator) -> pd.Series:
    """Give ``name`` to random whole patients of the unassigned rows, about ``n_images`` images in all."""
    free = split == ""
    counts = frame["patient_id"][free].value_counts().sort_index()
    if n_images <= 0 or counts.empty:
        return split
    order = rng.permutation(len(counts))
    sizes = counts.to_numpy()[order]
    middle = np.cumsum(sizes) - sizes / 2  # a patient goes in when its middle image is within the target
    chosen = set(counts.index[order[middle < n_images]])
    split = split.copy()
    split[free & frame["patient_id"].isin(chosen)] = name
    return split


def _check_no_leakage(path: Path, frame: pd.DataFrame) -> None:
    per_patient = frame.groupby("patient_id", sort=True)["split"].nunique()
    leaked = per_patient[per_patient > 1]
    if len(leaked):
        problems = [
            f"patient {p} is in splits {', '.join(sorted(set(frame['split'][frame['patient_id'] == p])))}"
            for p in leaked.index[:MAX_PROBLEMS]
        ]
        raise ManifestError(path, ["patient leakage between splits:", *problems])


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
