"""The DenseNet family: MONAI DenseNet121/169/201 and a 27k-parameter ``densenet_tiny`` for smoke tests.

Backbone: ``features`` (stem, dense blocks, transitions, ``norm5``); head: ``class_layers``
(ReLU, global average pooling, flatten, ``out``). Grad-CAM reads ``class_layers.relu``, the last dense
features before pooling. ImageNet weights come from torchvision's ``.pth`` files
(:mod:`medclf.model.pretrained`), found through torch.hub's cache (:data:`IMAGENET`,
:mod:`medclf.model.hub_cache`); chest X-ray weights from medclf weights files
(:mod:`medclf.model.weights_file`, written by ``medclf-import-weights``). torch and MONAI are imported
inside the functions (see
:mod:`medclf.model.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medclf.model.registry import Architecture, HubFile, built_from

if TYPE_CHECKING:
    from torch import nn

_DEPTHS = ("densenet121", "densenet169", "densenet201")
#: torchvision's ImageNet weights (``torchvision.models.DenseNet121_Weights.IMAGENET1K_V1`` etc.): the URL, and
#: the SHA-256 prefix torch.hub checks, which is the part of the file name after its last ``-``.
IMAGENET: dict[str, HubFile] = {
    "densenet121": HubFile("https://download.pytorch.org/models/densenet121-a639ec97.pth", "a639ec97"),
    "densenet169": HubFile("https://download.pytorch.org/models/densenet169-b2777c0a.pth", "b2777c0a"),
    "densenet201": HubFile("https://download.pytorch.org/models/densenet201-c1103571.pth", "c1103571"),
}


def _definition(name: str) -> Any:
    def definition(n_labels: int, in_channels: int) -> dict[str, Any]:
        target = {"densenet121": "DenseNet121", "densenet169": "DenseNet169", "densenet201": "DenseNet201"}[name]
        return {"_target_": f"monai.networks.nets.{target}", "spatial_dims": 2, "in_channels": in_channels,
                "out_channels": n_labels}  # fmt: skip

    return definition


def tiny_definition(n_labels: int, in_channels: int) -> dict[str, Any]:
    """A 27k-parameter DenseNet for smoke tests and data-path benchmarks."""
    return {"_target_": "monai.networks.nets.DenseNet", "spatial_dims": 2, "in_channels": in_channels,
            "out_channels": n_labels, "init_features": 16, "growth_rate": 8, "block_config": [2, 2, 2, 2]}  # fmt: skip


def backbone(net: nn.Module) -> list[nn.Module]:
    """The feature extractor ``features``; ``class_layers`` is the head."""
    return [net.features]


def load_torchvision(net: nn.Module, path: str | Path) -> Any:
    """torchvision ImageNet DenseNet weights from a local ``.pth`` (:func:`load_torchvision_densenet`)."""
    from medclf.model.pretrained import load_torchvision_densenet

    return load_torchvision_densenet(net, path)


def load_weights(net: nn.Module, path: str | Path, labels: Any = None) -> Any:
    """A medclf weights file (chest X-ray weights, :func:`medclf.model.weights_file.load_weights_file`)."""
    from medclf.model.weights_file import load_weights_file

    return load_weights_file(net, path, labels)


def _entry(name: str, definition: Any) -> Architecture:
    return Architecture(
        name=name,
        family="densenet",
        build=built_from(definition),
        network_def=definition,
        backbone=backbone,
        gradcam_layer="class_layers.relu",
        feature_layer="class_layers.out",
        classes=("DenseNet",),
        pretrained={"torchvision-imagenet": load_torchvision, "medclf-weights": load_weights},
        imagenet=IMAGENET.get(name),
    )


ARCHITECTURES: tuple[Architecture, ...] = (
    *(_entry(name, _definition(name)) for name in _DEPTHS),
    _entry("densenet_tiny", tiny_definition),
)
