"""``python -m medclf.export``: a checkpoint as TorchScript, ONNX, a MONAI bundle and a Triton entry.

Example::

    python -m medclf.export --checkpoint runs/exp1/best.pt --out exports/exp1

After writing, the same images go through medclf, TorchScript, ONNX Runtime and the bundle; the largest
difference in probabilities is printed for each, and the export fails when one exceeds --tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import ExportConfig

PROG = "python -m medclf.export"
_WORKFLOW = lazy("medclf.workflows.export", "export_checkpoint")  # loaded after the flags are parsed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    return run_settings_command(ExportConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
