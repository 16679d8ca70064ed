"""The CSV manifest: one row per image, a split, and one 1/0/-1/blank column per label.

Everything a manifest can get wrong is checked here, before any image is decoded or any model is built,
and reported in one :class:`~medclf.errors.ManifestError` that lists every problem with its file, row
and column. Row numbers count the header as row 1, as spreadsheet programs do.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.config.choices import NIH_LABELS, SPLITS, UNCERTAIN_POLICIES
from medclf.data.csv_cells import read_csv_cells
from medclf.data.label_columns import case_hint, rename_columns
from medclf.errors import ManifestError
from medclf.reporting.files import restore_cell

IMAGE_COLUMN = "image"
SPLIT_COLUMN = "split"
# Keys that the data pipeline puts in each sample; a label may not shadow them.
RESERVED_NAMES = frozenset({IMAGE_COLUMN, SPLIT_COLUMN, "labels", "path", "row", "index", "error"})
_TRUE = frozenset({"1", "1.0"})
_FALSE = frozenset({"0", "0.0"})
_UNCERTAIN = frozenset({"-1", "-1.0"})
_MISSING = frozenset({"", "nan"})


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.

    Attributes:
        path: The CSV file.
        labels: Label names, in model output order.
        frame: One row per image with ``image`` (absolute path), ``split`` (upper case, or empty when the
            CSV has no split column), the label columns as float32 (1, 0, -1 uncertain, NaN missing; absent when
            ``has_labels`` is False),
            ``csv_row`` (the CSV row number) and any extra columns of the CSV, as text.
        has_labels: Whether the label columns were read.
        absent_labels: Labels with no column in the CSV(s) (external test sets); unknown everywhere.
        files: Every CSV read: ``(path,)``, or several when data sets were combined
            (:func:`medclf.data.sources.read_manifests`).
    """

    path: Path
    labels: tuple[str, ...]
    frame: pd.DataFrame
    has_labels: bool = True
    absent_labels: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.files:
            object.__setattr__(self, "files", (self.path,))

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        labels: Sequence[str] = NIH_LABELS,
        *,
        required_splits: Iterable[str] = ("TRAIN", "VALIDATION"),
        require_labels: bool = True,
        check_files: bool = True,
        label_map: Mapping[str, str] | None = None,
        allow_absent_labels: bool = False,
    ) -> Manifest:
        """Read and validate a manifest.

        Args:
            path: CSV file. Relative image paths are resolved against its folder.
            labels: Label columns to read (all must be present when ``require_labels``).
            required_splits: Splits that must hold at least one row. Empty for inference.
            require_labels: Read and check the label columns. False for unlabeled inference lists.
            check_files: Check that every image file exists.
            label_map: CSV column name -> label name, applied before anything else (e.g.
                ``{"pleural_effusion": "effusion"}`` for a data set that names a finding differently).
            allow_absent_labels: An external test set may lack some label columns: they are treated as
                unknown (all blank) and listed in ``absent_labels``; at least one must be present.

        Raises:
            ManifestError: listing every problem found.
        """
        path = Path(path)
        labels = tuple(labels)
        required_splits = tuple(s.upper() for s in required_splits)
        raw, lines = read_csv_cells(path)
        if label_map:
            raw = rename_columns(path, raw, label_map)
        absent = _absent_labels(path, raw, labels) if allow_absent_labels else ()
        for name in absent:
            raw[name] = ""  # unknown everywhere
        problems: list[str] = []
        problems += _check_label_names(labels, require_labels)
        problems += _check_header(path, raw, labels, require_labels, required_splits)
        if problems:
            raise ManifestError(path, problems)

        rows = np.asarray(lines, dtype=np.int64)  # the file's own line numbers; the header is row 1
        frame = raw.copy()
        frame["csv_row"] = rows
        problems += _check_images(path, frame, check_files)
        if SPLIT_COLUMN in raw.columns:
            problems += _check_splits(frame)
        else:
            frame[SPLIT_COLUMN] = ""
        if require_labels:
            problems += _check_labels(frame, labels)
        for split in required_splits:
            if not (frame[SPLIT_COLUMN] == split).any():
                problems.append(f"column '{SPLIT_COLUMN}': split {split} has no rows; at least one is needed")
        if problems:
            raise ManifestError(path, problems)
        if require_labels:
            frame[list(labels)] = frame[list(labels)].apply(_label_values).astype("float32")
        frame = frame.reset_index(drop=True)
        return cls(path=path, labels=labels, frame=frame, has_labels=require_labels, absent_labels=absent)

    def select(self, split: str | None) -> pd.DataFrame:
        """Rows of one split (case-insensitive), or all rows when ``split`` is None."""
        if split is None:
            return self.frame
        split = split.upper()
        if split not in SPLITS:
            raise ManifestError(self.path, [f"unknown split {split!r}; expected one of {', '.join(SPLITS)}"])
        return self.frame[self.frame[SPLIT_COLUMN] == split]

    def records(self, split: str | None, uncertain: str = "ignore") -> list[dict]:
        """Samples of one split as dictionaries for MONAI dictionary transforms.

        Each holds ``image`` (path), ``row``, ``index`` (position in the split) and, when the manifest has
        labels, one float32 array of shape (1,) per label, which ``ConcatItemsd`` joins into ``labels``:
        1 or 0, or NaN where the label is unknown (masked out of the loss and the metrics).

        Args:
            split: TRAIN, VALIDATION, TEST, or None for all rows.
            uncertain: What a -1 becomes: ``ignore`` (NaN, masked), ``ones`` or ``zeros``.
        """
        part = self.select(split)
        values = self.targets(split, uncertain) if self.has_labels else None
        out = []
        for i, (image, row) in enumerate(zip(part[IMAGE_COLUMN], part["csv_row"], strict=True)):
            item: dict = {"image": image, "row": int(row), "index": i}
            if values is not None:
                item.update({name: values[i, j : j + 1] for j, name in enumerate(self.labels)})
            out.append(item)
        return out

    def label_matrix(self, split: str | None) -> np.ndarray:
        """(n_images, n_labels) float32 matrix of one split as in the CSV: 1, 0, -1 (uncertain), NaN (missing)."""
        return self.select(split)[list(self.labels)].to_numpy(np.float32)

    def targets(self, split: str | None, uncertain: str = "ignore") -> np.ndarray:
        """(n_images, n_labels) float32 training targets: 1, 0, or NaN (unknown) after the uncertainty policy."""
        if uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}; got {uncertain!r}")
        matrix = self.label_matrix(split)
        replacement = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[uncertain]
        return np.where(matrix == -1, np.float32(replacement), matrix).astype(np.float32)

    def positives(self, split: str | None = None) -> pd.DataFrame:
        """Positives, negatives, uncertain (-1) and missing (blank) per label and split, as in the CSV.

        Args:
            split: One split, or None for every split that has rows (``ALL`` when the CSV has no split
                column).

        Returns:
            A table with the columns ``split, label, positives, negatives, uncertain, missing``, one row per
            split and label; e.g. ``m.positives("TRAIN").set_index("label")["positives"]`` is the number of
            positive images per label in TRAIN.
        """
        if split is None:
            present = [s for s in SPLITS if (self.frame[SPLIT_COLUMN] == s).any()]
            splits: list[str | None] = present or [None]
        else:
            splits = [split.upper()]
        rows = [
            {"split": name or "ALL", "label": label, **counts}
            for name in splits
            for label, counts in self.label_counts(name).items()
        ]
        return pd.DataFrame(rows, columns=["split", "label", "positives", "negatives", "uncertain", "missing"])

    def label_counts(self, split: str | None) -> dict[str, dict[str, int]]:
        """Per label: ``positives``, ``negatives``, ``uncertain`` (-1) and ``missing`` (blank) in one split."""
        matrix = self.label_matrix(split)
        kinds = {"positives": matrix == 1, "negatives": matrix == 0, "uncertain": matrix == -1}
        kinds["missing"] = np.isnan(matrix)
        return {
            name: {kind: int(mask[:, j].sum()) for kind, mask in kinds.items()} for j, name in enumerate(self.labels)
        }


def _label_values(column: pd.Series) -> pd.Series:
    """Checked label text -> 1.0, 0.0, -1.0 or NaN."""
    text = column.str.strip().str.lower()
    return text.map(lambda v: 1.0 if v in _TRUE else 0.0 if v in _FALSE else -1.0 if v in _UNCERTAIN else np.nan)


def _absent_labels(path: Path, raw: pd.DataFrame, labels: tuple[str, ...]) -> tuple[str, ...]:
    """Labels without a column; a column that differs only in case is a misspelling, refused with its hint."""
    absent = tuple(name for name in labels if name not in raw.columns)
    misspelt = [f"missing label column '{n}'{case_hint(n, raw.columns)}" for n in absent if case_hint(n, raw.columns)]
    if misspelt:
        raise ManifestError(path, misspelt)
    if absent and len(absent) == len(labels):
        raise ManifestError(path, [f"none of the label columns is present: {', '.join(labels)}"])
    return absent


def _check_label_names(labels: tuple[str, ...], require_labels: bool) -> list[str]:
    problems = []
    if require_labels and not labels:
        problems.append("no label columns were requested")
    for name in labels:
        if name in RESERVED_NAMES:
            problems.append(f"label name {name!r} is reserved; rename that column")
    if len(set(labels)) != len(labels):
        problems.append(f"label names repeat: {', '.join(labels)}")
    return problems


def _check_header(
    path: Path, raw: pd.DataFrame, labels: tuple[str, ...], require_labels: bool, required_splits: tuple
) -> list[str]:
    problems = []
    columns = list(raw.columns)
    if IMAGE_COLUMN not in columns:
        problems.append(f"missing column '{IMAGE_COLUMN}' (found: {', '.join(map(str, columns)) or 'none'})")
    if required_splits and SPLIT_COLUMN not in columns:
        problems.append(f"missing column '{SPLIT_COLUMN}' (values TRAIN, VALIDATION or TEST)")
    if require_labels:
        for name in labels:
            if name not in columns:
                problems.append(f"missing label column '{name}'{case_hint(name, columns)}")
    if not problems and raw.empty:
        problems.append("the CSV has a header but no rows")
    return problems


def _check_images(path: Path, frame: pd.DataFrame, check_files: bool) -> list[str]:
    problems = []
    base = Path(os.path.abspath(path)).parent  # absolute, so saved paths work from any folder
    resolved = []
    for row, value in zip(frame["csv_row"], frame[IMAGE_COLUMN], strict=True):
        value = restore_cell(value.strip()).strip()  # medclf writes '=x.png as '=x.png (formula injection)
        if not value:
            problems.append(f"row {row}, column '{IMAGE_COLUMN}': empty image path")
            resolved.append("")
            continue
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base / p
        full = os.path.normpath(p)
        resolved.append(full)
        if check_files and not os.path.isfile(full):
            problems.append(f"row {row}, column '{IMAGE_COLUMN}': {_missing_why(full)}: {full}")
    frame[IMAGE_COLUMN] = resolved
    seen: dict[str, int] = {}
    for row, full in zip(frame["csv_row"], resolved, strict=True):
        if not full:
            continue
        if full in seen:
            problems.append(f"row {row}, column '{IMAGE_COLUMN}': duplicate of row {seen[full]} (same image {full})")
        else:
            seen[full] = row
    return problems


def _missing_why(full: str) -> str:
    """Why a path is not a readable image file: absent, a link loop, a dangling link, a folder."""
    if os.path.islink(full):
        try:
            os.stat(full)
        except OSError as e:
            return "symbolic link loop" if e.errno == errno.ELOOP else "broken symbolic link (its target is missing)"
    if os.path.isdir(full):
        return "a folder, not an image file"
    return "image file not found"


def _check_splits(frame: pd.DataFrame) -> list[str]:
    problems = []
    split = frame[SPLIT_COLUMN].str.strip().str.upper()
    for row, original, value in zip(frame["csv_row"], frame[SPLIT_COLUMN], split, strict=True):
        if value not in SPLITS:
            problems.append(f"row {row}, column '{SPLIT_COLUMN}': {original!r} is not one of {', '.join(SPLITS)}")
    frame[SPLIT_COLUMN] = split
    return problems


def _check_labels(frame: pd.DataFrame, labels: tuple[str, ...]) -> list[str]:
    problems = []
    allowed = _TRUE | _FALSE | _UNCERTAIN | _MISSING
    for name in labels:
        values = frame[name].str.strip().str.lower()
        bad = ~values.isin(allowed)
        for row, value in zip(frame.loc[bad, "csv_row"], frame.loc[bad, name], strict=True):
            problems.append(f"row {row}, column '{name}': {value!r} is not 1, 0, -1 (uncertain) or blank (missing)")
    return problems
