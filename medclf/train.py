"""``python -m medclf.train``: train and validate a classifier from a CSV manifest.

Example::

    python -m medclf.train --csv data/dataset.csv --out runs/exp1 --epochs 20
    python -m medclf.train --resume runs/exp1            # continue after a crash or Ctrl-C
"""

from __future__ import annotations

import logging
import signal
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medclf.cli import parse_flags, run_command, settings_from_flags, setup_logging
from medclf.config import TrainConfig

log = logging.getLogger("medclf.train")
PROG = "python -m medclf.train"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure, 128+N signal N)."""
    setup_logging()
    given = parse_flags(TrainConfig, argv, PROG, __doc__.split("\n\n")[0])

    def body() -> int:
        # torch and MONAI load only now, after the flags: --help and --version answer at once.
        from medclf.model.checkpoint import load_checkpoint, resolve_checkpoint_path
        from medclf.workflows.train import train

        base: dict[str, Any] = {}
        if given.get("resume"):
            # A resumed run keeps its saved settings; flags given now (e.g. --epochs) override them.
            saved = load_checkpoint(given["resume"])
            base = {**saved.get("config", {}), "out": str(resolve_checkpoint_path(given["resume"]).parent)}
        config = settings_from_flags(TrainConfig, [base, given], PROG)
        result = train(config)
        if result.interrupted_by:
            return 128 + int(signal.Signals[result.interrupted_by])
        best = "n/a" if result.best_auroc is None else f"{result.best_auroc:.4f}"
        if result.selected_by == "val_loss":
            best += " (undefined on this VALIDATION: best.pt is the epoch with the lowest val_loss)"
        log.info(
            "done: best val macro AUROC %s at epoch %d; checkpoints %s and %s\n"
            "TensorBoard logs: tensorboard --logdir %s",
            best, result.best_epoch, result.best_checkpoint, Path(result.last_checkpoint).name, result.run_dir,
        )  # fmt: skip
        return 0

    return run_command(body)


class _CallableModule(types.ModuleType):
    """Importing this module rebinds the attribute ``medclf.train`` (the library function
    ``from medclf import train``) to the module; making the module callable keeps ``medclf.train(...)``
    working either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from medclf.workflows.train import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
