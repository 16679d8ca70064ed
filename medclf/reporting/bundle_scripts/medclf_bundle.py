"""Preprocessing and inference of a medclf model exported as a MONAI bundle.

It reproduces medclf's preprocessing step by step, so that the bundle's probabilities equal medclf's
(``python -m medclf.export`` measures it): read (PNG/JPEG/BMP/TIFF with PIL; single-frame grayscale DICOM
with pydicom: modality LUT, first VOI LUT / window, MONOCHROME1 inverted); one channel (RGB(A) to BT.601
luma, alpha dropped); area resize to the model's size; per-image min/max to [0, 255] for 8-bit sources
or [0, 65535] otherwise, rounded; divided by 255 or 65535. Needs MONAI's own dependencies only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
_WEIGHTS = (0.299, 0.587, 0.114)


def _has_dicom_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(128)
        return f.read(4) == b"DICM"


def _read_pil(path: Path) -> tuple[torch.Tensor, int]:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode == "P":  # palette indices to intensities
            img = img.convert("RGBA")
        elif img.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGB")
        arr = np.array(img)  # a writable copy
    bits = 8 if arr.dtype in (np.uint8, np.bool_) else 16
    pixels = torch.as_tensor(arr).float()
    return (pixels.movedim(-1, 0) if pixels.ndim == 3 else pixels[None]), bits


def _read_dicom(path: Path) -> tuple[torch.Tensor, int]:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(str(path))
    kind = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or not kind.startswith("MONOCHROME"):
        raise ValueError(f"{path}: only single-frame grayscale DICOM images are supported")
    raw = ds.pixel_array
    arr = raw
    rescaled = "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds
    windowed = bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)
    if rescaled:
        arr = apply_modality_lut(arr, ds)
    if windowed:
        arr = apply_voi_lut(arr, ds, index=0)
    arr = np.asarray(arr, dtype=np.float64)
    if kind == "MONOCHROME1":  # low values are bright
        arr = arr.max() + arr.min() - arr
    bits = 8 if raw.dtype == np.uint8 and not (rescaled or windowed) else 16
    return torch.from_numpy(arr.astype(np.float32))[None], bits


def load_image(path: str | os.PathLike, image_size: int, crop: bool = False) -> torch.Tensor:
    """One image as the model's input: a float32 (1, S, S) tensor in [0, 1] (``crop``: the centred square of
    the long side first, for weights trained so)."""
    path = Path(path)
    dicom = path.suffix.lower() in (".dcm", ".dicom") or _has_dicom_magic(path)
    img, bits = _read_dicom(path) if dicom else _read_pil(path)
    if img.shape[0] == 2:  # gray + alpha
        img = img[:1]
    elif img.shape[0] in (3, 4):
        img = (img[:3].float() * torch.tensor(_WEIGHTS, dtype=torch.float32).view(3, 1, 1)).sum(dim=0, keepdim=True)
    if crop:
        height, width = img.shape[-2:]
        side = min(height, width)
        top, left = height // 2 - side // 2, width // 2 - side // 2
        img = img[..., top : top + side, left : left + side]
    img = F.interpolate(img.float()[None], size=(image_size, image_size), mode="area")[0]
    top = 255.0 if bits == 8 else 65535.0
    low, high = img.min(), img.max()
    img = img * 0.0 if low == high else ((img - low) / (high - low)) * top + 0.0
    img = torch.nan_to_num(img, nan=0.0).round_().clamp_(0, top)
    return img.to(torch.uint8 if bits == 8 else torch.uint16).float().div_(top)


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder``, recursively, sorted (hidden files skipped)."""
    root = Path(folder)
    found = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(p for p in found if p.name.lower().endswith(IMAGE_SUFFIXES) or _has_dicom_magic(p))


class Predictor:
    """Probabilities (``sigmoid(logit / temperature)``) and calls for every image of ``dataset_dir``,
    written to ``output_dir/predictions.csv``, one row per image."""

    def __init__(
        self, network: torch.nn.Module, weights: str, dataset_dir: str, output_dir: str, image_size: int,
        labels: Sequence[str], temperatures: Sequence[float], thresholds: Sequence[float], device: str = "cpu",
        crop: bool = False, intensity: Sequence[float] = (0.0, 1.0),
    ) -> None:  # fmt: skip
        self.network = network.to(device).eval()
        self.network.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
        self.dataset_dir, self.output_dir, self.image_size, self.device = dataset_dir, output_dir, image_size, device
        self.labels, self.thresholds = list(labels), list(thresholds)
        self.temperatures = torch.tensor(list(temperatures), dtype=torch.float32).view(1, -1)
        self.crop, self.intensity = crop, (float(intensity[0]), float(intensity[1]))

    def probabilities(self, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, raw sigmoid probabilities), one row per path."""
        batch = torch.stack([load_image(p, self.image_size, self.crop) for p in paths]).to(self.device)
        low, high = self.intensity
        if (low, high) != (0.0, 1.0):  # the range the weights were trained on (e.g. torchxrayvision's)
            batch = batch * (high - low) + low
        with torch.no_grad():
            logits = self.network(batch).float().cpu()
        return torch.sigmoid(logits / self.temperatures).numpy(), torch.sigmoid(logits).numpy()

    def __call__(self) -> str:
        paths = find_images(self.dataset_dir)
        if not paths:
            raise ValueError(f"no images (PNG, JPEG, BMP, TIFF, DICOM) under {self.dataset_dir}")
        os.makedirs(self.output_dir, exist_ok=True)
        out = os.path.join(self.output_dir, "predictions.csv")
        header = ["image", *(f"prob_{name}" for name in self.labels), *(f"pred_{name}" for name in self.labels)]
        with open(out + ".tmp", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for start in range(0, len(paths), 16):
                chunk = paths[start : start + 16]
                probs, raw = self.probabilities(chunk)
                for path, row, raw_row in zip(chunk, probs, raw, strict=True):
                    calls = [int(p >= t) for p, t in zip(raw_row, self.thresholds, strict=True)]
                    writer.writerow([str(path.relative_to(self.dataset_dir)), *map(repr, row.tolist()), *calls])
        os.replace(out + ".tmp", out)
        return out
