"""Typed settings, one dataclass per command (re-exported by :mod:`medclf.config`).

Every field is a command-line flag of the same name (``image_size`` is ``--image-size``); the help text
and the allowed values live in the field's metadata, so the CLI, the saved ``config.json`` and the
library API cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from medclf.config.choices import DEVICES, SPLITS
from medclf.config.fields import as_paths, check_fields, opt, parse_label_map, split_names
from medclf.errors import ConfigError


@dataclass
class _InferenceSettings:
    """How ``validate`` and ``predict`` run the network (listed first in their ``--help``)."""

    batch_size: int = opt(0, "images per batch (0: the checkpoint's training batch size)", bounds=">= 0")
    device: str = opt("auto", "where to run", DEVICES)
    amp: bool = opt(True, "automatic mixed precision (CUDA only)")
    num_workers: int = opt(2, "DataLoader worker processes", bounds=">= 0")
    progress: bool = opt(True, "show progress bars")


@dataclass
class ValidateConfig(_InferenceSettings):
    """Settings of ``python -m medclf.validate``."""

    checkpoint: str = opt("", "checkpoint file (best.pt or last.pt)", required=True)
    csv: list[str] = opt(
        [],
        "manifest CSV with some or all of the checkpoint's label columns; several are evaluated together",
        required=True,
    )
    split: str = opt("TEST", "split to evaluate", SPLITS)
    out: str = opt("", "output folder (default: next to the checkpoint, <stem>_<split>)")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
    bootstrap: int = opt(1000, "bootstrap resamples for the 95% AUROC intervals (0: none)", bounds=">= 0")
    seed: int = opt(0, "seed of the bootstrap", bounds=">= 0")
    threshold: float = opt(
        0.0, "one decision threshold for all labels (0: the checkpoint's, chosen on VALIDATION)", bounds="[0, 1)"
    )
    thresholds: str = opt("", "JSON file of per-label thresholds, {label: threshold}; overrides the checkpoint's")
    label_map: str = opt(
        "", "rename CSV columns to the checkpoint's labels: old=new,... (e.g. pleural_effusion=effusion)"
    )
    subgroups: str = opt(
        "",
        "report per group of manifest columns, e.g. sex,view,age=0-40,40-60,60- (source: added when the "
        "data holds several data sets)",
    )
    calibration: bool = opt(True, "apply the checkpoint's temperature scaling to the probabilities (off: raw outputs)")
    calibrate: bool = opt(False, "fit temperature scaling on the VALIDATION split of --csv now (older checkpoints)")
    tta: bool = opt(False, "test-time augmentation: average over shifted copies (and mirrors if trained with flips)")
    embeddings: bool = opt(False, "write penultimate-layer features: TensorBoard projector and embeddings.png")
    embeddings_max: int = opt(
        2000, "at most this many images in the embeddings, a seeded sample (0: all)", bounds=">= 0"
    )
    errors_label: str = opt("", "label for most_confident_errors.png (default: the one with most positives)")
    errors_count: int = opt(16, "images in most_confident_errors.png", bounds=">= 0")
    figures: bool = opt(True, "write the plots and report.html (off: metrics and predictions only)")

    def __post_init__(self) -> None:
        self.split = self.split.upper()
        self.csv = as_paths(self.csv)
        check_fields(self)
        parse_label_map(self.label_map)


@dataclass
class PredictConfig(_InferenceSettings):
    """Settings of ``python -m medclf.predict``."""

    checkpoint: str = opt("", "checkpoint file (best.pt or last.pt)", required=True)
    csv: str = opt("", "CSV with an image column (labels not needed); or use --images")
    images: str = opt("", "folder of images (PNG/JPEG/DICOM/NIfTI, searched recursively); or use --csv")
    split: str = opt("", "only rows of this split, when the CSV has a split column")
    out: str = opt("", "output folder for predictions.csv (default: next to the checkpoint, <stem>_predict)")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
    threshold: float = opt(
        0.0, "one decision threshold for all labels (0: the checkpoint's per-label ones)", bounds="[0, 1)"
    )
    calibration: bool = opt(True, "apply the checkpoint's temperature scaling to the probabilities (off: raw outputs)")
    tta: bool = opt(False, "test-time augmentation: average over shifted copies (and mirrors if trained with flips)")
    dicom_sr: str = opt("", "folder for a DICOM Comprehensive SR of each DICOM input, in the image's study")

    def __post_init__(self) -> None:
        self.split = self.split.upper()
        check_fields(self)
        if self.split and self.split not in SPLITS:
            raise ConfigError(f"split must be TRAIN, VALIDATION or TEST; got {self.split!r}")


@dataclass
class ExplainConfig:
    """Settings of ``python -m medclf.explain``."""

    checkpoint: str = opt("", "checkpoint file (best.pt or last.pt)", required=True)
    image: str = opt("", "image to explain (PNG/JPEG/DICOM/NIfTI)", required=True)
    label: list[str] = opt([], "labels to explain (default: every label of the checkpoint)")
    out: str = opt("", "output folder (default: next to the checkpoint, explain_<image name>)")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
    device: str = opt("auto", "where to run", DEVICES)
    calibration: bool = opt(True, "probabilities with the checkpoint's temperature scaling, as predict shows them")
    dicom: bool = opt(False, "also write each overlay as a DICOM Secondary Capture in the image's study (DICOM input)")

    def __post_init__(self) -> None:
        check_fields(self)
        if isinstance(self.label, str):
            self.label = [self.label]
        self.label = split_names(self.label)


@dataclass
class CompareConfig:
    """Settings of ``python -m medclf.compare`` (A and B may also be given as two leading positionals)."""

    a: str = opt("", "model A: a validate output folder or its predictions.csv", required=True)
    b: str = opt("", "model B: a validate output folder or its predictions.csv (difference = B - A)", required=True)
    out: str = opt("", "output folder (default: ./compare_<name A>_vs_<name B>)")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
    name_a: str = opt("", "display name of model A (default: its folder name)")
    name_b: str = opt("", "display name of model B (default: its folder name)")
    bootstrap: int = opt(
        2000, "paired bootstrap resamples for the 95% intervals and the macro p-value (0: none)", bounds=">= 0"
    )
    seed: int = opt(0, "seed of the bootstrap", bounds=">= 0")
    figures: bool = opt(True, "write comparison.png (off: comparison.json and comparison.csv only)")

    def __post_init__(self) -> None:
        check_fields(self)


#: The sections of each command's ``--help``, as in docs/usage.md; fields not listed come last.
HELP_GROUPS: dict[str, list[tuple[str, list[str]]]] = {
    "TrainConfig": [
        ("data", ["csv", "labels", "uncertain", "image_size", "batch_size", "check_images", "patient_column",
                  "allow_patient_overlap", "shared_patient_ids"]),
        ("model", ["model", "pretrained", "init_from"]),
        ("optimisation", ["optimizer", "lr", "weight_decay", "momentum", "pos_weight", "augment", "hflip"]),
        ("small data", ["recipe", "augment_strength", "mixup", "label_smoothing", "ema_decay", "dropout",
                        "warmup_epochs"]),
        ("schedule", ["scheduler", "plateau_patience", "plateau_factor", "epochs", "early_stopping_patience",
                      "freeze_backbone_epochs"]),
        ("hardware", ["device", "amp", "channels_last", "compile", "deterministic"]),
        ("cache", ["cache", "cache_rate", "cache_dir", "cache_workers", "num_workers"]),
        ("run", ["out", "resume", "seed", "figure_every", "progress", "config", "mlflow"]),
        ("study", ["train_fraction", "linear_probe", "folds_csv", "fold"]),
    ],
    "ValidateConfig": [
        ("data", ["checkpoint", "csv", "split", "label_map", "out", "config"]),
        ("decisions", ["threshold", "thresholds", "calibration", "calibrate"]),
        ("analyses", ["bootstrap", "seed", "subgroups", "tta", "embeddings", "embeddings_max", "figures",
                      "errors_label", "errors_count"]),
        ("hardware", ["batch_size", "device", "amp", "num_workers", "progress"]),
    ],
    "PredictConfig": [
        ("data", ["checkpoint", "csv", "images", "split", "out", "dicom_sr", "config"]),
        ("decisions", ["threshold", "calibration", "tta"]),
        ("hardware", ["batch_size", "device", "amp", "num_workers", "progress"]),
    ],
}  # fmt: skip


def _study_groups(own: tuple[str, list[str]]) -> list[tuple[str, list[str]]]:
    """A study command's help: its own flags first, then train's (each flag listed once)."""
    return [own, *((title, [n for n in names if n not in own[1]]) for title, names in HELP_GROUPS["TrainConfig"])]


HELP_GROUPS["CrossvalConfig"] = _study_groups(("cross-validation", ["folds", "folds_csv"]))
HELP_GROUPS["LearningCurveConfig"] = _study_groups(("learning curve", ["fractions", "repeats", "folds"]))
