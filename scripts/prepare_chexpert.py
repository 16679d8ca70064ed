"""Write a medclf manifest for CheXpert from its official label files.

    python scripts/prepare_chexpert.py --csv train.csv [--valid-csv valid.csv] --root DIR --out data/chexpert.csv
        [--views PA,AP] [--seed 0]

The rows of ``train.csv`` are split patient-wise and at random into TRAIN/VALIDATION (and TEST without
``--valid-csv``); the rows of ``valid.csv`` become TEST. Labels are kept as 1, 0, -1 or blank.
"""

from __future__ import annotations

import argparse
import sys

from medclf.data.chexpert import prepare_chexpert_manifest, write_chexpert_manifest
from medclf.data.cxr_labels import error_line, split_table
from medclf.errors import MedclfError

PROG = "prepare_chexpert.py"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns 0 on success and 2 on bad input (with a one-line message on stderr)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument("--csv", required=True, help="the official train.csv")
    parser.add_argument("--valid-csv", help="the official valid.csv: its rows become TEST")
    parser.add_argument("--root", required=True, help="folder the Path column is relative to")
    parser.add_argument("--out", required=True, help="manifest CSV to write (e.g. data/chexpert.csv)")
    parser.add_argument("--views", help="keep only frontal images of these AP/PA views, e.g. PA,AP (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient-wise split (default: 0)")
    args = parser.parse_args(argv)
    try:
        frame = prepare_chexpert_manifest(
            args.csv,
            args.root,
            valid_csv=args.valid_csv,
            views=args.views.split(",") if args.views is not None else None,
            seed=args.seed,
        )
        out = write_chexpert_manifest(frame, args.out)
    except MedclfError as e:
        sys.stderr.write(f"{PROG}: error: {error_line(e)}\n")
        return 2
    print(f"{split_table(frame)}\nwrote {out}")
    return 0


if __name__ == "__main__":
    from medclf.cli import setup_logging

    setup_logging()
    raise SystemExit(main())
