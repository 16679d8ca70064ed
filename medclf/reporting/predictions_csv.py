"""Reading the ``predictions.csv`` that ``medclf.validate`` writes (for ``medclf.compare``), refusing
anything else: a header of another layout, a row cut short or with a missing cell, a probability that is
not a number in [0, 1], a truth other than 0, 1 or blank. Every refusal names the file, its line (the
header is line 1) and the column.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from medclf.errors import ComparisonError
from medclf.metrics.comparison import PredictionTable
from medclf.reporting.files import restore_cell

PREDICTIONS = "predictions.csv"
_NOT_VALIDATE = "not a predictions.csv as medclf.validate writes it"
_LAYOUT = "image, row, true_<label>..., prob_<label>..., optionally pred_<label>... and error"


def predictions_path(path: str | Path) -> Path:
    """The ``predictions.csv`` of a validate output folder, or ``path`` itself when it is a file.

    Raises:
        ComparisonError: when neither exists.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS
    if not path.is_file():
        raise ComparisonError(f"predictions not found: {path} (give a validate output folder or its {PREDICTIONS})")
    return path


def read_predictions(path: str | Path) -> PredictionTable:
    """One model's predictions from a ``predictions.csv`` written by ``medclf.validate``.

    The header must be validate's: ``image, row, true_<label>..., prob_<label>...``, then optionally
    ``pred_<label>...`` and ``error``; a blank truth is unknown. Rows of unreadable images (an ``error``,
    every truth, probability and decision blank) are left out and counted in ``skipped``.

    Raises:
        ComparisonError: for a missing or unreadable file, another header, a row cut short or with a blank
            cell, a probability that is not a number in [0, 1], a truth other than 0, 1 or blank.
    """
    path = predictions_path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        reader = csv.reader(io.StringIO(text, newline=""))
        records, start = [], 1
        for cells in reader:
            if cells:  # a blank line holds nothing; the numbering keeps it
                records.append((start, cells))
            start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ComparisonError(f"cannot read {path}: {e}") from None
    if not records:
        raise ComparisonError(f"{path} is empty: {_NOT_VALIDATE}")
    header = records[0][1]
    if not text.endswith(("\n", "\r")):
        line, cells = records[-1]
        raise ComparisonError(
            f"{path} line {line}, column {header[min(len(cells), len(header)) - 1]}: the file ends in this cell, "
            "without a line end: it was cut short (an interrupted write or copy?), as every row medclf.validate "
            "writes ends with one"
        )
    labels = _labels(path, header)
    images, prob_rows, truth_rows, skipped = [], [], [], 0
    for line, cells in records[1:]:
        row = _row_cells(path, line, header, cells)
        if row.get("error", "").strip():
            _check_blank(path, line, row, labels)
            skipped += 1
            continue
        images.append(restore_cell(row["image"]))  # as written before neutralising (write_csv)
        prob_rows.append([_probability(row, f"prob_{n}", path, line) for n in labels])
        truth_rows.append([_truth(row, f"true_{n}", path, line) for n in labels])
        for column in (c for c in header if c.startswith("pred_")):
            _zero_one(row, column, path, line, "a decision must be 0 or 1")
    if not images:
        raise ComparisonError(f"{path} has no predictions ({skipped} row(s) of unreadable images)")
    return PredictionTable(
        source=str(path),
        images=images,
        labels=labels,
        probs=np.array(prob_rows, dtype=np.float64),
        truth=np.array(truth_rows, dtype=np.float64),
        skipped=skipped,
    )


def _labels(path: Path, header: list[str]) -> list[str]:
    """The labels of validate's header, which must be exactly ``image, row, true_*, prob_*[, pred_*][, error]``."""
    labels = [c[len("prob_") :] for c in header if c.startswith("prob_")]
    if labels and header[:2] == ["image", "row"] and not any(c.startswith("true_") for c in header):
        raise ComparisonError(
            f"{path} has no true_<label> column for its prob_ columns: predictions without truth (from "
            "medclf.predict?) cannot be compared; use the predictions.csv of medclf.validate"
        )
    expected = ["image", "row", *(f"true_{n}" for n in labels), *(f"prob_{n}" for n in labels)]
    if any(c.startswith("pred_") for c in header):
        expected += [f"pred_{n}" for n in labels]
    if "error" in header:
        expected.append("error")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ComparisonError(f"{path} line 1: column {repeated[0]} appears more than once; {_NOT_VALIDATE}")
    for k, (found, want) in enumerate(zip(header, expected, strict=False), start=1):
        if found != want:
            raise ComparisonError(
                f"{path} line 1, column {k}: {found!r} where medclf.validate writes {want!r}; "
                f"{_NOT_VALIDATE} ({_LAYOUT})"
            )
    if len(header) != len(expected) or not labels:
        what = f"column {header[len(expected)]!r} is unexpected" if len(header) > len(expected) else "it lacks columns"
        raise ComparisonError(f"{path} line 1 (header): {what}; {_NOT_VALIDATE} ({_LAYOUT})")
    return labels


def _row_cells(path: Path, line: int, header: list[str], cells: list[str]) -> dict[str, str]:
    """The row as ``{column: cell}``; raises when it has fewer or more cells than the header, or no image."""
    if len(cells) < len(header):
        raise ComparisonError(
            f"{path} line {line}, column {header[len(cells)]}: missing; the row has {len(cells)} of "
            f"{len(header)} cells (a file cut short or edited? medclf.validate writes every cell)"
        )
    if len(cells) > len(header):
        raise ComparisonError(f"{path} line {line}: {len(cells)} cells, but the header has {len(header)} columns")
    row = dict(zip(header, cells, strict=True))
    if not row["image"].strip():
        raise ComparisonError(f"{path} line {line}, column image: blank; every row names its image")
    try:
        int(row["row"])
    except ValueError:
        raise ComparisonError(f"{path} line {line}, column row: {row['row']!r} is not a manifest row number") from None
    return row


def _check_blank(path: Path, line: int, row: dict[str, str], labels: list[str]) -> None:
    """A row of an unreadable image must be as validate writes it: no truth, probability or decision."""
    for column in (f"{kind}_{n}" for n in labels for kind in ("true", "prob", "pred")):
        if row.get(column, "").strip():
            raise ComparisonError(
                f"{path} line {line}, column {column}: {row[column]!r} in the row of an unreadable image "
                f"(error {row['error']!r}), where medclf.validate leaves it blank; {_NOT_VALIDATE}"
            )


def _probability(row: dict[str, str], column: str, path: Path, line: int) -> float:
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also false for NaN
        what = "blank (a missing cell)" if not text else f"{text!r} is not a probability (a number in [0, 1])"
        raise ComparisonError(f"{path} line {line}, column {column}: {what}")
    return value


def _zero_one(row: dict[str, str], column: str, path: Path, line: int, rule: str) -> float:
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value not in (0.0, 1.0):
        raise ComparisonError(f"{path} line {line}, column {column}: {rule}, got {text!r}")
    return value


def _truth(row: dict[str, str], column: str, path: Path, line: int) -> float:
    if not row[column].strip():
        return math.nan  # unknown truth: masked for this label, as everywhere in medclf
    return _zero_one(row, column, path, line, "truth must be 0, 1 or blank")
