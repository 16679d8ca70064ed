"""Typed settings, one dataclass per command.

Every field is a command-line flag of the same name (``image_size`` is ``--image-size``); the help text
and the allowed values live in the field's metadata, so the CLI, the saved ``config.json`` and the
library API cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medclf.data.manifest import NIH_LABELS, SPLITS, UNCERTAIN_POLICIES
from medclf.errors import ConfigError
from medclf.model.networks import MODEL_NAMES

# Re-exported: the settings-file functions lived here before medclf.settings existed.
from medclf.settings import field_types, load_settings, make_settings, read_settings_file, settings_dict  # noqa: F401

DEVICES = ("auto", "cpu", "cuda")
CACHES = ("memory", "disk", "none")


def _opt(default: Any, help: str, choices: tuple | None = None, required: bool = False) -> Any:
    meta = {"help": help, "choices": choices, "required": required}
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
    image_size: int = _opt(224, "images are resized to this many pixels per side")
    model: str = _opt("densenet121", "network (densenet_tiny is for smoke tests)", MODEL_NAMES)
    pretrained: str = _opt("", "local .pth of torchvision ImageNet DenseNet weights to start from")
    epochs: int = _opt(20, "maximum number of epochs")
    batch_size: int = _opt(32, "images per training and validation batch")
    lr: float = _opt(1e-3, "initial learning rate")
    optimizer: str = _opt("adam", "optimizer", ("adam", "adamw", "sgd"))
    weight_decay: float = _opt(0.0, "weight decay")
    momentum: float = _opt(0.9, "momentum (sgd only)")
    scheduler: str = _opt(
        "plateau", "LR schedule: plateau on val AUROC, cosine, or none", ("plateau", "cosine", "none")
    )
    plateau_patience: int = _opt(2, "epochs without val AUROC gain before the plateau schedule cuts the LR")
    plateau_factor: float = _opt(0.1, "factor the plateau schedule multiplies the LR by")
    early_stopping_patience: int = _opt(5, "stop after this many epochs without val AUROC gain (0: never)")
    uncertain: str = _opt(
        "ignore", "uncertain (-1) labels: ignore (masked), ones or zeros; blank is always masked", UNCERTAIN_POLICIES
    )
    patient_column: str = _opt("patient_id", "manifest column naming the patient, checked for patients in two splits")
    allow_patient_overlap: bool = _opt(False, "train even when a patient has images in more than one split")
    pos_weight: bool = _opt(False, "weight positives by negatives/positives per label, counted on TRAIN")
    freeze_backbone_epochs: int = _opt(0, "train only the classifier for this many first epochs")
    augment: bool = _opt(True, "random small affine transforms and horizontal flips during training")
    hflip: bool = _opt(
        True, "random horizontal flips within --augment (off for chest films where the heart side must stay)"
    )
    amp: bool = _opt(True, "automatic mixed precision (CUDA only)")
    device: str = _opt("auto", "where to train", DEVICES)
    seed: int = _opt(0, "random seed (monai.utils.set_determinism)")
    deterministic: bool = _opt(False, "deterministic CUDA kernels (slower); CPU runs are always repeatable")
    cache: str = _opt("memory", "cache of decoded, resized images", CACHES)
    cache_rate: float = _opt(1.0, "fraction of images kept in the memory cache")
    cache_dir: str = _opt("", "folder of the disk cache (default: <out>/cache)")
    cache_workers: int = _opt(0, "threads that fill the cache (0: one per CPU core)")
    num_workers: int = _opt(2, "DataLoader worker processes when images are not cached in memory")
    check_images: bool = _opt(False, "decode every image before training and stop if any is unreadable")
    channels_last: bool = _opt(True, "channels-last memory format (CUDA only; faster convolutions)")
    compile: bool = _opt(False, "torch.compile the model (CUDA; slower start, faster steps)")
    resume: str = _opt("", "run folder or last.pt to resume from")
    figure_every: int = _opt(1, "add ROC and confusion-matrix figures to TensorBoard every N epochs (0: never)")
    progress: bool = _opt(True, "show progress bars")

    def __post_init__(self) -> None:
        _check_common(self)
        _positive(self, "image_size", "epochs", "batch_size")
        if not 0.0 < self.cache_rate <= 1.0:
            raise ConfigError(f"cache_rate must be in (0, 1], got {self.cache_rate}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if isinstance(self.labels, str):
            self.labels = [self.labels]
        self.labels = _split_names(self.labels)
        self.csv = _paths(self.csv)


@dataclass
class _InferenceSettings:
    """How ``validate`` and ``predict`` run the network (listed first in their ``--help``)."""

    batch_size: int = _opt(0, "images per batch (0: the checkpoint's training batch size)")
    device: str = _opt("auto", "where to run", DEVICES)
    amp: bool = _opt(True, "automatic mixed precision (CUDA only)")
    num_workers: int = _opt(2, "DataLoader worker processes")
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
    bootstrap: int = _opt(1000, "bootstrap resamples for the 95% AUROC intervals (0: none)")
    seed: int = _opt(0, "seed of the bootstrap")
    threshold: float = _opt(0.0, "one decision threshold for all labels (0: the checkpoint's, chosen on VALIDATION)")
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
    embeddings_max: int = _opt(2000, "at most this many images in the embeddings, a seeded sample (0: all)")
    errors_label: str = _opt("", "label for most_confident_errors.png (default: the one with most positives)")
    errors_count: int = _opt(16, "images in most_confident_errors.png")
    figures: bool = _opt(True, "write the plots and report.html (off: metrics and predictions only)")

    def __post_init__(self) -> None:
        self.split = self.split.upper()
        self.csv = _paths(self.csv)
        _check_common(self)
        for name in ("batch_size", "bootstrap", "errors_count", "embeddings_max"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
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
    threshold: float = _opt(0.0, "one decision threshold for all labels (0: the checkpoint's per-label ones)")
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

    def __post_init__(self) -> None:
        _check_common(self)
        if isinstance(self.label, str):
            self.label = [self.label]
        self.label = _split_names(self.label)


def _check_common(settings: Any) -> None:
    for f in dataclasses.fields(settings):
        choices = f.metadata.get("choices")
        value = getattr(settings, f.name)
        if choices and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
    if getattr(settings, "num_workers", 0) < 0:
        raise ConfigError(f"num_workers must be >= 0, got {settings.num_workers}")
    if not 0.0 <= getattr(settings, "threshold", 0.0) < 1.0:
        raise ConfigError(f"threshold must be in [0, 1), got {settings.threshold}")


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


def _positive(settings: Any, *names: str) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(settings, name)}")


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
    bootstrap: int = _opt(2000, "paired bootstrap resamples for the 95% intervals and the macro p-value (0: none)")
    seed: int = _opt(0, "seed of the bootstrap")
    figures: bool = _opt(True, "write comparison.png (off: comparison.json and comparison.csv only)")

    def __post_init__(self) -> None:
        _check_common(self)
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
