"""The ResNet family: MONAI ResNet-10 and ResNet-18 (``spatial_dims=2``, random initialisation only).

Backbone: everything but ``fc`` (stem, ``layer1``-``layer4``, pooling); head: ``fc``. Grad-CAM reads
``layer4``, the last residual stage before pooling. No pretrained-weights loader: ``--pretrained`` is
refused for these networks. torch and MONAI are imported inside the functions (see
:mod:`medclf.model.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medclf.model.registry import Architecture, built_from

if TYPE_CHECKING:
    from torch import nn


def _definition(name: str) -> Any:
    def definition(n_labels: int, in_channels: int) -> dict[str, Any]:
        return {"_target_": f"monai.networks.nets.{name}", "pretrained": False, "spatial_dims": 2,
                "n_input_channels": in_channels, "num_classes": n_labels}  # fmt: skip

    return definition


def backbone(net: nn.Module) -> list[nn.Module]:
    """Every top-level block but the classifier ``fc``."""
    return [module for name, module in net.named_children() if name != "fc"]


ARCHITECTURES: tuple[Architecture, ...] = tuple(
    Architecture(
        name=name,
        family="resnet",
        build=built_from(_definition(name)),
        network_def=_definition(name),
        backbone=backbone,
        gradcam_layer="layer4",
        feature_layer="fc",
        classes=("ResNet",),
    )
    for name in ("resnet10", "resnet18")
)
