"""Typed settings, one dataclass per command (re-exported by :mod:`medclf.config`).

Every field is a command-line flag of the same name (``image_size`` is ``--image-size``); the help text
and the allowed values live in the field's metadata, so the CLI, the saved ``config.json`` and the
library API cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from medclf.config.choices import CACHES, DEVICES, NIH_LABELS, SPLITS, UNCERTAIN_POLICIES
from medclf.errors import ConfigError


def _opt(default: Any, help: str, choices: tuple | None = None, required: bool = False, bounds: str = "") -> Any:
    """A settings field; ``bounds`` is its allowed range, e.g. ``"> 0"``, ``">= 2"``, ``"(0, 1)"``, ``"[0, 1]"``."""
    meta = {"help": help, "choices": choices, "required": required, "bounds": bounds}
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Settings of ``python -m medclf.train``."""

    csv: list[str] = _opt(
        [],
        "manifest CSV (image, split, one 1/0/-1/blank column per label); several (--csv a.csv --csv b.csv) "
        "train on their union, a label missing from one set being unknown for its images",
        required=True,
    )
    out: str = _opt("", "run folder for checkpoints and logs (default: runs/<date-time>)")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")
    labels: list[str] = _opt(NIH_LABELS, "label columns, in output order (space or comma separated)")
    image_size: int = _opt(224, "images are resized to this many pixels per side", bounds=">= 32")
    # Checked against medclf.model.registry where the network is built (the settings layer sits below it).
    model: str = _opt("densenet121", "network (densenet_tiny is for smoke tests)")
    pretrained: str = _opt("", "local .pth of torchvision ImageNet DenseNet weights to start from")
    epochs: int = _opt(20, "maximum number of epochs", bounds=">= 1")
    batch_size: int = _opt(32, "images per training and validation batch", bounds=">= 2")
    lr: float = _opt(1e-3, "initial learning rate", bounds="> 0")
    optimizer: str = _opt("adam", "optimizer", ("adam", "adamw", "sgd"))
    weight_decay: float = _opt(0.0, "weight decay", bounds=">= 0")
    momentum: float = _opt(0.9, "momentum (sgd only)", bounds="[0, 1)")
    scheduler: str = _opt(
        "plateau", "LR schedule: plateau on val AUROC, cosine, or none", ("plateau", "cosine", "none")
    )
    plateau_patience: int = _opt(
        2, "epochs without val AUROC gain before the plateau schedule cuts the LR", bounds=">= 0"
    )
    plateau_factor: float = _opt(0.1, "factor the plateau schedule multiplies the LR by", bounds="(0, 1)")
    early_stopping_patience: int = _opt(
        5, "stop after this many epochs without val AUROC gain (0: never)", bounds=">= 0"
    )
    uncertain: str = _opt(
        "ignore", "uncertain (-1) labels: ignore (masked), ones or zeros; blank is always masked", UNCERTAIN_POLICIES
    )
    patient_column: str = _opt("patient_id", "manifest column naming the patient, checked for patients in two splits")
    allow_patient_overlap: bool = _opt(False, "train even when a patient has images in more than one split")
    shared_patient_ids: bool = _opt(False, "one patient id means one patient in every data set (off: per source)")
    pos_weight: bool = _opt(False, "weight positives by negatives/positives per label, counted on TRAIN")
    freeze_backbone_epochs: int = _opt(0, "train only the classifier for this many first epochs", bounds=">= 0")
    augment: bool = _opt(True, "random small affine transforms and horizontal flips during training")
    hflip: bool = _opt(
        True, "random horizontal flips within --augment (off for chest films where the heart side must stay)"
    )
    amp: bool = _opt(True, "automatic mixed precision (CUDA only)")
    device: str = _opt("auto", "where to train", DEVICES)
    seed: int = _opt(0, "random seed (monai.utils.set_determinism)", bounds=">= 0")
    deterministic: bool = _opt(False, "deterministic CUDA kernels (slower); CPU runs are always repeatable")
    cache: str = _opt("memory", "cache of decoded, resized images", CACHES)
    cache_rate: float = _opt(1.0, "fraction of images kept in the memory cache", bounds="(0, 1]")
    cache_dir: str = _opt("", "folder of the disk cache (default: <out>/cache)")
    cache_workers: int = _opt(0, "threads that fill the cache (0: one per CPU core)", bounds=">= 0")
    num_workers: int = _opt(2, "DataLoader worker processes when images are not cached in memory", bounds=">= 0")
    check_images: bool = _opt(False, "decode every image before training and stop if any is unreadable")
    channels_last: bool = _opt(True, "channels-last memory format (CUDA only; faster convolutions)")
    compile: bool = _opt(False, "torch.compile the model (CUDA; slower start, faster steps)")
    resume: str = _opt("", "run folder or last.pt to resume from")
    figure_every: int = _opt(
        1, "add ROC and confusion-matrix figures to TensorBoard every N epochs (0: never)", bounds=">= 0"
    )
    progress: bool = _opt(True, "show progress bars")

    def __post_init__(self) -> None:
        _check_common(self)
        if isinstance(self.labels, str):
            self.labels = [self.labels]
        self.labels = _split_names(self.labels)
        self.csv = _paths(self.csv)


@dataclass
class _InferenceSettings:
    """How ``validate`` and ``predict`` run the network (listed first in their ``--help``)."""

    batch_size: int = _opt(0, "images per batch (0: the checkpoint's training batch size)", bounds=">= 0")
    device: str = _opt("auto", "where to run", DEVICES)
    amp: bool = _opt(True, "automatic mixed precision (CUDA only)")
    num_workers: int = _opt(2, "DataLoader worker processes", bounds=">= 0")
    progress: bool = _opt(True, "show progress bars")


@dataclass
class ValidateConfig(_InferenceSettings):
    """Settings of ``python -m medclf.validate``."""

    checkpoint: str = _opt("", "checkpoint file (best.pt or last.pt)", required=True)
    csv: list[str] = _opt(
        [],
        "manifest CSV with some or all of the checkpoint's label columns; several are evaluated together",
        required=True,
    )
    split: str = _opt("TEST", "split to evaluate", SPLITS)
    out: str = _opt("", "output folder (default: next to the checkpoint, <stem>_<split>)")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")
    bootstrap: int = _opt(1000, "bootstrap resamples for the 95% AUROC intervals (0: none)", bounds=">= 0")
    seed: int = _opt(0, "seed of the bootstrap", bounds=">= 0")
    threshold: float = _opt(
        0.0, "one decision threshold for all labels (0: the checkpoint's, chosen on VALIDATION)", bounds="[0, 1)"
    )
    thresholds: str = _opt("", "JSON file of per-label thresholds, {label: threshold}; overrides the checkpoint's")
    label_map: str = _opt(
        "", "rename CSV columns to the checkpoint's labels: old=new,... (e.g. pleural_effusion=effusion)"
    )
    subgroups: str = _opt(
        "",
        "report per group of manifest columns, e.g. sex,view,age=0-40,40-60,60- (source: added when the "
        "data holds several data sets)",
    )
    calibration: bool = _opt(True, "apply the checkpoint's temperature scaling to the probabilities (off: raw outputs)")
    calibrate: bool = _opt(False, "fit temperature scaling on the VALIDATION split of --csv now (older checkpoints)")
    tta: bool = _opt(False, "test-time augmentation: average over shifted copies (and mirrors if trained with flips)")
    embeddings: bool = _opt(False, "write penultimate-layer features: TensorBoard projector and embeddings.png")
    embeddings_max: int = _opt(
        2000, "at most this many images in the embeddings, a seeded sample (0: all)", bounds=">= 0"
    )
    errors_label: str = _opt("", "label for most_confident_errors.png (default: the one with most positives)")
    errors_count: int = _opt(16, "images in most_confident_errors.png", bounds=">= 0")
    figures: bool = _opt(True, "write the plots and report.html (off: metrics and predictions only)")

    def __post_init__(self) -> None:
        self.split = self.split.upper()
        self.csv = _paths(self.csv)
        _check_common(self)
        parse_label_map(self.label_map)


@dataclass
class PredictConfig(_InferenceSettings):
    """Settings of ``python -m medclf.predict``."""

    checkpoint: str = _opt("", "checkpoint file (best.pt or last.pt)", required=True)
    csv: str = _opt("", "CSV with an image column (labels not needed); or use --images")
    images: str = _opt("", "folder of images (PNG/JPEG/DICOM/NIfTI, searched recursively); or use --csv")
    split: str = _opt("", "only rows of this split, when the CSV has a split column")
    out: str = _opt("", "output folder for predictions.csv (default: next to the checkpoint, <stem>_predict)")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")
    threshold: float = _opt(
        0.0, "one decision threshold for all labels (0: the checkpoint's per-label ones)", bounds="[0, 1)"
    )
    calibration: bool = _opt(True, "apply the checkpoint's temperature scaling to the probabilities (off: raw outputs)")
    tta: bool = _opt(False, "test-time augmentation: average over shifted copies (and mirrors if trained with flips)")

    def __post_init__(self) -> None:
        self.split = self.split.upper()
        _check_common(self)
        if self.split and self.split not in SPLITS:
            raise ConfigError(f"split must be TRAIN, VALIDATION or TEST; got {self.split!r}")


@dataclass
class ExplainConfig:
    """Settings of ``python -m medclf.explain``."""

    checkpoint: str = _opt("", "checkpoint file (best.pt or last.pt)", required=True)
    image: str = _opt("", "image to explain (PNG/JPEG/DICOM/NIfTI)", required=True)
    label: list[str] = _opt([], "labels to explain (default: every label of the checkpoint)")
    out: str = _opt("", "output folder (default: next to the checkpoint, explain_<image name>)")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")
    device: str = _opt("auto", "where to run", DEVICES)
    calibration: bool = _opt(True, "probabilities with the checkpoint's temperature scaling, as predict shows them")

    def __post_init__(self) -> None:
        _check_common(self)
        if isinstance(self.label, str):
            self.label = [self.label]
        self.label = _split_names(self.label)


def _check_common(settings: Any) -> None:
    """Choices and numeric ranges of every field, in one place; the message names the flag and file key."""
    for f in dataclasses.fields(settings):
        value, flag = getattr(settings, f.name), f"--{f.name.replace('_', '-')} ({f.name})"
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number; got {value}")
        bounds = f.metadata.get("bounds")
        if bounds and not _within(value, bounds):
            why = " (batch norm needs at least two images per batch)" if f.name == "batch_size" else ""
            raise ConfigError(f"{flag} must be {_bounds_text(bounds)}{why}; got {value}")


def _within(value: float, bounds: str) -> bool:
    if bounds.startswith("0 or "):
        return value == 0 or _within(value, bounds[5:])
    if bounds[0] in "([":
        low, high = (float(v) for v in bounds[1:-1].split(","))
        above = value > low if bounds[0] == "(" else value >= low
        below = value < high if bounds[-1] == ")" else value <= high
        return above and below
    op, limit = bounds.split()
    return value > float(limit) if op == ">" else value >= float(limit)


def _bounds_text(bounds: str) -> str:
    return f"in {bounds}" if bounds[0] in "([" else bounds


def parse_label_map(text: str) -> dict[str, str]:
    """``old=new,old2=new2`` -> ``{"old": "new", ...}``.

    Raises:
        ConfigError: for an entry without ``=`` or with an empty name.
    """
    mapping = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        old, sep, new = (part.strip() for part in entry.partition("="))
        if not sep or not old or not new:
            raise ConfigError(f"label_map entry {entry!r} is not old=new")
        mapping[old] = new
    return mapping


def _paths(values: str | list[str]) -> list[str]:
    """One path or several as a list; paths are not split at commas (a file name may hold one)."""
    values = [values] if isinstance(values, str) else list(values)
    return [str(v) for v in values if str(v).strip()]


def _split_names(values: list[str]) -> list[str]:
    names = [v.strip() for value in values for v in str(value).split(",")]
    return [n for n in names if n]


@dataclass
class CompareConfig:
    """Settings of ``python -m medclf.compare`` (A and B may also be given as two leading positionals)."""

    a: str = _opt("", "model A: a validate output folder or its predictions.csv", required=True)
    b: str = _opt("", "model B: a validate output folder or its predictions.csv (difference = B - A)", required=True)
    out: str = _opt("", "output folder (default: ./compare_<name A>_vs_<name B>)")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")
    name_a: str = _opt("", "display name of model A (default: its folder name)")
    name_b: str = _opt("", "display name of model B (default: its folder name)")
    bootstrap: int = _opt(
        2000, "paired bootstrap resamples for the 95% intervals and the macro p-value (0: none)", bounds=">= 0"
    )
    seed: int = _opt(0, "seed of the bootstrap", bounds=">= 0")
    figures: bool = _opt(True, "write comparison.png (off: comparison.json and comparison.csv only)")

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass
class PrepareNihConfig:
    """Settings of ``python -m medclf.prepare_nih``."""

    data_entry: str = _opt("", "the official Data_Entry_2017_v2020.csv (or .csv.gz)", required=True)
    images: str = _opt("", "folder holding the PNG images", required=True)
    out: str = _opt("", "manifest CSV to write (e.g. data/nih.csv)", required=True)
    test_list: str = _opt("", "the official test_list.txt: its images become TEST")
    train_val_list: str = _opt("", "the official train_val_list.txt (with --test-list)")
    views: str = _opt("", "keep only these view positions, e.g. PA or PA,AP (default: all)")
    require_images: bool = _opt(False, "drop rows whose image file is missing")
    split: str = _opt("0.7,0.1,0.2", "TRAIN,VALIDATION,TEST fractions of the images (a random patient-wise split)")
    seed: int = _opt(0, "seed of the patient-wise split", bounds=">= 0")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")


@dataclass
class PrepareChexpertConfig:
    """Settings of ``python -m medclf.prepare_chexpert``."""

    csv: str = _opt("", "the official train.csv", required=True)
    root: str = _opt("", "folder the Path column is relative to", required=True)
    out: str = _opt("", "manifest CSV to write (e.g. data/chexpert.csv)", required=True)
    valid_csv: str = _opt("", "the official valid.csv: its rows become TEST")
    views: str = _opt("", "keep only frontal images of these AP/PA views, e.g. PA,AP (default: all)")
    seed: int = _opt(0, "seed of the patient-wise split", bounds=">= 0")
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")


@dataclass
class PrepareMimicCxrConfig:
    """Settings of ``python -m medclf.prepare_mimic_cxr``."""

    chexpert_csv: str = _opt("", "mimic-cxr-2.0.0-chexpert.csv (labels per study)", required=True)
    metadata_csv: str = _opt("", "mimic-cxr-2.0.0-metadata.csv (one row per image)", required=True)
    split_csv: str = _opt("", "mimic-cxr-2.0.0-split.csv (the official split)", required=True)
    root: str = _opt("", "data set folder holding files/", required=True)
    out: str = _opt("", "manifest CSV to write (e.g. data/mimic.csv)", required=True)
    views: str = _opt("", "keep only these ViewPosition values, e.g. PA,AP (default: all)")
    suffix: str = _opt(".jpg", "image file suffix", (".jpg", ".dcm"))
    config: str = _opt("", "YAML or JSON file whose keys set defaults for these flags")


#: The sections of each command's ``--help``, as in docs/usage.md; fields not listed come last.
HELP_GROUPS: dict[str, list[tuple[str, list[str]]]] = {
    "TrainConfig": [
        ("data", ["csv", "labels", "uncertain", "image_size", "batch_size", "check_images", "patient_column",
                  "allow_patient_overlap", "shared_patient_ids"]),
        ("model", ["model", "pretrained"]),
        ("optimisation", ["optimizer", "lr", "weight_decay", "momentum", "pos_weight", "augment", "hflip"]),
        ("schedule", ["scheduler", "plateau_patience", "plateau_factor", "epochs", "early_stopping_patience",
                      "freeze_backbone_epochs"]),
        ("hardware", ["device", "amp", "channels_last", "compile", "deterministic"]),
        ("cache", ["cache", "cache_rate", "cache_dir", "cache_workers", "num_workers"]),
        ("run", ["out", "resume", "seed", "figure_every", "progress", "config"]),
    ],
    "ValidateConfig": [
        ("data", ["checkpoint", "csv", "split", "label_map", "out", "config"]),
        ("decisions", ["threshold", "thresholds", "calibration", "calibrate"]),
        ("analyses", ["bootstrap", "seed", "subgroups", "tta", "embeddings", "embeddings_max", "figures",
                      "errors_label", "errors_count"]),
        ("hardware", ["batch_size", "device", "amp", "num_workers", "progress"]),
    ],
    "PredictConfig": [
        ("data", ["checkpoint", "csv", "images", "split", "out", "config"]),
        ("decisions", ["threshold", "calibration", "tta"]),
        ("hardware", ["batch_size", "device", "amp", "num_workers", "progress"]),
    ],
}  # fmt: skip
