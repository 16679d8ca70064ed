"""Settings of ``python -m medclf.export`` (re-exported by :mod:`medclf.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from medclf.config.fields import check_fields, opt


@dataclass
class ExportConfig:
    """Settings of ``python -m medclf.export``."""

    checkpoint: str = opt("", "checkpoint file (best.pt or last.pt)", required=True)
    out: str = opt("", "export folder to create (refused when it exists and holds something else)", required=True)
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
    csv: str = opt("", "manifest whose VALIDATION images the parity check uses (default: the checkpoint's own)")
    parity_images: int = opt(4, "images run through every format to measure parity (0: no parity check)", bounds=">= 0")
    tolerance: float = opt(1e-4, "largest difference in probabilities the parity check allows", bounds="> 0")
    bundle: bool = opt(True, "write the MONAI bundle (bundle/)")
    triton: bool = opt(True, "write the Triton model repository entry (triton/medclf/)")
    opset: int = opt(17, "ONNX opset version", bounds=">= 13")
    authors: str = opt("", "the bundle's authors (metadata.json)")
    copyright: str = opt("", "the bundle's copyright line (metadata.json)")
    license: str = opt("", "text file copied to bundle/LICENSE (default: a notice that no licence was given)")

    def __post_init__(self) -> None:
        check_fields(self)
