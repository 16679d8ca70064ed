"""medclf weights files: network weights from elsewhere, as tensors and plain values only.

``medclf-import-weights`` writes them (from torchxrayvision's pickled models, which medclf never unpickles
itself); ``--pretrained weights.pt`` reads them with ``torch.load(weights_only=True)``. On disk a weights file
is a dict::

    format        "medclf-weights"          format_version  1
    architecture  "densenet121"             (the medclf network the tensors fit)
    state_dict    {name: tensor}            (torchvision's DenseNet names: features.*, classifier.*)
    labels        [18 names]                (the classifier's outputs in order; "" for an unused one)
    thresholds    [18 floats]               (the source's operating thresholds; NaN where it has none)
    input         {"channels": 1, "image_size": 224, "intensity": [-1024.0, 1024.0], "crop": "centre"}
    source        {"library", "version", "weights", "file", "sha256"}

Loading maps the backbone onto medclf's DenseNet (:func:`medclf.model.pretrained.load_densenet_backbone`),
starts the classifier rows of the labels both share from the file's head (:func:`shared_rows`: names matched
case- and spelling-insensitively) and records the input convention on the network
(:mod:`medclf.model.input_convention`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError
from medclf.model.input_convention import apply_convention, check_convention, describe
from medclf.model.pretrained import load_densenet_backbone, name_list
from medclf.model.registry import architecture_of
from medclf.model.safe_load import load_weights_only
from medclf.reporting.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = "medclf-weights"
FORMAT_VERSION = 1
HEAD = ("classifier.weight", "classifier.bias")
# Spellings of one finding in different label sets, by their letters-only lower-case form.
_ALIASES = {
    "pleuraleffusion": "effusion",
    "airspaceopacity": "lungopacity",
    "cardiomediastinum": "enlargedcardiomediastinum",
}


@dataclass
class WeightsFile:
    """The content of a medclf weights file (see the module docstring).

    Attributes:
        state_dict: Tensors by torchvision's DenseNet names.
        architecture: The medclf network they fit.
        labels: The classifier's outputs, in order ("" for an unused output).
        thresholds: The source's operating thresholds per output (NaN where none).
        input: The input convention (:mod:`medclf.model.input_convention`).
        source: Where the weights came from: library, version, weights name, file, sha256.
        path: Where it was read from (not saved).
    """

    state_dict: dict[str, torch.Tensor]
    architecture: str
    labels: list[str]
    thresholds: list[float] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``torch.save`` (tensors, containers and scalars only; ``path`` is not saved)."""
        saved = dict(vars(self))
        del saved["path"]
        return {"format": FORMAT, "format_version": FORMAT_VERSION} | saved


def is_weights_file(state: Any) -> bool:
    """Whether a loaded ``.pt`` object is a medclf weights file."""
    return isinstance(state, Mapping) and state.get("format") == FORMAT


def save_weights_file(path: str | Path, weights: WeightsFile) -> None:
    """Write ``weights`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        torch.save(weights.to_dict(), f)


def read_weights_file(path: str | Path, state: Any = None) -> WeightsFile:
    """A medclf weights file, read safely (or checked from ``state``, the file already loaded).

    Raises:
        CheckpointError: the file is missing, truncated, holds pickled objects, is not a weights file, or
            lacks a field or has a malformed one.
    """
    if state is None:
        state = load_weights_only(path, "cpu", what="pretrained weights")
    if not is_weights_file(state):
        raise CheckpointError(f"{path} is not a medclf weights file (format {FORMAT!r})")
    missing = [k for k in ("state_dict", "architecture", "labels") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: medclf weights file lacks {', '.join(missing)}")
    tensors = state["state_dict"]
    if not isinstance(tensors, Mapping) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise CheckpointError(f"{path}: state_dict of the weights file is not a dict of tensors")
    known = {f.name for f in fields(WeightsFile)} - {"path"}
    weights = WeightsFile(**{k: v for k, v in state.items() if k in known}, path=str(path))
    weights.input = check_convention(weights.input, str(path))
    head = weights.state_dict.get(HEAD[0])
    if head is not None and head.shape[0] != len(weights.labels):
        raise CheckpointError(f"{path}: {len(weights.labels)} labels for a classifier of {head.shape[0]} outputs")
    return weights


def label_key(name: str) -> str:
    """A label's letters and digits, lower case, with known synonyms joined (``Pleural_Thickening`` ->
    ``pleuralthickening``, ``Pleural Effusion`` -> ``effusion``)."""
    key = re.sub(r"[^0-9a-z]", "", name.casefold())
    return _ALIASES.get(key, key)


def shared_rows(source_labels: Sequence[str], labels: Sequence[str]) -> list[tuple[int, int]]:
    """(row in ``labels``, row in ``source_labels``) for every label both share; empty source names skipped."""
    source = {label_key(name): j for j, name in enumerate(source_labels) if name}
    return [(i, source[label_key(name)]) for i, name in enumerate(labels) if label_key(name) in source]


def copy_head_rows(
    net: nn.Module,
    head: tuple[torch.Tensor, torch.Tensor],
    source_labels: Sequence[str],
    labels: Sequence[str],
    where: str,
) -> list[str]:
    """Copy the classifier rows (weight and bias) of the shared labels from ``head`` into ``net``'s classifier.

    Returns the labels started from ``head``; the others keep their initial values. Raises CheckpointError
    when ``head`` has another input width than ``net``'s classifier.
    """
    layer = net.get_submodule(architecture_of(net).feature_layer)
    weight, bias = head
    if weight.ndim != 2 or weight.shape[1] != layer.weight.shape[1]:
        raise CheckpointError(
            f"{where}: its classifier takes {tuple(weight.shape)[1:]} features, the model's {layer.weight.shape[1]}"
        )
    pairs = shared_rows(source_labels, labels)
    with torch.no_grad():
        for i, j in pairs:
            layer.weight[i].copy_(weight[j])
            layer.bias[i].copy_(bias[j])
    return [labels[i] for i, _ in pairs]


def apply_weights_file(net: nn.Module, weights: WeightsFile, labels: Sequence[str]) -> dict[str, Any]:
    """Load ``weights`` into ``net`` (labels ``labels``): backbone, shared head rows, input convention.

    Returns what was done (also logged): the backbone report, labels started from the file's head, labels
    started fresh, file labels skipped.
    """
    name = architecture_of(net).name
    if weights.architecture != name:
        raise CheckpointError(
            f"{weights.path} holds {weights.architecture} weights, the model is {name}: "
            f"use --model {weights.architecture}"
        )
    backbone = {k: v for k, v in weights.state_dict.items() if k not in HEAD}
    report = load_densenet_backbone(net, backbone, weights.path)
    started: list[str] = []
    if all(k in weights.state_dict for k in HEAD):
        head = (weights.state_dict[HEAD[0]], weights.state_dict[HEAD[1]])
        started = copy_head_rows(net, head, weights.labels, labels, weights.path)
    fresh = [label for label in labels if label not in started]
    taken = {label_key(label) for label in started}
    skipped = [label for label in weights.labels if label and label_key(label) not in taken]
    apply_convention(net, weights.input, weights.path)
    log.info(
        "classifier rows from %s: %s; started fresh: %s; file labels not used: %s",
        weights.path, name_list(started), name_list(fresh), name_list(skipped),
    )  # fmt: skip
    log.info("input convention of %s: %s", weights.path, describe(weights.input))
    _log_thresholds(weights, started)
    return {"backbone": report, "from_head": started, "fresh": fresh, "skipped": skipped}


def load_weights_file(net: nn.Module, path: str | Path, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Read a medclf weights file and load it into ``net`` (:func:`apply_weights_file`)."""
    return apply_weights_file(net, read_weights_file(path), list(labels or ()))


def _log_thresholds(weights: WeightsFile, started: Sequence[str]) -> None:
    """The source's operating thresholds of the shared labels (for reference: training picks its own)."""
    by_key = {label_key(n): t for n, t in zip(weights.labels, weights.thresholds, strict=False) if n}
    shown = [f"{n} {by_key[label_key(n)]:.4g}" for n in started if not math.isnan(by_key.get(label_key(n), math.nan))]
    if shown:
        log.info("operating thresholds of the source (its scale, not used by medclf): %s", ", ".join(shown))


__all__ = [
    "FORMAT",
    "WeightsFile",
    "apply_weights_file",
    "copy_head_rows",
    "is_weights_file",
    "label_key",
    "load_weights_file",
    "read_weights_file",
    "save_weights_file",
    "shared_rows",
]
