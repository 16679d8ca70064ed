"""Write a medclf manifest for NIH ChestX-ray14 from its official label file.

    python scripts/prepare_nih.py --data-entry Data_Entry_2017_v2020.csv.gz --images DIR --out data/nih.csv
        [--test-list test_list.txt [--train-val-list train_val_list.txt]] [--views PA,AP]
        [--require-images] [--seed 0] [--split 0.7,0.1,0.2]

Without ``--test-list`` the TRAIN/VALIDATION/TEST split is random and patient-wise (``--split``); with it,
the listed images are TEST and VALIDATION is carved patient-wise out of the rest.
"""

from __future__ import annotations

import argparse
import sys
import time

from medclf.data.nih import positives_table, prepare_nih_manifest, write_nih_manifest
from medclf.errors import ConfigError, ManifestError, MedclfError

PROG = "prepare_nih.py"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns 0 on success and 2 on bad input (with a one-line message on stderr)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data-entry", required=True, help="Data_Entry_2017_v2020.csv or .csv.gz")
    parser.add_argument("--images", required=True, help="folder holding the PNG images")
    parser.add_argument("--out", required=True, help="manifest CSV to write (e.g. data/nih.csv)")
    parser.add_argument("--test-list", help="official test_list.txt: its images become TEST")
    parser.add_argument("--train-val-list", help="official train_val_list.txt (with --test-list)")
    parser.add_argument("--views", help="keep only these view positions, e.g. PA or PA,AP (default: all)")
    parser.add_argument("--require-images", action="store_true", help="drop rows whose image file is missing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient-wise split (default: 0)")
    parser.add_argument(
        "--split", default="0.7,0.1,0.2", help="TRAIN,VALIDATION,TEST fractions of the images (default: 0.7,0.1,0.2)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        fractions = _parse_fractions(args.split)
        frame, stats = prepare_nih_manifest(
            args.data_entry,
            args.images,
            test_list=args.test_list,
            train_val_list=args.train_val_list,
            views=args.views.split(",") if args.views is not None else None,
            require_images=args.require_images,
            split_fractions=fractions,
            seed=args.seed,
        )
        out = write_nih_manifest(frame, args.out)
    except MedclfError as e:
        sys.stderr.write(f"{PROG}: error: {_one_line(e)}\n")
        return 2
    seconds = time.perf_counter() - start
    print(positives_table(stats))
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "none"
    print(f"kept {stats['n_output']} of {stats['n_input']} image(s); dropped: {dropped}")
    print(f"wrote {out} in {seconds:.2f} s")
    return 0


def _parse_fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--split must be three numbers such as 0.7,0.1,0.2, got {text!r}") from None


def _one_line(error: MedclfError) -> str:
    if isinstance(error, ManifestError):
        shown = "; ".join(error.problems[:3])
        more = len(error.problems) - 3
        return f"{error.path}: {shown}" + (f" (and {more} more problem(s))" if more > 0 else "")
    return " ".join(str(error).split())


if __name__ == "__main__":
    from medclf.cli import setup_logging

    setup_logging()
    raise SystemExit(main())
