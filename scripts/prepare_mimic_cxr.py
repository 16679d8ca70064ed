"""Write a medclf manifest for MIMIC-CXR(-JPG) from its official CSV files.

    python scripts/prepare_mimic_cxr.py --chexpert-csv mimic-cxr-2.0.0-chexpert.csv
        --metadata-csv mimic-cxr-2.0.0-metadata.csv --split-csv mimic-cxr-2.0.0-split.csv
        --root DIR --out data/mimic.csv [--views PA,AP] [--suffix .jpg]

One row per image with its study's labels (1, 0, -1 or blank) and the official split.
"""

from __future__ import annotations

import argparse
import sys

from medclf.data.cxr_labels import error_line, split_table
from medclf.data.mimic_cxr import SUFFIXES, prepare_mimic_cxr_manifest, write_mimic_cxr_manifest
from medclf.errors import MedclfError

PROG = "prepare_mimic_cxr.py"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns 0 on success and 2 on bad input (with a one-line message on stderr)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument("--chexpert-csv", required=True, help="mimic-cxr-2.0.0-chexpert.csv (labels per study)")
    parser.add_argument("--metadata-csv", required=True, help="mimic-cxr-2.0.0-metadata.csv (one row per image)")
    parser.add_argument("--split-csv", required=True, help="mimic-cxr-2.0.0-split.csv (the official split)")
    parser.add_argument("--root", required=True, help="data set folder holding files/")
    parser.add_argument("--out", required=True, help="manifest CSV to write (e.g. data/mimic.csv)")
    parser.add_argument("--views", help="keep only these ViewPosition values, e.g. PA,AP (default: all)")
    parser.add_argument("--suffix", default=".jpg", choices=SUFFIXES, help="image file suffix (default: .jpg)")
    args = parser.parse_args(argv)
    try:
        frame = prepare_mimic_cxr_manifest(
            args.chexpert_csv,
            args.metadata_csv,
            args.split_csv,
            args.root,
            views=args.views.split(",") if args.views is not None else None,
            suffix=args.suffix,
        )
        out = write_mimic_cxr_manifest(frame, args.out)
    except MedclfError as e:
        sys.stderr.write(f"{PROG}: error: {error_line(e)}\n")
        return 2
    print(split_table(frame))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from medclf.cli import setup_logging

    setup_logging()
    raise SystemExit(main())
