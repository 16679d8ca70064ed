"""The prepared manifest CSV of ``medclf-prepare``: written atomically, image paths relative to its folder.

Lives in ``reporting`` because only ``reporting`` writes files; the preparations in
:mod:`medclf.data.prepare` build the frame and :mod:`medclf.workflows.prepare` calls :func:`write_manifest`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from medclf.data.manifest import IMAGE_COLUMN
from medclf.reporting.files import atomic_write, neutralise_cell

__all__ = ["write_manifest"]

log = logging.getLogger(__name__)


def write_manifest(frame: pd.DataFrame, out: str | os.PathLike) -> Path:
    """Write a manifest frame atomically as CSV (through :func:`medclf.reporting.files.atomic_write`).

    Image paths under the CSV's folder are written relative to it (so that the folder can move as a
    whole); all others stay absolute. Text cells that a spreadsheet would run as a formula get a leading
    ``'`` (:func:`~medclf.reporting.files.neutralise_cell`), which the manifest reader removes from ``image``.

    Returns:
        The CSV path.
    """
    out = Path(out)
    folder = os.path.abspath(out.parent)
    frame = frame.copy()
    parts = frame[IMAGE_COLUMN].str.rpartition(os.sep)
    mapping = {d: _relative_dir(d, folder) for d in parts[0].unique()}
    frame[IMAGE_COLUMN] = parts[0].map(mapping) + parts[2]
    for column in frame.select_dtypes(include=["object", "string"]).columns:  # numbers (labels 0/1) stay numbers
        frame[column] = frame[column].map(neutralise_cell)
    with atomic_write(out, "w", encoding="utf-8", newline="") as f:
        frame.to_csv(f, index=False, lineterminator="\n")
    log.info("wrote %d image(s) to %s", len(frame), out)
    return out


def _relative_dir(directory: str, folder: str) -> str:
    """``directory`` + separator, relative to ``folder`` when it lies inside it, else as is."""
    try:
        relative = os.path.relpath(directory, folder)
    except ValueError:  # another drive on Windows
        return directory + os.sep
    if relative == os.curdir:
        return ""
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return directory + os.sep
    return relative + os.sep
