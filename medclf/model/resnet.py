"""The ResNet family: MONAI ResNet-10 and ResNet-18 (``spatial_dims=2``).

Backbone: everything but ``fc`` (stem, ``layer1``-``layer4``, pooling); head: ``fc``. Grad-CAM reads
``layer4``, the last residual stage before pooling. ResNet-18 starts from torchvision's ImageNet weights
with ``--pretrained imagenet`` or a local ``.pth`` (:func:`load_torchvision`); ResNet-10 has none, so
``--pretrained`` is refused for it. torch and MONAI are imported inside the functions (see
:mod:`medclf.model.registry`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medclf.errors import CheckpointError
from medclf.model.registry import Architecture, HubFile, built_from

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)
#: torchvision's ImageNet weights (``ResNet18_Weights.IMAGENET1K_V1``); torchvision has no ResNet-10.
IMAGENET: dict[str, HubFile] = {
    "resnet18": HubFile("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd")
}
_DOWNSAMPLE_BIAS = "downsample.0.bias"  # MONAI's shortcut convolution has a bias, torchvision's has none


def _definition(name: str) -> Any:
    def definition(n_labels: int, in_channels: int) -> dict[str, Any]:
        return {"_target_": f"monai.networks.nets.{name}", "pretrained": False, "spatial_dims": 2,
                "n_input_channels": in_channels, "num_classes": n_labels}  # fmt: skip

    return definition


def backbone(net: nn.Module) -> list[nn.Module]:
    """Every top-level block but the classifier ``fc``."""
    return [module for name, module in net.named_children() if name != "fc"]


def load_torchvision(net: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """torchvision ImageNet ResNet weights from a local ``.pth`` into a MONAI ResNet of the same depth.

    The names are the same in both; the RGB stem is summed into the network's channels
    (:func:`medclf.model.pretrained.adapt_input_conv`), ``fc`` is not loaded, and the shortcut convolutions'
    biases, which torchvision's network lacks, are set to 0. One difference stays: MONAI's stem convolution
    has stride 1 where torchvision's has 2, so the filters see the image at twice the resolution they were
    trained at (a start, not torchvision's network).

    Raises:
        CheckpointError: a file that is not torchvision ResNet weights, or of another depth.
    """
    import torch

    from medclf.model.pretrained import adapt_input_conv, name_list, read_state_dict

    source, target = read_state_dict(Path(path)), net.state_dict()
    if "conv1.weight" not in source or "layer1.0.conv1.weight" not in source:
        raise CheckpointError(
            f"{path} does not look like torchvision ResNet weights (no conv1.weight, layer1.0.conv1.weight)"
        )
    weights = {k: v for k, v in source.items() if k in target and not k.startswith("fc.")}
    if weights["conv1.weight"].ndim == 4 and weights["conv1.weight"].shape[1] == 3:
        weights["conv1.weight"] = adapt_input_conv(weights["conv1.weight"], target["conv1.weight"].shape[1])
    wrong = [
        f"{k} {tuple(v.shape)}, model {tuple(target[k].shape)}"
        for k, v in weights.items()
        if v.shape != target[k].shape
    ]
    zeroed = [k for k in target if k.endswith(_DOWNSAMPLE_BIAS) and k not in source]
    absent = [k for k in target if not k.startswith(("fc.", *zeroed)) and k not in weights]
    absent = [k for k in absent if not k.endswith("num_batches_tracked")]
    extra = [k for k in source if k not in target and not k.startswith("fc.")]
    if wrong or absent or extra:
        problems = {"of another shape": wrong, "missing from the file": absent, "not in the model": extra}
        detail = "; ".join(f"{what}: {name_list(names, 3)}" for what, names in problems.items() if names)
        raise CheckpointError(
            f"{path} does not fit {type(net).__name__} ({detail}): use ResNet weights of the same depth"
        )
    weights.update({k: torch.zeros_like(target[k]) for k in zeroed})
    net.load_state_dict(weights, strict=False)
    log.info(
        "loaded %d tensors from %s; stem fitted to %d channel(s); set to 0: %s; left at initial values: fc.*",
        len(weights), path, target["conv1.weight"].shape[1], name_list(zeroed),
    )  # fmt: skip
    return {"loaded": sorted(weights), "zeroed": zeroed}


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
        pretrained={"torchvision-imagenet": load_torchvision} if name in IMAGENET else {},
        imagenet=IMAGENET.get(name),
    )
    for name in ("resnet10", "resnet18")
)
