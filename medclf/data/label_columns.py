"""Label columns of a manifest CSV by name: ``--label-map`` renaming and its checks, and the hint for a
column that differs from a label only in case.

A renaming that cannot do what it says is refused rather than ignored: an entry whose column is in none
of the CSVs, a target that is not a label (both with the closest spelling), or two columns that would end
up with one name.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from medclf.errors import ConfigError, ManifestError


def case_hint(name: str, columns: Sequence[object]) -> str:
    """`` (found 'Cardiomegaly'; names are case-sensitive)`` when a column differs from ``name`` only in case."""
    lowered = {str(c).lower(): c for c in columns}
    return f" (found {lowered[name.lower()]!r}; names are case-sensitive)" if name.lower() in lowered else ""


def check_label_map(paths: Sequence[Path], label_map: Mapping[str, str], labels: Sequence[str]) -> None:
    """Refuse ``--label-map`` entries that would be ignored: a column in none of ``paths``, a target not a label.

    With several CSVs an entry may be meant for one of them, so only a column that none has is an error.

    Raises:
        ConfigError: naming each such entry, the CSV(s) and the closest spelling.
    """
    headers = [header for header in (_header(p) for p in paths) if header]
    columns = sorted({c for header in headers for c in header})
    where = str(paths[0]) if len(paths) == 1 else "any of " + ", ".join(map(str, paths))
    problems = []
    for old, new in label_map.items():
        if headers and all(old not in header for header in headers):
            problems.append(f"{old}={new}: no column {old!r} in {where}{_closest(old, columns, 'columns')}")
        if new not in labels:
            problems.append(f"{old}={new}: {new!r} is not one of the labels{_closest(new, labels, 'labels')}")
    if problems:
        raise ConfigError("--label-map " + "; ".join(problems))


def rename_columns(path: Path, raw: pd.DataFrame, label_map: Mapping[str, str]) -> pd.DataFrame:
    """``raw`` with its columns renamed by ``label_map``.

    Raises:
        ManifestError: two columns would get one name (``a=effusion,b=effusion``, or a target the CSV
            already has as a column).
    """
    renamed = [label_map.get(str(c), str(c)) for c in raw.columns]
    problems = []
    for name in sorted({n for n in renamed if renamed.count(n) > 1}):
        sources = [str(c) for c, n in zip(raw.columns, renamed, strict=True) if n == name]
        given = [f"{c}={name}" for c in sources if c in label_map]
        kept = f" and the CSV's own column {name!r}" if name in sources and name not in label_map else ""
        problems.append(f"--label-map {', '.join(given)}{kept}: two columns would be named {name!r}")
    if problems:
        raise ManifestError(path, problems)
    return raw.set_axis(renamed, axis=1)


def _closest(name: str, names: Sequence[str], what: str) -> str:
    """`` (did you mean 'x'?)`` by :func:`difflib.get_close_matches` (case aside), else the names if few."""
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    if close:
        return f" (did you mean {lowered[close[0]]!r}?)"
    return f" ({what}: {', '.join(names)})" if len(names) <= 20 else ""


def _header(path: Path) -> list[str]:
    """The header cells of a CSV, or [] when it cannot be read (reading the manifest then says why)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f, skipinitialspace=True), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
