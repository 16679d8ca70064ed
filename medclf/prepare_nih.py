"""``python -m medclf.prepare_nih``: a medclf manifest from the official label files of NIH ChestX-ray14.

An alias of ``python -m medclf.prepare nih`` (``medclf-prepare nih``), kept for existing scripts.

Example::

    python -m medclf.prepare_nih --data-entry Data_Entry_2017_v2020.csv.gz --images DIR --out data/nih.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.prepare import run_data_set

PROG = "python -m medclf.prepare_nih"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medclf-prepare nih`` under this name; returns the exit status (0 ok, 2 bad input, 1 environment
    failure such as a full disk)."""
    return run_data_set("nih", argv, PROG)


if __name__ == "__main__":
    raise SystemExit(main())
