"""Settings of ``python -m medclf.train`` (re-exported by :mod:`medclf.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from medclf.config.choices import CACHES, DEVICES, NIH_LABELS, UNCERTAIN_POLICIES
from medclf.config.fields import as_paths, check_fields, opt, split_names
from medclf.config.recipes import RECIPES
from medclf.errors import ConfigError


@dataclass
class TrainConfig:
    """Settings of ``python -m medclf.train``."""

    csv: list[str] = opt(
        [],
        "manifest CSV (image, split, one 1/0/-1/blank column per label); several (--csv a.csv --csv b.csv) "
        "train on their union, a label missing from one set being unknown for its images",
        required=True,
    )
    out: str = opt("", "run folder for checkpoints and logs (default: runs/<date-time>)")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
    labels: list[str] = opt(NIH_LABELS, "label columns, in output order (space or comma separated)")
    image_size: int = opt(224, "images are resized to this many pixels per side", bounds=">= 32")
    # Checked against medclf.model.registry where the network is built (the settings layer sits below it).
    model: str = opt("densenet121", "network (densenet_tiny is for smoke tests)")
    # Starting points (issue 23): ImageNet, chest X-ray weights, or another medclf run.
    pretrained: str = opt(
        "",
        "weights to start from: imagenet (torchvision's, through the torch.hub cache), torchxrayvision:NAME "
        "(converted by medclf-import-weights), or a file (.pth of torchvision DenseNet weights, medclf weights file)",
    )
    init_from: str = opt("", "a medclf checkpoint (runs/a/best.pt) to start from; other labels and image size allowed")
    epochs: int = opt(20, "maximum number of epochs", bounds=">= 1")
    batch_size: int = opt(32, "images per training and validation batch", bounds=">= 2")
    lr: float = opt(1e-3, "initial learning rate", bounds="> 0")
    optimizer: str = opt("adam", "optimizer", ("adam", "adamw", "sgd"))
    weight_decay: float = opt(0.0, "weight decay", bounds=">= 0")
    momentum: float = opt(0.9, "momentum (sgd only)", bounds="[0, 1)")
    scheduler: str = opt("plateau", "LR schedule: plateau on val AUROC, cosine, or none", ("plateau", "cosine", "none"))
    plateau_patience: int = opt(
        2, "epochs without val AUROC gain before the plateau schedule cuts the LR", bounds=">= 0"
    )
    plateau_factor: float = opt(0.1, "factor the plateau schedule multiplies the LR by", bounds="(0, 1)")
    early_stopping_patience: int = opt(
        5, "stop after this many epochs without val AUROC gain (0: never)", bounds=">= 0"
    )
    uncertain: str = opt(
        "ignore", "uncertain (-1) labels: ignore (masked), ones or zeros; blank is always masked", UNCERTAIN_POLICIES
    )
    patient_column: str = opt("patient_id", "manifest column naming the patient, checked for patients in two splits")
    allow_patient_overlap: bool = opt(False, "train even when a patient has images in more than one split")
    shared_patient_ids: bool = opt(False, "one patient id means one patient in every data set (off: per source)")
    pos_weight: bool = opt(False, "weight positives by negatives/positives per label, counted on TRAIN")
    freeze_backbone_epochs: int = opt(0, "train only the classifier for this many first epochs", bounds=">= 0")
    augment: bool = opt(True, "random small affine transforms and horizontal flips during training")
    hflip: bool = opt(
        True, "random horizontal flips within --augment (off for chest films where the heart side must stay)"
    )
    # Levers for small data sets (docs/recipes.md); each is off by default and set together by --recipe.
    recipe: str = opt(
        "none", "named preset of the settings below (docs/recipes.md); a flag given still wins over it", RECIPES
    )
    augment_strength: str = opt(
        "light", "with --augment: light (small affine) or strong (larger affine, contrast, brightness, gamma)",
        ("light", "strong"),
    )  # fmt: skip
    mixup: float = opt(0.0, "mixup: Beta(a, a) mixing of image pairs and their labels (0: off)", bounds=">= 0")
    label_smoothing: float = opt(0.0, "training targets become 1 - e/2 and e/2 (0: off)", bounds="[0, 0.5]")
    ema_decay: float = opt(
        0.0, "validate and save an exponential moving average of the weights, updated every step (0: off)",
        bounds="0 or [0.5, 1)",
    )  # fmt: skip
    dropout: float = opt(0.0, "dropout on the pooled features before the classifier, in training", bounds="[0, 1)")
    warmup_epochs: int = opt(
        0, "linear learning-rate warm-up over these first epochs (with --scheduler cosine or none)", bounds=">= 0"
    )
    amp: bool = opt(True, "automatic mixed precision (CUDA only)")
    device: str = opt("auto", "where to train", DEVICES)
    seed: int = opt(0, "random seed (monai.utils.set_determinism)", bounds=">= 0")
    deterministic: bool = opt(False, "deterministic CUDA kernels (slower); CPU runs are always repeatable")
    cache: str = opt("memory", "cache of decoded, resized images", CACHES)
    cache_rate: float = opt(1.0, "fraction of images kept in the memory cache", bounds="(0, 1]")
    cache_dir: str = opt("", "folder of the disk cache (default: <out>/cache)")
    cache_workers: int = opt(0, "threads that fill the cache (0: one per CPU core)", bounds=">= 0")
    num_workers: int = opt(2, "DataLoader worker processes when images are not cached in memory", bounds=">= 0")
    check_images: bool = opt(False, "decode every image before training and stop if any is unreadable")
    channels_last: bool = opt(True, "channels-last memory format (CUDA only; faster convolutions)")
    compile: bool = opt(False, "torch.compile the model (CUDA; slower start, faster steps)")
    resume: str = opt("", "run folder or last.pt to resume from")
    figure_every: int = opt(
        1, "add ROC and confusion-matrix figures to TensorBoard every N epochs (0: never)", bounds=">= 0"
    )
    progress: bool = opt(True, "show progress bars")
    train_fraction: float = opt(
        1.0,
        "train on this seeded, patient-wise, label-stratified share of TRAIN (the rest is not used)",
        bounds="(0, 1]",
    )
    linear_probe: bool = opt(
        False, "train only the classifier on cached features of the frozen backbone (after --pretrained or any start)"
    )
    folds_csv: str = opt("", "folds.csv of a cross-validation study (image, patient, fold): repeats its assignment")
    fold: int = opt(
        0, "with --folds-csv: the images of this fold are VALIDATION, the other folds TRAIN (0: no fold)", bounds=">= 0"
    )
    mlflow: str = opt(
        "",
        "log settings, epoch metrics and files to MLflow: a tracking URI or folder (--mlflow alone: ./mlruns)",
        const="./mlruns",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if isinstance(self.labels, str):
            self.labels = [self.labels]
        self.labels = split_names(self.labels)
        self.csv = as_paths(self.csv)
        if self.warmup_epochs and self.scheduler == "plateau":
            raise ConfigError(
                "--warmup-epochs needs --scheduler cosine or none: the plateau schedule sets the LR from val AUROC"
            )
        if self.linear_probe and (self.ema_decay or self.mixup):
            raise ConfigError("--linear-probe trains on cached features: --ema-decay and --mixup do not apply to it")
