"""The NIH ChestX-ray14 label file: finding names, manifest columns, and the reader of
``Data_Entry_2017_v2020.csv`` (``Finding Labels`` parsed into 0/1 label columns, vectorised over the
112,120 rows of the full file). Used by :mod:`medclf.data.prepare.nih`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN, NIH_LABELS, SPLIT_COLUMN
from medclf.data.prepare.common import MAX_PROBLEMS, read_source_csv
from medclf.errors import ManifestError

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


def _key(name: str) -> str:
    # Tolerate case and space/underscore differences ("pleural thickening"), nothing else.
    return name.strip().lower().replace(" ", "_")


_LABEL_INDEX = {_key(name): NIH_LABELS.index(label) for name, label in NIH_FINDINGS.items()}


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
