"""``--pretrained imagenet``: torchvision's ImageNet weights through torch.hub's cache, without torchvision.

The file is the one torchvision itself would use, ``$TORCH_HOME/hub/checkpoints/<name>`` (``TORCH_HOME``
defaults to ``~/.cache/torch``): taken when present, else downloaded there with its SHA-256 prefix checked
(``torch.hub.download_url_to_file``), else refused with one line that names the URL and the path to put
the file at. The URLs and hash prefixes are the registry's (:data:`medclf.model.densenet.IMAGENET`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch.hub

from medclf.errors import CheckpointError, ConfigError
from medclf.model.registry import HubFile, architecture, model_names

log = logging.getLogger(__name__)


def hub_path(weights: HubFile) -> Path:
    """Where torch.hub (and torchvision) keep ``weights``: ``<torch.hub.get_dir()>/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.file_name


def imagenet_weights(model: str, *, download: bool = True) -> Path:
    """The local file of torchvision's ImageNet weights for ``model``, downloaded into the cache if needed.

    Raises:
        ConfigError: when ``model`` has no ImageNet weights.
        CheckpointError: when the file is absent and cannot be downloaded (offline, refused, hash mismatch):
            one line naming the URL and the exact path to put the file at.
    """
    weights = architecture(model).imagenet
    if weights is None:
        known = [name for name in model_names() if architecture(name).imagenet is not None]
        raise ConfigError(
            f"--pretrained imagenet: {model} has no torchvision ImageNet weights (they exist for {', '.join(known)})"
        )
    path = hub_path(weights)
    if path.is_file():
        log.info("ImageNet weights for %s: %s (torch.hub cache)", model, path)
        return path
    if not download:
        raise CheckpointError(_absent(weights, path, "not downloaded"))
    log.info("downloading ImageNet weights for %s from %s to %s", model, weights.url, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Writes a temporary file next to ``path`` and renames it only after the hash prefix matched.
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=weights.hash_prefix, progress=False)
    except Exception as e:  # URLError, HTTPError, a hash mismatch (RuntimeError), a full disk: all end the same
        raise CheckpointError(_absent(weights, path, f"download failed: {_reason(e)}")) from None
    return path


def _absent(weights: HubFile, path: Path, why: str) -> str:
    return (
        f"--pretrained imagenet: {path} is not in the torch.hub cache and {why}; download {weights.url} "
        f"(SHA-256 starting {weights.hash_prefix}) and put it at {path}, or set TORCH_HOME to a folder whose "
        "hub/checkpoints/ holds it"
    )


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return " ".join(str(reason).split()) or type(error).__name__


__all__ = ["hub_path", "imagenet_weights"]
