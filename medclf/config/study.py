"""Settings of the study commands, ``crossval`` and ``learning_curve`` (re-exported by :mod:`medclf.config`).

Both take every ``train`` flag (they extend :class:`~medclf.config.train.TrainConfig`): each fold or point is
an ordinary training run with those settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from medclf.config.fields import opt
from medclf.config.train import TrainConfig
from medclf.errors import ConfigError


@dataclass
class CrossvalConfig(TrainConfig):
    """Settings of ``python -m medclf.crossval``: ``out`` is the study folder, ``resume`` a study folder."""

    out: str = opt("", "study folder: folds.csv, fold_k/ run folders, out-of-fold results (default: runs/<date-time>)")
    resume: str = opt("", "study folder to continue, at the fold and step where it stopped")
    folds: int = opt(5, "folds drawn patient-wise over TRAIN and VALIDATION together", bounds=">= 2")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fold:
            raise ConfigError("--fold is train's (one fold of a study); crossval trains every fold of --folds")


@dataclass
class LearningCurveConfig(TrainConfig):
    """Settings of ``python -m medclf.learning_curve``: ``out`` holds one run (or study) per point."""

    out: str = opt("", "folder of the curve: one run (or study) per point, learning_curve.csv/.png")
    fractions: str = opt("0.1,0.25,0.5,1", "shares of TRAIN to train on, comma separated, each in (0, 1]")
    repeats: int = opt(1, "draws (subset and seed) per fraction", bounds=">= 1")
    folds: int = opt(0, "cross-validate each point with this many folds (0: the fixed TRAIN/VALIDATION split)",
                     bounds="0 or >= 2")  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_fraction != 1.0 or self.fold:
            raise ConfigError("learning_curve sets the share of TRAIN per point: use --fractions, not "
                              "--train-fraction or --fold")  # fmt: skip
        parse_fractions(self.fractions)


def parse_fractions(text: str) -> list[float]:
    """``"0.1,0.25,1"`` as sorted distinct floats, each in (0, 1].

    Raises:
        ConfigError: naming the value that is not a number or is outside (0, 1].
    """
    values = []
    for part in (p.strip() for p in str(text).split(",")):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--fractions: {part!r} is not a number; give e.g. 0.1,0.25,0.5,1") from None
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"--fractions: {part} is outside (0, 1]; a fraction of TRAIN is above 0 and at most 1")
        values.append(value)
    return sorted(set(values))
