"""The ResNet family: MONAI ResNet-10 and ResNet-18 (``spatial_dims=2``, random initialisation only).

Backbone: everything but ``fc`` (stem, ``layer1``-``layer4``, pooling); head: ``fc``. Grad-CAM reads
``layer4``, the last residual stage before pooling. No pretrained-weights loader: ``--pretrained`` is
refused for these networks. torch and MONAI are imported inside the functions (see
:mod:`medclf.model.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medclf.model.registry import Architecture

if TYPE_CHECKING:
    from torch import nn


def _builder(name: str) -> Any:
    def build(n_labels: int, in_channels: int) -> nn.Module:
        from monai.networks import nets

        make = {"resnet10": nets.resnet10, "resnet18": nets.resnet18}[name]
        return make(pretrained=False, spatial_dims=2, n_input_channels=in_channels, num_classes=n_labels)

    return build


def backbone(net: nn.Module) -> list[nn.Module]:
    """Every top-level block but the classifier ``fc``."""
    return [module for name, module in net.named_children() if name != "fc"]


ARCHITECTURES: tuple[Architecture, ...] = tuple(
    Architecture(
        name=name,
        family="resnet",
        build=_builder(name),
        backbone=backbone,
        gradcam_layer="layer4",
        feature_layer="fc",
        classes=("ResNet",),
    )
    for name in ("resnet10", "resnet18")
)
