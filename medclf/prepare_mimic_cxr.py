"""``python -m medclf.prepare_mimic_cxr``: a medclf manifest from the official label files of MIMIC-CXR.

Example::

    python -m medclf.prepare_mimic_cxr --chexpert-csv mimic-cxr-2.0.0-chexpert.csv \\
        --metadata-csv mimic-cxr-2.0.0-metadata.csv --split-csv mimic-cxr-2.0.0-split.csv \\
        --root DIR --out data/mimic.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import PrepareMimicCxrConfig

PROG = "python -m medclf.prepare_mimic_cxr"
_WORKFLOW = lazy("medclf.workflows.prepare", "prepare_mimic_cxr")  # loaded after the flags are parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(PrepareMimicCxrConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
