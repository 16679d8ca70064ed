"""Settings of the manifest preparations, ``medclf-prepare NAME`` (re-exported by :mod:`medclf.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from medclf.config.fields import opt


@dataclass
class PrepareNihConfig:
    """Settings of ``python -m medclf.prepare_nih``."""

    data_entry: str = opt("", "the official Data_Entry_2017_v2020.csv (or .csv.gz)", required=True)
    images: str = opt("", "folder holding the PNG images", required=True)
    out: str = opt("", "manifest CSV to write (e.g. data/nih.csv)", required=True)
    test_list: str = opt("", "the official test_list.txt: its images become TEST")
    train_val_list: str = opt("", "the official train_val_list.txt (with --test-list)")
    views: str = opt("", "keep only these view positions, e.g. PA or PA,AP (default: all)")
    require_images: bool = opt(False, "drop rows whose image file is missing")
    split: str = opt("0.7,0.1,0.2", "TRAIN,VALIDATION,TEST fractions of the images (a random patient-wise split)")
    seed: int = opt(0, "seed of the patient-wise split", bounds=">= 0")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")


@dataclass
class PrepareChexpertConfig:
    """Settings of ``python -m medclf.prepare_chexpert``."""

    csv: str = opt("", "the official train.csv", required=True)
    root: str = opt("", "folder the Path column is relative to", required=True)
    out: str = opt("", "manifest CSV to write (e.g. data/chexpert.csv)", required=True)
    valid_csv: str = opt("", "the official valid.csv: its rows become TEST")
    views: str = opt("", "keep only frontal images of these AP/PA views, e.g. PA,AP (default: all)")
    seed: int = opt(0, "seed of the patient-wise split", bounds=">= 0")
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")


@dataclass
class PrepareMimicCxrConfig:
    """Settings of ``python -m medclf.prepare_mimic_cxr``."""

    chexpert_csv: str = opt("", "mimic-cxr-2.0.0-chexpert.csv (labels per study)", required=True)
    metadata_csv: str = opt("", "mimic-cxr-2.0.0-metadata.csv (one row per image)", required=True)
    split_csv: str = opt("", "mimic-cxr-2.0.0-split.csv (the official split)", required=True)
    root: str = opt("", "data set folder holding files/", required=True)
    out: str = opt("", "manifest CSV to write (e.g. data/mimic.csv)", required=True)
    views: str = opt("", "keep only these ViewPosition values, e.g. PA,AP (default: all)")
    suffix: str = opt(".jpg", "image file suffix", (".jpg", ".dcm"))
    config: str = opt("", "YAML or JSON file whose keys set defaults for these flags")
