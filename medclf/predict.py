"""``python -m medclf.predict``: per-image probabilities and calls for unlabeled images.

Example::

    python -m medclf.predict --checkpoint runs/exp1/best.pt --images /data/new_xrays --out preds/
    python -m medclf.predict --checkpoint runs/exp1/best.pt --csv worklist.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import PredictConfig

PROG = "python -m medclf.predict"
_WORKFLOW = lazy("medclf.workflows.predict", "predict_images")  # loaded after the flags are parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(PredictConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
