"""Settings of ``medclf-import-weights SOURCE FILE`` (re-exported by :mod:`medclf.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from medclf.config.fields import opt


@dataclass
class ImportWeightsConfig:
    """Settings of ``medclf-import-weights torchxrayvision FILE``."""

    file: str = opt("", "the weights file as torchxrayvision downloads it (~/.torchxrayvision/...)", required=True)
    name: str = opt("densenet121-res224-all", "torchxrayvision's name for these weights")
    out: str = opt(
        "", "medclf weights file to write (default: medclf's cache, where --pretrained torchxrayvision:NAME looks)"
    )
    sha256: str = opt("", "the file's expected SHA-256, when you have a trusted value; a mismatch stops")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
