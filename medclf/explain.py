"""``python -m medclf.explain``: Grad-CAM overlays of one image for the labels of a checkpoint.

Example::

    python -m medclf.explain --checkpoint runs/exp1/best.pt --image xray.png --label cardiomegaly
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from medclf.cli import parse_flags, run_command, settings_from_flags, setup_logging
from medclf.config import ExplainConfig
from medclf.gradcam import explain_image

log = logging.getLogger("medclf.explain")  # not __name__: that is "__main__" under python -m
PROG = "python -m medclf.explain"


def _run(config: ExplainConfig) -> int:
    result = explain_image(config)
    for label, path in result["files"].items():
        log.info("%s  p=%.4f  %s", label, result["probabilities"][label], path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input)."""
    setup_logging()
    given = parse_flags(ExplainConfig, argv, PROG, __doc__.split("\n\n")[0])
    return run_command(lambda: _run(settings_from_flags(ExplainConfig, [given], PROG)))


if __name__ == "__main__":
    raise SystemExit(main())
