"""The manifest preparations of ``medclf-prepare``: official label files of NIH ChestX-ray14, CheXpert and
MIMIC-CXR -> a medclf manifest with a patient-wise split (checked for leakage), and a summary on the console.

Each function turns its settings into the plain arguments of its :mod:`medclf.data.prepare` module and
writes the manifest through :func:`medclf.reporting.manifest_csv.write_manifest`; :mod:`medclf.prepare`
registers it in ``DATA_SETS``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from medclf.config import PrepareChexpertConfig, PrepareMimicCxrConfig, PrepareNihConfig
from medclf.data.prepare.chexpert import prepare_chexpert_manifest
from medclf.data.prepare.common import split_table
from medclf.data.prepare.mimic_cxr import prepare_mimic_cxr_manifest
from medclf.data.prepare.nih import positives_table, prepare_nih_manifest
from medclf.errors import ConfigError
from medclf.reporting.manifest_csv import write_manifest

log = logging.getLogger(__name__)


def prepare_nih(config: PrepareNihConfig) -> Path:
    """Write the NIH ChestX-ray14 manifest of ``config``; returns its path."""
    started = time.perf_counter()
    frame, stats = prepare_nih_manifest(
        config.data_entry,
        config.images,
        test_list=config.test_list or None,
        train_val_list=config.train_val_list or None,
        views=_views(config.views),
        require_images=config.require_images,
        split_fractions=_fractions(config.split),
        seed=config.seed,
    )
    out = write_manifest(frame, config.out)
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "none"
    log.info("%s\nkept %d of %d image(s); dropped: %s", positives_table(stats), stats["n_output"],
             stats["n_input"], dropped)  # fmt: skip
    log.info("wrote %s in %.2f s", out, time.perf_counter() - started)
    return out


def prepare_chexpert(config: PrepareChexpertConfig) -> Path:
    """Write the CheXpert manifest of ``config``; returns its path."""
    frame = prepare_chexpert_manifest(
        config.csv, config.root, valid_csv=config.valid_csv or None, views=_views(config.views), seed=config.seed
    )
    out = write_manifest(frame, config.out)
    log.info("%s\nwrote %s", split_table(frame), out)
    return out


def prepare_mimic_cxr(config: PrepareMimicCxrConfig) -> Path:
    """Write the MIMIC-CXR manifest of ``config``; returns its path."""
    frame = prepare_mimic_cxr_manifest(
        config.chexpert_csv, config.metadata_csv, config.split_csv, config.root, views=_views(config.views),
        suffix=config.suffix,
    )  # fmt: skip
    out = write_manifest(frame, config.out)
    log.info("%s\nwrote %s", split_table(frame), out)
    return out


def _views(text: str) -> list[str] | None:
    return text.split(",") if text else None


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--split must be three numbers such as 0.7,0.1,0.2, got {text!r}") from None
