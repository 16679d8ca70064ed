"""Reading a CSV as text cells with each row's line number in the file, robust to what spreadsheets
export: blank lines (skipped, the numbering kept) and a delimiter at the end of every line."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from medclf.errors import ManifestError

log = logging.getLogger(__name__)


def read_csv_cells(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """All cells as text, and each row's line number in the file (blank lines skipped, not renumbered).

    A delimiter at the end of every row (a common spreadsheet export) is ignored instead of shifting the
    columns; a row with more cells than the header is an error naming its line.
    """
    if not path.is_file():
        raise ManifestError(path, [f"file not found: {path}"])
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header = [h.strip() for h in next(reader, [])]
            records, lines, start = [], [], reader.line_num + 1
            for record in reader:
                if any(cell.strip() for cell in record):
                    records.append(record)
                    lines.append(start)
                start = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(path, [f"cannot read the CSV: {e}"]) from None
    if not header or not any(header):
        raise ManifestError(path, ["cannot read the CSV: the file is empty (no header line)"])
    header, records = _drop_trailing_delimiter(path, header, records)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ManifestError(path, [f"column {h!r} appears more than once in the header" for h in duplicated])
    long = [f"row {line}: {len(r)} cells, but the header has {len(header)} columns"
            for line, r in zip(lines, records, strict=True) if len(r) > len(header)]  # fmt: skip
    if long:
        raise ManifestError(path, long)
    padded = [[cell.strip() for cell in r] + [""] * (len(header) - len(r)) for r in records]
    return pd.DataFrame(padded, columns=header, dtype=str), lines


def _drop_trailing_delimiter(path: Path, header: list[str], records: list[list[str]]) -> tuple[list[str], list]:
    """Remove the empty last cell that a delimiter at the end of each line leaves, in header and rows."""
    width = len(header) - 1 if header[-1] == "" else len(header)
    if records and all(len(r) == width + 1 and not r[-1].strip() for r in records):
        log.info("%s: every row ends with a delimiter; the empty last column is ignored", path)
        return header[:width], [r[:width] for r in records]
    return header[:width] if not any(len(r) > width for r in records) else header, records
