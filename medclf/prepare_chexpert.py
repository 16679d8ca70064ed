"""``python -m medclf.prepare_chexpert``: a medclf manifest from the official label files of CheXpert.

An alias of ``python -m medclf.prepare chexpert`` (``medclf-prepare chexpert``), kept for existing scripts.

Example::

    python -m medclf.prepare_chexpert --csv train.csv --valid-csv valid.csv --root DIR --out data/chexpert.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.prepare import run_data_set

PROG = "python -m medclf.prepare_chexpert"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medclf-prepare chexpert`` under this name; returns the exit status (0 ok, 2 bad input, 1 environment
    failure such as a full disk)."""
    return run_data_set("chexpert", argv, PROG)


if __name__ == "__main__":
    raise SystemExit(main())
