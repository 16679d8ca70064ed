"""``python -m medclf.prepare_chexpert``: a medclf manifest from the official label files of CheXpert.

Example::

    python -m medclf.prepare_chexpert --csv train.csv --valid-csv valid.csv --root DIR --out data/chexpert.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import PrepareChexpertConfig

PROG = "python -m medclf.prepare_chexpert"
_WORKFLOW = lazy("medclf.workflows.prepare", "prepare_chexpert")  # loaded after the flags are parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(PrepareChexpertConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
