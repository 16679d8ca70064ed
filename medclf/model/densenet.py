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

from medclf.model.registry import Architecture, HubFile

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


def _builder(name: str) -> Any:
    def build(n_labels: int, in_channels: int) -> nn.Module:
        from monai.networks import nets

        cls = {"densenet121": nets.DenseNet121, "densenet169": nets.DenseNet169, "densenet201": nets.DenseNet201}
        return cls[name](spatial_dims=2, in_channels=in_channels, out_channels=n_labels)

    return build


def build_tiny(n_labels: int, in_channels: int) -> nn.Module:
    """A 27k-parameter DenseNet for smoke tests and data-path benchmarks."""
    from monai.networks.nets import DenseNet

    return DenseNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=n_labels,
        init_features=16,
        growth_rate=8,
        block_config=(2, 2, 2, 2),
    )


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


def _entry(name: str, build: Any) -> Architecture:
    return Architecture(
        name=name,
        family="densenet",
        build=build,
        backbone=backbone,
        gradcam_layer="class_layers.relu",
        feature_layer="class_layers.out",
        classes=("DenseNet",),
        pretrained={"torchvision-imagenet": load_torchvision, "medclf-weights": load_weights},
        imagenet=IMAGENET.get(name),
    )


ARCHITECTURES: tuple[Architecture, ...] = (
    *(_entry(name, _builder(name)) for name in _DEPTHS),
    _entry("densenet_tiny", build_tiny),
)
