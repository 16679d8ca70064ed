"""``python -m medclf.prepare_nih``: a medclf manifest from the official label files of NIH ChestX-ray14.

Example::

    python -m medclf.prepare_nih --data-entry Data_Entry_2017_v2020.csv.gz --images DIR --out data/nih.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import run_settings_command
from medclf.config import PrepareNihConfig

PROG = "python -m medclf.prepare_nih"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    from medclf.workflows.prepare import prepare_nih

    return run_settings_command(PrepareNihConfig, argv, PROG, __doc__.split("\n\n")[0], prepare_nih)


if __name__ == "__main__":
    raise SystemExit(main())
