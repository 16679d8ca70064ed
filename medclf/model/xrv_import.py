"""torchxrayvision's chest X-ray DenseNet121 weights as medclf weights files (``medclf-import-weights``).

torchxrayvision publishes its weights as whole pickled models: loading one runs code stored in the file.
medclf never does that in training or inference; this converter does it once, through torchxrayvision's own
loader, after saying so, and writes a weights-only file (:mod:`medclf.model.weights_file`) that
``--pretrained`` then reads with ``torch.load(weights_only=True)``.

torchxrayvision publishes no checksums of its files (``model_urls`` in its ``models.py`` holds URLs, labels
and thresholds only) and medclf knows none either, so the converter records the file's SHA-256 and checks it
against ``--sha256`` when the user has a trusted value.

torchxrayvision is an extra (``pip install medclf[xrv]``), imported only here, inside the functions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Any

from medclf.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

XRV_PREFIX = "torchxrayvision:"
#: torchxrayvision's DenseNet121 weights (``xrv.models.model_urls``): name -> the file it downloads.
XRV_FILES: dict[str, str] = {
    "densenet121-res224-all": "nih-pc-chex-mimic_ch-google-openi-kaggle-"
    "densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "densenet121-res224-nih": "nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "densenet121-res224-pc": "pc-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "densenet121-res224-chex": "chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "densenet121-res224-rsna": "kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "densenet121-res224-mimic_nb": "mimic_nb-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
    "densenet121-res224-mimic_ch": "mimic_ch-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
}
#: What torchxrayvision's models are trained on: ``xrv.utils.normalize`` (pixels -> [-1024, 1024]),
#: ``XRayCenterCrop`` (the long side cropped to a centred square), ``XRayResizer(224)``, one channel.
XRV_INPUT: dict[str, Any] = {"channels": 1, "image_size": 224, "intensity": [-1024.0, 1024.0], "crop": "centre"}
_INSTALL = (
    "pip install 'medclf[xrv]' (torchxrayvision, and a torchvision built for your torch: with a CPU-only torch, "
    "torchvision from https://download.pytorch.org/whl/cpu)"
)


def xrv_weights_names() -> tuple[str, ...]:
    """The torchxrayvision weights names medclf knows (``torchxrayvision:NAME``)."""
    return tuple(XRV_FILES)


def weights_cache_dir() -> Path:
    """medclf's folder of converted weights: ``$MEDCLF_HOME/weights``, else ``$XDG_CACHE_HOME/medclf/weights``
    (``~/.cache/medclf/weights``)."""
    if os.environ.get("MEDCLF_HOME"):
        return Path(os.environ["MEDCLF_HOME"]).expanduser() / "weights"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "medclf" / "weights"


def cached_weights_path(name: str) -> Path:
    """Where ``--pretrained torchxrayvision:NAME`` looks for the converted file."""
    return weights_cache_dir() / f"torchxrayvision-{name}.pt"


def import_torchxrayvision() -> Any:
    """The torchxrayvision module.

    Raises:
        ConfigError: one line naming the package that is missing or broken and what to install.
    """
    try:
        import torchxrayvision
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"torchxrayvision weights need the {e.name} package, which is not installed: {_INSTALL}"
        ) from None
    except Exception as e:  # e.g. torchvision built for another torch: "operator torchvision::nms does not exist"
        reason = " ".join(str(e).split())
        raise ConfigError(f"torchxrayvision cannot be imported ({type(e).__name__}: {reason}): {_INSTALL}") from None
    return torchxrayvision


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_xrv_model(xrv: Any, path: Path, name: str) -> Any:
    """torchxrayvision's DenseNet with the weights of ``path``, loaded as torchxrayvision loads them.

    A file under torchxrayvision's own name for ``name`` goes through ``xrv.models.DenseNet(weights=name)``
    (labels and operating thresholds from its table); any other file is unpickled the same way
    (``torch.load(weights_only=False)``, then ``load_state_dict`` into a fresh ``xrv.models.DenseNet``).
    """
    import torch

    if name in XRV_FILES and path.name == XRV_FILES[name]:
        return xrv.models.DenseNet(weights=name, cache_dir=str(path.parent)).eval()
    saved = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user, said in the log
    state = saved.state_dict() if hasattr(saved, "state_dict") else saved
    model = xrv.models.DenseNet()
    model.load_state_dict({k: v for k, v in state.items() if k != "op_threshs"})
    if name in XRV_FILES:
        table = xrv.models.model_urls[name]
        model.targets = list(table["labels"])
        model.op_threshs = torch.tensor(table["op_threshs"])
    return model.eval()


def weights_from_xrv_model(model: Any, name: str, source: dict[str, Any]) -> Any:
    """The medclf weights file of a loaded torchxrayvision DenseNet121.

    Raises:
        CheckpointError: when the model is not a one-channel DenseNet121 with one output per label.
    """
    from medclf.model.weights_file import WeightsFile

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k != "op_threshs"}
    labels = [str(label) for label in model.targets]
    stem, head = state.get("features.conv0.weight"), state.get("classifier.weight")
    if stem is None or head is None or tuple(stem.shape) != (64, 1, 7, 7) or head.shape[1] != 1024:
        found = f"stem {_shape(stem)}, classifier {_shape(head)}"
        raise CheckpointError(f"{source.get('file')} is not a one-channel torchxrayvision DenseNet121 ({found})")
    if head.shape[0] != len(labels):
        raise CheckpointError(f"{source.get('file')}: {head.shape[0]} outputs for {len(labels)} labels")
    thresholds = getattr(model, "op_threshs", None)
    values = [float(t) for t in thresholds.tolist()] if thresholds is not None else [math.nan] * len(labels)
    return WeightsFile(
        state_dict=state, architecture="densenet121", labels=labels, thresholds=values,
        input=dict(XRV_INPUT), source={**source, "weights": name},
    )  # fmt: skip


def _shape(tensor: Any) -> str:
    return "absent" if tensor is None else str(tuple(tensor.shape))


def convert_torchxrayvision(file: str | Path, out: str | Path, name: str, sha256: str = "") -> Any:
    """Convert torchxrayvision's weights file ``file`` (weights ``name``) into a medclf weights file ``out``.

    Raises:
        ConfigError: torchxrayvision is missing or broken; an unknown ``name``.
        CheckpointError: ``file`` is missing, does not match ``sha256``, or is not a torchxrayvision DenseNet121.
    """
    from medclf.model.weights_file import save_weights_file

    path = Path(file)
    if name not in XRV_FILES:
        raise ConfigError(
            f"--name {name}: medclf does not know these torchxrayvision weights (known: {', '.join(XRV_FILES)})"
        )
    if not path.is_file():
        raise CheckpointError(f"torchxrayvision weights file not found: {path}")
    xrv = import_torchxrayvision()
    digest = file_sha256(path)
    if sha256 and digest != sha256.lower():
        raise CheckpointError(f"{path}: SHA-256 {digest} differs from the expected {sha256.lower()}; not converted")
    log.warning(
        "loading %s with torchxrayvision's own loader, which unpickles it and so runs any code stored in it: "
        "this trusts the file (SHA-256 %s%s)",
        path, digest, ", as expected" if sha256 else "; torchxrayvision publishes no checksum to compare it with",
    )  # fmt: skip
    model = load_xrv_model(xrv, path, name)
    source = {"library": "torchxrayvision", "version": str(getattr(xrv, "__version__", "")), "file": str(path),
              "sha256": digest}  # fmt: skip
    weights = weights_from_xrv_model(model, name, source)
    save_weights_file(out, weights)
    log.info("wrote %s: %s weights, %d labels; start from it with --pretrained %s", out, name, len(weights.labels), out)
    return weights


__all__ = [
    "XRV_FILES",
    "XRV_INPUT",
    "XRV_PREFIX",
    "cached_weights_path",
    "convert_torchxrayvision",
    "file_sha256",
    "import_torchxrayvision",
    "load_xrv_model",
    "weights_cache_dir",
    "weights_from_xrv_model",
    "xrv_weights_names",
]
