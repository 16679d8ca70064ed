"""Study designs on a manifest: patient-wise, label-stratified folds and TRAIN subsets.

:func:`assign_folds` draws k folds over TRAIN and VALIDATION together (TEST is never touched);
:func:`train_subset` keeps a share of TRAIN for a learning curve. Both keep every image of a patient
together and spread each label's positive patients as evenly as the patients allow (greedy, rarest label
first, seeded). :func:`study_manifest` applies a saved fold (``folds.csv``) and a share to a manifest.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medclf.data.csv_cells import read_csv_cells
from medclf.data.manifest import IMAGE_COLUMN, SPLIT_COLUMN, Manifest
from medclf.errors import ConfigError

log = logging.getLogger(__name__)

#: The splits cross-validation draws its folds from.
STUDY_SPLITS = ("TRAIN", "VALIDATION")
FOLDS_COLUMNS = ("image", "patient", "fold")


def patient_ids(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Each row's patient (the ``column`` text; an image without one is its own patient)."""
    if column not in frame.columns:
        return frame[IMAGE_COLUMN].astype(str).to_numpy()
    named = frame[column].astype(str).str.strip()
    return np.where(named != "", named, "image:" + frame[IMAGE_COLUMN].astype(str)).astype(str)


def _patient_table(patients: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct patients, each row's patient index, positives per patient and label, and images per patient."""
    names, index = np.unique(patients, return_inverse=True)
    positive = np.zeros((len(names), targets.shape[1]), dtype=bool)
    np.logical_or.at(positive, index, np.nan_to_num(targets, nan=0.0) == 1)
    return names, index, positive, np.bincount(index, minlength=len(names))


def _stratified_order(positive: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patients in a seeded order, those with the rarest positive label first, and that label (-1: none)."""
    rng = np.random.default_rng(seed)
    totals = positive.sum(axis=0)
    rarity = np.where(positive, totals[None, :], np.iinfo(np.int64).max)
    rarest = np.where(positive.any(axis=1), rarity.argmin(axis=1), -1)
    # by the rarest label's count, then the label itself, so that labels of equal counts form separate strata
    key = np.where(rarest >= 0, totals[np.maximum(rarest, 0)] * (len(totals) + 1) + rarest, np.iinfo(np.int64).max)
    shuffled = rng.permutation(len(positive))
    order = shuffled[np.argsort(key[shuffled], kind="stable")]
    return order, rarest


def assign_folds(
    patients: np.ndarray, targets: np.ndarray, n_folds: int, seed: int, labels: list[str] | None = None
) -> np.ndarray:
    """Fold 1..``n_folds`` of every row: patient-wise, seeded, each label's positives spread evenly.

    Args:
        patients: (N,) patient of each row.
        targets: (N, L) targets (1, 0, NaN).
        n_folds: Number of folds.
        seed: Seed of the order ties are broken in.
        labels: Label names, for the log line naming labels too rare to reach every fold.

    Raises:
        ConfigError: when there are fewer patients than folds.
    """
    names, index, positive, images = _patient_table(patients, targets)
    if n_folds > len(names):
        raise ConfigError(
            f"--folds {n_folds} is more than the {len(names)} patients of TRAIN and VALIDATION: each fold needs a "
            "patient of its own; use fewer folds"
        )
    order, rarest = _stratified_order(positive, seed)
    fold_pos = np.zeros((n_folds, positive.shape[1]), dtype=np.int64)
    fold_images = np.zeros(n_folds, dtype=np.int64)
    fold_of = np.zeros(len(names), dtype=np.int64)
    for p in order:
        # Fewest positives of the patient's rarest label, then fewest images, then the lowest fold.
        first = fold_pos[:, rarest[p]] if rarest[p] >= 0 else np.zeros(n_folds, dtype=np.int64)
        k = int(np.lexsort((np.arange(n_folds), fold_images, first))[0])
        fold_of[p] = k
        fold_pos[k] += positive[p]
        fold_images[k] += images[p]
    rare = [labels[j] if labels else str(j) for j in np.flatnonzero(positive.sum(axis=0) < n_folds)]
    if rare:
        log.warning("too few positive patients to reach all %d folds: %s", n_folds, ", ".join(rare))
    return fold_of[index] + 1


def train_subset(patients: np.ndarray, targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """(N,) bool: a seeded, patient-wise share ``fraction`` of the rows, each label's positives in proportion.

    Patients are ordered rarest positive label first (seeded within), and every ``1/fraction``-th of that order
    is kept (systematic sampling), so each stratum keeps its share and the total is ``fraction`` of the
    patients, rounded; at least one patient is kept.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"--train-fraction must be in (0, 1]; got {fraction}")
    names, index, positive, _ = _patient_table(patients, targets)
    if fraction == 1.0:
        return np.ones(len(patients), dtype=bool)
    order, _ = _stratified_order(positive, seed)
    position = np.arange(len(order))
    chosen = np.floor((position + 1) * fraction + 0.5) > np.floor(position * fraction + 0.5)
    keep = np.zeros(len(names), dtype=bool)
    keep[order[chosen]] = True
    keep[order[0]] |= not chosen.any()
    return keep[index]


def read_folds(path: str | Path) -> pd.DataFrame:
    """A ``folds.csv`` (image, patient, fold >= 1) as a frame.

    Raises:
        ConfigError: naming the file, row and column of a missing column or a fold that is not a number >= 1.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"folds file not found: {path}")
    frame, lines = read_csv_cells(path)
    missing = [c for c in FOLDS_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"folds file {path}: missing column(s) {', '.join(missing)}; a folds file has image, "
                          "patient, fold")  # fmt: skip
    folds = pd.to_numeric(frame["fold"], errors="coerce")
    bad = [f"row {lines[i]}, column 'fold': {frame['fold'].iloc[i]!r} is not a fold number (1, 2, ...)"
           for i in np.flatnonzero(~(folds >= 1) | (folds % 1 != 0))]  # fmt: skip
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ConfigError(f"folds file {path}: {bad[0]}{more}")
    return pd.DataFrame({"image": frame["image"], "patient": frame["patient"], "fold": folds.astype(int),
                         "csv_row": lines})  # fmt: skip


def check_folds(path: str | Path, folds: pd.DataFrame, images: pd.Series) -> pd.Series:
    """Each study image's fold from ``folds`` (read by :func:`read_folds`), in the order of ``images``.

    Raises:
        ConfigError: a patient in two folds, an image the manifest's TRAIN/VALIDATION lacks or one it has
            that the file lacks (one line naming the file and the rows).
    """
    problems = []
    spread = folds.groupby("patient")["fold"].nunique()
    for patient in spread[spread > 1].index[:5]:
        rows = folds[folds["patient"] == patient]
        where = ", ".join(f"row {r} fold {f}" for r, f in zip(rows["csv_row"], rows["fold"], strict=True))
        problems.append(f"column 'fold': patient {patient} is in several folds ({where})")
    by_image = folds.drop_duplicates("image").set_index("image")
    extra = folds[~folds["image"].isin(set(images))]
    for _, row in extra.head(5).iterrows():
        problems.append(f"row {row['csv_row']}, column 'image': {row['image']} is not in the manifest's TRAIN or "
                        "VALIDATION")  # fmt: skip
    absent = images[~images.isin(set(folds["image"]))]
    if len(absent):
        problems.append(f"{len(absent)} TRAIN/VALIDATION image(s) of the manifest have no fold, e.g. {absent.iloc[0]}")
    if problems:
        raise ConfigError(f"folds file {path}: {'; '.join(problems[:3])}; it does not match the manifest (give it "
                          "the manifest it was drawn from, or leave out --folds-csv to draw new folds)")  # fmt: skip
    return by_image.loc[images.to_numpy(), "fold"].reset_index(drop=True)


def study_manifest(manifest: Manifest, folds_csv: str, fold: int, fraction: float, patient_column: str,
                   seed: int, uncertain: str = "ignore") -> Manifest:  # fmt: skip
    """The manifest a fold or a learning-curve point trains on.

    With ``folds_csv`` and ``fold``: the images of ``fold`` become VALIDATION, those of the other folds
    TRAIN (TEST is unchanged). With ``fraction`` < 1: only that share of TRAIN (:func:`train_subset`) is kept.
    """
    frame = manifest.frame
    if bool(fold) != bool(folds_csv):
        raise ConfigError("--fold and --folds-csv go together: the fold of a study's folds.csv to hold out")
    if folds_csv:
        study = frame[SPLIT_COLUMN].isin(STUDY_SPLITS)
        assigned = check_folds(folds_csv, read_folds(folds_csv), frame.loc[study, IMAGE_COLUMN].astype(str))
        if fold and fold not in set(assigned):
            raise ConfigError(f"--fold {fold}: {folds_csv} has folds {', '.join(map(str, sorted(set(assigned))))}")
        frame = frame.copy()
        split = np.where(assigned.to_numpy() == fold, "VALIDATION", "TRAIN")
        frame.loc[study, SPLIT_COLUMN] = split
    if fraction < 1.0:
        train = frame[SPLIT_COLUMN] == "TRAIN"
        part = frame[train]
        targets = manifest.targets(None, uncertain)[train.to_numpy()]
        keep = train_subset(patient_ids(part, patient_column), targets, fraction, seed)
        dropped = part.index[~keep]
        log.info("training on %d of %d TRAIN images (--train-fraction %g)", int(keep.sum()), len(part), fraction)
        frame = frame.drop(index=dropped).reset_index(drop=True)
    if frame is manifest.frame:
        return manifest
    return dataclasses.replace(manifest, frame=frame.reset_index(drop=True))


def fold_sizes(folds: np.ndarray) -> dict[int, int]:
    """Images per fold."""
    return {int(k): int(n) for k, n in zip(*np.unique(folds, return_counts=True), strict=True)}


__all__ = ["assign_folds", "check_folds", "fold_sizes", "patient_ids", "read_folds", "study_manifest",
           "train_subset"]  # fmt: skip
