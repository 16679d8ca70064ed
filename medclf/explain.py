"""``python -m medclf.explain``: Grad-CAM overlays of one image for the labels of a checkpoint.

Example::

    python -m medclf.explain --checkpoint runs/exp1/best.pt --image xray.png --label cardiomegaly
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import ExplainConfig

log = logging.getLogger("medclf.explain")  # not __name__: that is "__main__" under python -m
PROG = "python -m medclf.explain"


def _run(config: ExplainConfig) -> None:
    result = lazy("medclf.workflows.explain", "explain_image")(config)
    for label, path in result["files"].items():
        log.info("%s  p=%.4f  %s", label, result["probabilities"][label], path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(ExplainConfig, argv, PROG, __doc__.split("\n\n")[0], _run)


if __name__ == "__main__":
    raise SystemExit(main())
