"""Networks by name (:mod:`medclf.model.registry`), and what medclf does to any of them: build, freeze the
backbone, add dropout before the classifier, look through DDP / ``torch.compile`` wrappers, count parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from medclf.model import registry


def build_model(name: str, n_labels: int, in_channels: int = 1) -> nn.Module:
    """A randomly initialised network.

    Args:
        name: A registered name (:func:`medclf.model.registry.model_names`): ``densenet121`` (default of the
            product), ``densenet169``, ``densenet201``, ``densenet_tiny`` (a 27k-parameter DenseNet for smoke
            tests and data-path benchmarks), ``resnet10``, ``resnet18``.
        n_labels: Number of outputs (logits).
        in_channels: Image channels.

    Raises:
        ConfigError: for an unknown name.
    """
    return registry.build(name, n_labels, in_channels)


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the feature extractor (the architecture's ``backbone``); the classifier always trains.

    A frozen backbone also keeps its batch-norm statistics, so call this after ``model.train()``.
    """
    net = unwrap_model(model)
    for part in registry.architecture_of(net).backbone(net):
        for p in part.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            part.eval()


def add_feature_dropout(net: nn.Module, p: float) -> None:
    """Dropout with probability ``p`` on the classifier's input (the pooled features), in training mode only.

    Added as a forward pre-hook on the architecture's classifier layer, so the state_dict, checkpoints and
    exported models are those of the network without it.
    """
    if not p:
        return
    layer = net.get_submodule(registry.architecture_of(net).feature_layer)

    def drop(module: nn.Module, args: tuple) -> tuple:
        features, *rest = args
        return (F.dropout(features, p, module.training), *rest)

    layer.register_forward_pre_hook(drop)


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
