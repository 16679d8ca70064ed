"""The networks medclf can train, each registered once with everything the rest of medclf needs.

An :class:`Architecture` holds its builder, its backbone (frozen by ``--freeze-backbone-epochs``), its
Grad-CAM target layer, its feature layer (whose input the embeddings are), its pretrained-weights
loaders (``--pretrained``) and the input it expects. Adding an architecture is one file holding a
family's ``ARCHITECTURES`` (see :mod:`medclf.model.densenet`) plus its module name in :data:`FAMILIES`.

This module imports neither torch nor MONAI (family modules import them inside their functions), so the
commands can list :func:`model_names` for ``--help`` at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medclf.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

#: Modules holding one family of networks each, as a tuple ``ARCHITECTURES``; order is ``--model`` order.
FAMILIES: tuple[str, ...] = ("medclf.model.densenet", "medclf.model.resnet")

#: Attribute :func:`build` sets on a network to name its architecture (DDP / compile wrappers aside).
NAME_ATTRIBUTE = "medclf_architecture"


@dataclass(frozen=True)
class InputSpec:
    """The images a network expects (what medclf's preprocessing gives it).

    Attributes:
        channels: Image channels.
        intensity: The intensity convention, in words.
    """

    channels: int = 1
    intensity: str = "[0, 1]: uint8/uint16 pixels divided by their maximum, no mean/std normalisation"


@dataclass(frozen=True)
class HubFile:
    """A weights file torchvision publishes, as ``torch.hub`` caches it (``$TORCH_HOME/hub/checkpoints/NAME``).

    Attributes:
        url: Where torchvision downloads it from.
        hash_prefix: The first hex digits of its SHA-256 (the part of the file name after the last ``-``).
    """

    url: str
    hash_prefix: str

    @property
    def file_name(self) -> str:
        """The file name in the hub cache (the URL's last part)."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Architecture:
    """One network medclf can train.

    Attributes:
        name: The ``--model`` name.
        family: The family module's short name (``densenet``, ``resnet``).
        build: ``build(n_labels, in_channels) -> nn.Module``, randomly initialised.
        backbone: The modules frozen by ``--freeze-backbone-epochs`` (everything but the classifier head).
        gradcam_layer: Name of the module whose activations and gradients Grad-CAM uses.
        feature_layer: Name of the classifier layer (an ``nn.Linear``) whose input the embeddings are.
        classes: Class names (any in the network's MRO) that identify a network built elsewhere.
        pretrained: Weight loaders by kind, ``loader(model, path) -> report``; empty when none exists.
        input: The images the network expects.
        network_def: ``network_def(n_labels, in_channels)``: the network as a MONAI bundle component, a dict
            with ``_target_`` (a dotted name) and its arguments, JSON values only; None when there is none.
        imagenet: torchvision's ImageNet weights for ``--pretrained imagenet`` (None when there are none).
    """

    name: str
    family: str
    build: Callable[[int, int], nn.Module]
    backbone: Callable[[nn.Module], list[nn.Module]]
    gradcam_layer: str
    feature_layer: str
    classes: tuple[str, ...] = ()
    pretrained: dict[str, Callable[[nn.Module, str | Path], Any]] = field(default_factory=dict)
    input: InputSpec = InputSpec()
    imagenet: HubFile | None = None
    network_def: Callable[[int, int], dict[str, Any]] | None = None


def built_from(definition: Callable[[int, int], dict[str, Any]]) -> Callable[[int, int], nn.Module]:
    """A builder instantiating ``definition(n_labels, in_channels)`` as MONAI's bundle parser does: the
    ``_target_`` called with the other keys (so that a bundle's ``network_def`` is the same network)."""

    def build(n_labels: int, in_channels: int) -> nn.Module:
        spec = dict(definition(n_labels, in_channels))
        module, _, name = str(spec.pop("_target_")).rpartition(".")
        return getattr(importlib.import_module(module), name)(**spec)

    return build


_REGISTRY: dict[str, Architecture] = {}


def _registry() -> dict[str, Architecture]:
    """Every architecture of :data:`FAMILIES`, by name (imported once, on first use)."""
    if not _REGISTRY:
        for module in FAMILIES:
            for arch in importlib.import_module(module).ARCHITECTURES:
                if arch.name in _REGISTRY:
                    raise ValueError(f"model name {arch.name!r} registered twice ({module})")
                _REGISTRY[arch.name] = arch
    return _REGISTRY


def model_names() -> tuple[str, ...]:
    """Names accepted by ``--model``, in registration order."""
    return tuple(_registry())


def architecture(name: str) -> Architecture:
    """The architecture called ``name``.

    Raises:
        ConfigError: for an unknown name, in the words ``--model`` has always used.
    """
    found = _registry().get(name)
    if found is None:
        raise ConfigError(f"--model (model) must be one of {', '.join(model_names())}; got {name!r}")
    return found


def architecture_of(net: nn.Module) -> Architecture:
    """The architecture of a network: the name :func:`build` gave it, else the first whose class matches.

    Raises:
        ValueError: for a network no registered architecture describes.
    """
    name = getattr(net, NAME_ATTRIBUTE, None)
    if isinstance(name, str) and name in _registry():
        return _registry()[name]
    mro = {cls.__name__ for cls in type(net).__mro__}
    for arch in _registry().values():
        if mro & set(arch.classes):
            return arch
    raise ValueError(f"{type(net).__name__} is not a registered medclf architecture ({', '.join(model_names())})")


def build(name: str, n_labels: int, in_channels: int = 1) -> nn.Module:
    """A randomly initialised ``name`` network with ``n_labels`` logits, tagged with its architecture."""
    arch = architecture(name)
    net = arch.build(n_labels, in_channels)
    setattr(net, NAME_ATTRIBUTE, name)  # a plain attribute: not a parameter, not in the state_dict
    return net


def pretrained_loader(name: str, path: str | Path) -> Callable[[nn.Module, str | Path], Any]:
    """The loader ``--pretrained PATH`` uses for architecture ``name``.

    Raises:
        ConfigError: when the architecture has no pretrained-weights loader.
    """
    arch = architecture(name)
    if not arch.pretrained:
        known = [a.name for a in _registry().values() if a.pretrained]
        raise ConfigError(
            f"--pretrained {path}: {name} has no pretrained-weights loader (one exists for {', '.join(known)})"
        )
    return next(iter(arch.pretrained.values()))


__all__ = [
    "FAMILIES",
    "Architecture",
    "HubFile",
    "InputSpec",
    "architecture",
    "architecture_of",
    "build",
    "built_from",
    "model_names",
    "pretrained_loader",
]
