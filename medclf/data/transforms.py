"""MONAI dictionary transforms from a manifest row to a cached sample.

The whole chain is deterministic, so every image is decoded and resized once and then served from the
cache::

    ReadImaged            file -> array, reader chosen by file type, source bit depth recorded;
                          DICOM: modality LUT, first VOI LUT / window, MONOCHROME1 inverted
    EnsureChannelFirstd   (H, W[, C]) -> (C, H, W)
    ToGrayscaled          RGB/RGBA/gray+alpha -> one channel, 3-D singleton slices -> 2-D
    CentreCropd           (only for weights trained so, e.g. torchxrayvision's) the long side cropped to a
                          centred square
    AreaResized           -> (1, S, S), area interpolation
    ScaleIntensityd       per-image min/max -> [0, 255] (8-bit sources) or [0, 65535] (deeper sources)
    CastToCompactd        -> uint8 / uint16 tensor, metadata dropped (1 byte per pixel for 8-bit PNGs)
    ConcatItemsd          one (1,) array per label -> float32 ``labels`` vector
    DeleteItemsd          the per-label items
    EnsureTyped           ``labels`` as a float32 tensor

Conversion to float in [0, 1] and random augmentation happen after the cache, on the training device
(:func:`medclf.engine.device.prepare_batch`, :mod:`medclf.data.augment`). :class:`SkipUnreadable` wraps the chain
so that an unreadable image becomes an error marker instead of an exception in the middle of an epoch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.transforms import (
    Compose,
    ConcatItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImage,
    MapTransform,
    ScaleIntensityd,
    Transform,
)

from medclf.data.dicom import read_dicom
from medclf.data.read_errors import plain_error

log = logging.getLogger(__name__)


PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = PIL_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
# ITU-R BT.601 luma, the weights PIL's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)


def _pil_to_array_mode(img: Any) -> Any:
    """Palette and exotic PIL modes to RGB(A)/L, so the array holds intensities, not palette indices."""
    if img.mode == "P":
        return img.convert("RGBA")
    if img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    return img


def is_dicom_file(path: str | Path) -> bool:
    """True when the file carries the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


class ReadImaged(MapTransform):
    """Load an image with MONAI's ``LoadImage``, choosing the reader by file type.

    PNG/JPEG/BMP/TIFF use PIL (rows first, as displayed), NIfTI uses nibabel and DICOM uses pydicom
    (a file with another or no suffix is read as DICOM when it has the DICOM magic). Grayscale DICOMs go
    through the modality LUT and the first VOI LUT / window (:func:`medclf.data.dicom.read_dicom`);
    MONOCHROME1 DICOMs (bright = low value) are inverted so that bone is bright in every image. Adds
    ``<key>_bits``: 8 for 8-bit sources, 16 otherwise, so that the cache keeps the source's precision.
    """

    def __init__(self, keys: str = "image") -> None:
        super().__init__(keys)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optional codec plugins announce themselves on creation
            self._loader = LoadImage(image_only=True, dtype=None)
            self._pil = PILReader(converter=_pil_to_array_mode, reverse_indexing=False)
            self._nifti = NibabelReader()
            # Unpruned metadata keeps PhotometricInterpretation (0028,0004) for MONOCHROME1 inversion.
            self._dicom = PydicomReader(swap_ij=False, prune_metadata=False)

    def _reader(self, path: str) -> Any:
        name = path.lower()
        if name.endswith(PIL_SUFFIXES):
            return self._pil
        if name.endswith(NIFTI_SUFFIXES):
            return self._nifti
        if name.endswith(DICOM_SUFFIXES) or is_dicom_file(path):
            return self._dicom
        return self._pil  # PIL recognises formats by content

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            reader = self._reader(path)
            if reader is self._dicom:  # grayscale DICOMs: modality LUT, window, MONOCHROME1 (medclf.data.dicom)
                read = read_dicom(path)
                if read is not None:
                    d[key], d[f"{key}_bits"] = read
                    continue
            img = self._loader(path, reader=reader)
            d[f"{key}_bits"] = 8 if img.dtype in (torch.uint8, torch.bool) else 16
            pixels = img.float()  # resizing is done in float anyway; uint16 lacks some torch kernels
            if _photometric(img) == "MONOCHROME1":  # low values are bright: invert within the value range
                pixels = pixels.max() + pixels.min() - pixels
            d[key] = pixels
        return d


def _photometric(img: Any) -> str:
    """A DICOM image's PhotometricInterpretation from MONAI metadata ('' for other formats)."""
    meta = getattr(img, "meta", {})
    entry = meta.get("00280004") or meta.get("PhotometricInterpretation")
    if isinstance(entry, dict):
        entry = (entry.get("Value") or [""])[0]
    return str(entry or "").strip().upper()


class ToGrayscaled(MapTransform):
    """Make a channel-first image single-channel and 2-D.

    One channel is kept as is; two channels are gray + alpha (alpha dropped); three or four are RGB(A),
    turned into luma with the BT.601 weights. A trailing singleton spatial axis (a one-slice NIfTI or
    DICOM) is removed.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            while img.ndim > 3 and img.shape[-1] == 1:
                img = img[..., 0]
            if img.ndim != 3:
                raise ValueError(f"expected a 2-D image, got an array of shape {tuple(img.shape)}")
            channels = img.shape[0]
            if channels == 2:
                img = img[:1]
            elif channels in (3, 4):
                weights = torch.tensor(_LUMA, dtype=torch.float32).view(3, 1, 1)
                img = (img[:3].float() * weights).sum(dim=0, keepdim=True)
            elif channels != 1:
                raise ValueError(f"expected 1 to 4 channels, got {channels}")
            d[key] = img
        return d


class AreaResized(MapTransform):
    """Resize a (1, H, W) image to (1, S, S) by area interpolation, as MONAI's ``Resized(mode="area")``
    does, on the plain tensor: the same values, without MetaTensor's per-operation bookkeeping, which
    is a noticeable share of the cache fill on large radiographs."""

    def __init__(self, keys: str, size: int) -> None:
        super().__init__(keys)
        self.size = size

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            plain = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
            d[key] = F.interpolate(plain.float()[None], size=(self.size, self.size), mode="area")[0]
        return d


class CentreCropd(MapTransform):
    """Crop a (1, H, W) image to the centred square of side min(H, W), as torchxrayvision's ``XRayCenterCrop``."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            height, width = img.shape[-2:]
            side = min(height, width)
            top, left = height // 2 - side // 2, width // 2 - side // 2
            d[key] = img[..., top : top + side, left : left + side]
        return d


class CastToCompactd(MapTransform):
    """Round to uint8 (8-bit sources) or uint16 and drop MONAI metadata to keep the cache small."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            bits = d.pop(f"{key}_bits")
            img = torch.as_tensor(d[key]).float()
            img = torch.nan_to_num(img, nan=0.0).round_()
            dtype = torch.uint8 if bits == 8 else torch.uint16
            d[key] = img.clamp_(0, 255 if bits == 8 else 65535).to(dtype).as_subclass(torch.Tensor)
        return d


class ScaleToBitRanged(MapTransform):
    """Per-image min/max scaling (``ScaleIntensityd``) to the range of the cache type.

    A constant image becomes all zeros rather than NaN.
    """

    def __init__(self, keys: str = "image") -> None:
        super().__init__(keys)
        self._scale = {
            8: ScaleIntensityd(keys, minv=0.0, maxv=255.0),
            16: ScaleIntensityd(keys, minv=0.0, maxv=65535.0),
        }

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        bits = d[f"{self.keys[0]}_bits"]
        return self._scale[bits](d)


class SkipUnreadable(Transform):
    """Run a transform; if it fails, return an error marker naming the image instead of raising.

    The marker (``{"error", "path", "row", "index"}``) is cached like a sample, counted and reported by
    the data module, and dropped by :func:`medclf.data.loaders.collate_samples`. A long run is never killed in
    its tenth hour by one corrupt file.
    """

    def __init__(self, transform: Transform) -> None:
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        try:
            return self.transform(data)
        except Exception as e:  # any decoder, any format: all mean "this image is unusable"
            return {
                "error": plain_error(str(data["image"]), e),
                "path": str(data["image"]),
                "row": data.get("row", -1),
                "index": data.get("index", -1),
            }


def preprocessing(image_size: int, labels: Sequence[str] = (), crop: bool = False) -> Compose:
    """The deterministic, cacheable chain from a manifest record to a compact sample.

    Args:
        image_size: Output side length in pixels.
        labels: Label keys to join into ``labels``; empty for unlabeled inference.
        crop: Centre-crop the long side to a square before resizing (the weights' input convention).

    Returns:
        A Compose that maps ``{"image": path, "row", "index", <label>: (1,) array...}`` to
        ``{"image": (1, S, S) uint8/uint16 tensor, "labels": (L,) float32, "path", "row", "index"}``.
    """
    steps: list[Transform] = [
        _KeepPathd(),
        ReadImaged("image"),
        EnsureChannelFirstd("image"),
        ToGrayscaled("image"),
        *([CentreCropd("image")] if crop else []),
        AreaResized("image", image_size),
        ScaleToBitRanged("image"),
        CastToCompactd("image"),
    ]
    if labels:
        steps += [
            ConcatItemsd(list(labels), name="labels", dim=0),
            DeleteItemsd(list(labels)),
            EnsureTyped("labels", data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    return Compose(steps)


class _KeepPathd(Transform):
    """Copy the image path to ``path`` before ``image`` is replaced by pixels."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d["path"] = str(d["image"])
        return d


def load_image(path: str | Path, image_size: int, crop: bool = False) -> torch.Tensor:
    """One image through :func:`preprocessing`, as a float (1, S, S) tensor in [0, 1].

    Raises the underlying error for unreadable files (used by predict/explain on single images).
    """
    sample = preprocessing(image_size, crop=crop)({"image": str(path), "row": -1, "index": 0})
    return to_unit_range(sample["image"])


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8/uint16 cache tensors to float32 in [0, 1] (a float input is returned as float32)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if images.dtype == torch.uint16:
        return images.float().div_(65535.0)
    return images.float()


def as_uint16(images: torch.Tensor) -> torch.Tensor:
    """Widen a uint8 image to uint16 exactly (255 -> 65535) so that it can share a batch."""
    if images.dtype == torch.uint16:
        return images
    return (images.to(torch.int32) * 257).to(torch.uint16)


def is_image_file(path: Path) -> bool:
    """Whether a file looks like an image medclf can read (by suffix, or DICOM magic)."""
    name = path.name.lower()
    return name.endswith(IMAGE_SUFFIXES) or (path.is_file() and is_dicom_file(path))


__all__ = [
    "IMAGE_SUFFIXES",
    "CastToCompactd",
    "ReadImaged",
    "ScaleToBitRanged",
    "SkipUnreadable",
    "ToGrayscaled",
    "as_uint16",
    "is_image_file",
    "load_image",
    "preprocessing",
    "to_unit_range",
]
