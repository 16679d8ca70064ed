"""Several data sets in one run: the union of manifests, each row tagged with the data set it came from.

``--csv nih.csv --csv chexpert.csv`` trains on both. A label column that one manifest lacks is unknown
(masked out of the loss and the metrics) for that manifest's images, so sets with different findings can
be combined; each label must be present in at least one of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from medclf.data.label_columns import check_label_map
from medclf.data.manifest import IMAGE_COLUMN, NIH_LABELS, SPLIT_COLUMN, Manifest
from medclf.errors import ConfigError, ManifestError

log = logging.getLogger(__name__)

#: Column naming the data set of each row: kept from the CSV when it has one, else the CSV's file name.
SOURCE_COLUMN = "source"


def read_manifests(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    labels: Sequence[str] = NIH_LABELS,
    *,
    required_splits: Iterable[str] = ("TRAIN", "VALIDATION"),
    require_labels: bool = True,
    check_files: bool = True,
    label_map: Mapping[str, str] | None = None,
    allow_absent_labels: bool = False,
) -> Manifest:
    """Read one manifest or the union of several, with a ``source`` column on every row.

    Args:
        paths: One CSV or several. Relative image paths resolve against each CSV's own folder.
        labels: Label columns, in output order. With several CSVs each must be in at least one of them;
            the others' images have it unknown.
        required_splits: Splits that must have rows (in the union).
        require_labels, check_files, label_map, allow_absent_labels: As for :meth:`Manifest.from_csv`;
            ``allow_absent_labels`` lets a label be absent from every CSV (external test sets).

    Raises:
        ManifestError: naming the file, row and column of every problem, or an image listed twice.
    """
    paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not paths:
        raise ConfigError("no manifest CSV given")
    _check_distinct_files(paths)
    if label_map:
        check_label_map(paths, label_map, labels)
    kwargs = {"require_labels": require_labels, "check_files": check_files, "label_map": label_map}
    names = source_names(paths)
    if len(paths) == 1:
        manifest = Manifest.from_csv(
            paths[0], labels, required_splits=required_splits, allow_absent_labels=allow_absent_labels, **kwargs
        )
        return _replace_frame(manifest, _tag_source(manifest.frame, names[0]), paths, manifest.absent_labels)
    parts = [Manifest.from_csv(p, labels, required_splits=(), allow_absent_labels=True, **kwargs) for p in paths]
    absent = tuple(name for name in labels if all(name in m.absent_labels for m in parts)) if require_labels else ()
    problems = [f"label column '{name}' is in none of the manifests" for name in absent if not allow_absent_labels]
    for part in parts:
        if require_labels and part.absent_labels and not set(part.absent_labels) <= set(absent):
            log.info("%s has no column(s) %s: unknown (masked) for its %d images",
                     part.path, ", ".join(part.absent_labels), len(part.frame))  # fmt: skip
    _check_source_names(paths, parts, names)
    frame = pd.concat([_tag_source(m.frame, n) for m, n in zip(parts, names, strict=True)], ignore_index=True)
    frame = frame.fillna({c: "" for c in frame.columns if c not in labels})
    problems += _duplicates_across(parts)
    for split in (s.upper() for s in required_splits):
        if not (frame[SPLIT_COLUMN] == split).any():
            problems.append(f"split {split} has no rows in any of the manifests; at least one is needed")
    if problems:
        raise ManifestError(" + ".join(map(str, paths)), problems)
    return _replace_frame(parts[0], frame, paths, absent)


def source_names(paths: Sequence[Path]) -> list[str]:
    """A short, distinct name per CSV: its file name without ``.csv``, with parent folders when two clash."""
    depth = 1
    while True:
        names = ["/".join(Path(os.path.abspath(p)).with_suffix("").parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth > 8:
            return names
        depth += 1


def _check_distinct_files(paths: Sequence[Path]) -> None:
    """Refuse a manifest given twice, however spelled (``a.csv``, ``./a.csv``, its absolute path, a link to it).

    Its images would count twice: in the metrics of validate, and as weight in training.
    """
    seen: dict[object, Path] = {}
    for path in paths:
        try:
            info = os.stat(path)
            key: object = (info.st_dev, info.st_ino)
        except OSError:  # a missing file: reading it names it
            key = os.path.realpath(path)
        if key in seen:
            again = "" if str(seen[key]) == str(path) else f" (again as {path})"
            raise ConfigError(f"--csv gives the manifest {seen[key]} twice{again}: its images would count twice")
        seen[key] = path


def _check_source_names(paths: Sequence[Path], parts: Sequence[Manifest], names: Sequence[str]) -> None:
    """Refuse a ``source`` cell of one CSV equal to the name another CSV's rows get from its file name.

    Two data sets would merge under one name without notice (in the per-source counts, subgroups and the
    per-source patient check).
    """
    for path, part in zip(paths, parts, strict=True):
        if SOURCE_COLUMN not in part.frame.columns:
            continue
        given = set(part.frame[SOURCE_COLUMN].astype(str).str.strip()) - {""}
        for other, other_part, name in zip(paths, parts, names, strict=True):
            named = (
                SOURCE_COLUMN not in other_part.frame.columns
                or (other_part.frame[SOURCE_COLUMN].astype(str).str.strip() == "").any()
            )
            if other != path and named and name in given:
                raise ManifestError(
                    path,
                    [
                        f"column '{SOURCE_COLUMN}': {name!r} is also the name of the data set {other} (its file "
                        "name); rename one, e.g. give that CSV a source column"
                    ],
                )


def _tag_source(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Keep a ``source`` column the CSV already has (blank cells get ``name``), else add one."""
    frame = frame.copy()
    if SOURCE_COLUMN in frame.columns:
        given = frame[SOURCE_COLUMN].astype(str).str.strip()
        frame[SOURCE_COLUMN] = given.where(given != "", name)
    else:
        frame[SOURCE_COLUMN] = name
    return frame


def _duplicates_across(parts: Sequence[Manifest]) -> list[str]:
    """One problem per image that two manifests both list (it would count twice, maybe in two splits)."""
    seen: dict[str, tuple[Path, int]] = {}
    problems = []
    for part in parts:
        for image, row in zip(part.frame[IMAGE_COLUMN], part.frame["csv_row"], strict=True):
            if image in seen and seen[image][0] != part.path:
                first, first_row = seen[image]
                problems.append(f"{part.path} row {row}: image {image} is also in {first} (row {first_row})")
            seen.setdefault(image, (part.path, int(row)))
    return problems


def _replace_frame(manifest: Manifest, frame: pd.DataFrame, paths: list[Path], absent: tuple[str, ...]) -> Manifest:
    return Manifest(
        path=paths[0],
        labels=manifest.labels,
        frame=frame.reset_index(drop=True),
        has_labels=manifest.has_labels,
        absent_labels=absent,
        files=tuple(paths),
    )
