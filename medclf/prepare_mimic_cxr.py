"""``python -m medclf.prepare_mimic_cxr``: a medclf manifest from the official label files of MIMIC-CXR.

An alias of ``python -m medclf.prepare mimic-cxr`` (``medclf-prepare mimic-cxr``), kept for existing scripts.

Example::

    python -m medclf.prepare_mimic_cxr --chexpert-csv mimic-cxr-2.0.0-chexpert.csv \\
        --metadata-csv mimic-cxr-2.0.0-metadata.csv --split-csv mimic-cxr-2.0.0-split.csv \\
        --root DIR --out data/mimic.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.prepare import run_data_set

PROG = "python -m medclf.prepare_mimic_cxr"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medclf-prepare mimic-cxr`` under this name; returns the exit status (0 ok, 2 bad input, 1 environment
    failure such as a full disk)."""
    return run_data_set("mimic-cxr", argv, PROG)


if __name__ == "__main__":
    raise SystemExit(main())
