"""Networks: MONAI DenseNets with one input channel and one logit per label."""

from __future__ import annotations

from monai.networks.nets import DenseNet, DenseNet121, DenseNet169, DenseNet201
from torch import nn

from medclf.errors import ConfigError

_DENSENETS = {"densenet121": DenseNet121, "densenet169": DenseNet169, "densenet201": DenseNet201}
#: Names accepted by :func:`build_model` (and ``--model``).
MODEL_NAMES: tuple[str, ...] = (*_DENSENETS, "densenet_tiny")


def build_model(name: str, n_labels: int, in_channels: int = 1) -> nn.Module:
    """A randomly initialised network.

    Args:
        name: ``densenet121`` (default of the product), ``densenet169``, ``densenet201``, or
            ``densenet_tiny`` (a 27k-parameter DenseNet for smoke tests and data-path benchmarks).
        n_labels: Number of outputs (logits).
        in_channels: Image channels.
    """
    if name in _DENSENETS:
        return _DENSENETS[name](spatial_dims=2, in_channels=in_channels, out_channels=n_labels)
    if name == "densenet_tiny":
        return DenseNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=n_labels,
            init_features=16,
            growth_rate=8,
            block_config=(2, 2, 2, 2),
        )
    raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the feature extractor (``model.features``); the classifier always trains.

    A frozen backbone also keeps its batch-norm statistics, so call this after ``model.train()``.
    """
    features = unwrap_model(model).features
    for p in features.parameters():
        p.requires_grad_(trainable)
    if not trainable:
        features.eval()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain network inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # torch.compile
        else:
            return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["build_model", "count_parameters", "set_backbone_trainable", "unwrap_model"]
