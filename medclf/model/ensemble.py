"""A cross-validation study folder read as one checkpoint: the ensemble of its folds' best epochs.

``load_checkpoint("runs/cv")`` returns a :class:`StudyCheckpoint`: fold 1's fields (network, labels, image
size, settings) plus every fold's checkpoint in ``folds``; :func:`model_from_checkpoint
<medclf.model.checkpoint.model_from_checkpoint>` makes it a :class:`FoldEnsemble`, whose output is the
logit of the mean calibrated probability of the folds. Its thresholds are the mean of the folds'
thresholds on that scale and it carries no temperatures (its output is already calibrated), so
``validate``, ``predict`` and ``export`` use it as any checkpoint. Grad-CAM needs one network:
:func:`first_fold`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError
from medclf.metrics.calibration import scale_thresholds
from medclf.model.checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
STUDY_FORMAT = "medclf-study"
STUDY_VERSION = 1


def is_study(path: str | Path) -> bool:
    """Whether ``path`` is a study folder (it holds ``study.json``)."""
    return Path(path).is_dir() and (Path(path) / STUDY_FILE).is_file()


def read_study(folder: str | Path) -> dict[str, Any]:
    """``study.json`` of a study folder, checked.

    Raises:
        CheckpointError: when it is unreadable, from another medclf format, or lists no fold.
    """
    path = Path(folder) / STUDY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not readable as a medclf study ({e})") from None
    if not isinstance(data, dict) or data.get("format") != STUDY_FORMAT:
        raise CheckpointError(f"{path} is not a medclf study file (no format {STUDY_FORMAT!r})")
    version = data.get("format_version")
    if version != STUDY_VERSION or not isinstance(data.get("folds"), int):
        by = data.get("medclf_version", "an unknown medclf")
        raise CheckpointError(
            f"{folder} is a study from medclf {by} (study format {version}); this medclf reads format "
            f"{STUDY_VERSION}: run the study again with this medclf"
        )
    return data


@dataclass(kw_only=True)
class StudyCheckpoint(Checkpoint):
    """A study as a checkpoint: fold 1's fields, the ensemble's thresholds, and every fold's checkpoint."""

    folds: list[Checkpoint] = field(default_factory=list)
    study_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Refused: a study is its folds' files, never one checkpoint file (its folds would be pickled objects)."""
        raise CheckpointError(f"{self.study_dir} is a study: it cannot be saved as one checkpoint file; its folds "
                              "are fold_k/best.pt")  # fmt: skip


def load_study(folder: str | Path, map_location: str | torch.device = "cpu") -> StudyCheckpoint:
    """The study in ``folder`` as a checkpoint of its fold ensemble (each fold's ``best.pt``).

    Raises:
        CheckpointError: for an older study format or a fold without a checkpoint (an unfinished study).
    """
    data = read_study(folder)
    folder = Path(folder)
    members = []
    for k in range(1, data["folds"] + 1):
        best = folder / f"fold_{k}" / "best.pt"
        if not best.is_file():
            raise CheckpointError(f"{folder} is an unfinished study: fold {k} has no best.pt; finish it with "
                                  f"python -m medclf.crossval --resume {folder}")  # fmt: skip
        members.append(load_checkpoint(best, map_location))
    first = members[0]
    shown = [scale_thresholds(m.thresholds, m.temperatures) if m.temperatures else list(m.thresholds)
             for m in members]  # fmt: skip
    thresholds = torch.tensor(shown, dtype=torch.float64).mean(dim=0).tolist()
    fields = {**vars(first), "thresholds": thresholds, "temperatures": [], "path": str(folder / STUDY_FILE)}
    log.info("%s: the ensemble of its %d folds (the mean of their calibrated probabilities)", folder, len(members))
    return StudyCheckpoint(**fields, folds=members, study_dir=str(folder))


class FoldEnsemble(nn.Module):
    """The folds' networks; the output is ``logit(mean_k sigmoid(logits_k / T_k))``."""

    def __init__(self, members: list[nn.Module], temperatures: torch.Tensor) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", temperatures.float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probs = torch.stack(
            [torch.sigmoid(net(images).float() / self.temperatures[k]) for k, net in enumerate(self.members)]
        ).mean(dim=0)
        probs = probs.clamp(1e-7, 1 - 1e-7)
        return torch.log(probs) - torch.log1p(-probs)  # the logit, in operators every exporter knows


def ensemble_model(study: StudyCheckpoint, device: str | torch.device) -> FoldEnsemble:
    """The :class:`FoldEnsemble` of a study checkpoint, in eval mode on ``device``."""
    from medclf.model.checkpoint import model_from_checkpoint

    n = len(study.labels)
    temps = [list(m.temperatures) if m.temperatures else [1.0] * n for m in study.folds]
    return FoldEnsemble([model_from_checkpoint(m, device) for m in study.folds], torch.tensor(temps)).to(device).eval()


def first_fold(checkpoint: Any) -> Any:
    """Fold 1's checkpoint of a study (Grad-CAM explains one network); any other checkpoint as it is."""
    folds = getattr(checkpoint, "folds", None)
    if folds:
        log.info("%s is a study: explaining fold 1 (%s)", getattr(checkpoint, "study_dir", ""), folds[0].path)
        return folds[0]
    return checkpoint
