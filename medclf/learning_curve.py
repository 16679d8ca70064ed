"""``python -m medclf.learning_curve``: macro and per-label AUROC against the number of labelled images.

Example::

    python -m medclf.learning_curve --csv data/dataset.csv --fractions 0.1,0.25,0.5,1 --repeats 3 --out runs/lc
    python -m medclf.learning_curve --csv data/dataset.csv --fractions 0.25,0.5,1 --folds 5 --out runs/lc-cv

Takes every flag of ``python -m medclf.train``. Each point trains on a seeded, patient-wise, label-stratified
share of TRAIN (by cross-validation with --folds); runs/lc gets learning_curve.csv and learning_curve.png.
Running the same command again continues an interrupted curve.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from medclf.cli import parse_flags, run_command, settings_from_flags, setup_logging
from medclf.config import LearningCurveConfig

PROG = "python -m medclf.learning_curve"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure, 128+N signal N)."""
    setup_logging()
    given = parse_flags(LearningCurveConfig, argv, PROG, __doc__.split("\n\n")[0])

    def body() -> int:
        from medclf.workflows.learning_curve import learning_curve  # torch loads only now

        result = learning_curve(settings_from_flags(LearningCurveConfig, [given], PROG))
        return 128 + int(signal.Signals[result.interrupted_by]) if result.interrupted_by else 0

    return run_command(body)


if __name__ == "__main__":
    raise SystemExit(main())
