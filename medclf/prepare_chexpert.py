"""``python -m medclf.prepare_chexpert``: a medclf manifest from the official label files of CheXpert.

Example::

    python -m medclf.prepare_chexpert --csv train.csv --valid-csv valid.csv --root DIR --out data/chexpert.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import run_settings_command
from medclf.config import PrepareChexpertConfig

PROG = "python -m medclf.prepare_chexpert"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    from medclf.workflows.prepare import prepare_chexpert

    return run_settings_command(PrepareChexpertConfig, argv, PROG, __doc__.split("\n\n")[0], prepare_chexpert)


if __name__ == "__main__":
    raise SystemExit(main())
