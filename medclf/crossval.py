"""``python -m medclf.crossval``: k-fold cross-validation, patient-wise over TRAIN and VALIDATION, with the
pooled out-of-fold evaluation and the fold ensemble on TEST.

Example::

    python -m medclf.crossval --csv data/dataset.csv --folds 5 --out runs/cv --epochs 10
    python -m medclf.crossval --resume runs/cv           # continue at the fold and step where it stopped
    python -m medclf.validate --checkpoint runs/cv --csv data/dataset.csv   # the fold ensemble on TEST

Takes every flag of ``python -m medclf.train``; fold k trains into runs/cv/fold_k. The study folder works as
--checkpoint for validate, predict and export (the ensemble of the folds) and explain (fold 1).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

from medclf.cli import parse_flags, run_command, settings_from_flags, setup_logging
from medclf.config import CrossvalConfig

log = logging.getLogger("medclf.crossval")
PROG = "python -m medclf.crossval"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure, 128+N signal N)."""
    setup_logging()
    given = parse_flags(CrossvalConfig, argv, PROG, __doc__.split("\n\n")[0])
    return run_command(lambda: _run(given))


def _run(given: dict[str, Any]) -> int:
    from medclf.workflows.crossval import crossval  # torch and MONAI load only now: --help answers at once

    # A resumed study keeps its saved settings; flags given now (e.g. --epochs) override them.
    result = crossval(settings_from_flags(CrossvalConfig, [_saved_settings(given.get("resume", "")), given], PROG))
    if result.interrupted_by:
        return 128 + int(signal.Signals[result.interrupted_by])
    oof = result.oof or {}
    log.info("done: out-of-fold macro AUROC %s %s; study folder %s", _num(oof.get("macro_auroc")),
             _interval(oof, "patients"), result.study_dir)  # fmt: skip
    if result.test:
        log.info("fold ensemble on TEST: macro AUROC %s %s (%s)", _num(result.test.get("macro_auroc")),
                 _interval(result.test, "images"), result.test.get("out"))  # fmt: skip
    return 0


def _saved_settings(resume: str) -> dict[str, Any]:
    """The settings saved in the study being resumed (none when not resuming)."""
    from medclf.model.ensemble import is_study, read_study

    if not resume or not is_study(resume):
        return {}  # the workflow says what is wrong with the folder
    return {**read_study(resume).get("settings", {}), "resume": resume}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _interval(values: dict[str, Any], unit: str) -> str:
    low, high = values.get("ci_low"), values.get("ci_high")
    return "" if low is None or high is None else f"[95% CI {low:.4f}, {high:.4f}, {unit} resampled]"


if __name__ == "__main__":
    raise SystemExit(main())
