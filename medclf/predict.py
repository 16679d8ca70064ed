"""``python -m medclf.predict``: per-image probabilities and calls for unlabeled images.

Example::

    python -m medclf.predict --checkpoint runs/exp1/best.pt --images /data/new_xrays --out preds/
    python -m medclf.predict --checkpoint runs/exp1/best.pt --csv worklist.csv
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import parse_flags, run_command, settings_from_flags, setup_logging
from medclf.config import PredictConfig
from medclf.prediction import predict_images

PROG = "python -m medclf.predict"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input)."""
    setup_logging()
    given = parse_flags(PredictConfig, argv, PROG, __doc__.split("\n\n")[0])
    return run_command(lambda: (predict_images(settings_from_flags(PredictConfig, [given], PROG)), 0)[1])


if __name__ == "__main__":
    raise SystemExit(main())
