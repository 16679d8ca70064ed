"""``python -m medclf.validate``: evaluate a checkpoint on a split of a manifest.

Example::

    python -m medclf.validate --checkpoint runs/exp1/best.pt --csv data/dataset.csv --split TEST
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import ValidateConfig

PROG = "python -m medclf.validate"
_WORKFLOW = lazy("medclf.workflows.validate", "evaluate")  # loaded after the flags are parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(ValidateConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
