"""``python -m medclf.prepare_nih``: a medclf manifest from the official label files of NIH ChestX-ray14.

Example::

    python -m medclf.prepare_nih --data-entry Data_Entry_2017_v2020.csv.gz --images DIR --out data/nih.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import PrepareNihConfig

PROG = "python -m medclf.prepare_nih"
_WORKFLOW = lazy("medclf.workflows.prepare", "prepare_nih")  # loaded after the flags are parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(PrepareNihConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
