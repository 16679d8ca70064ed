"""``python -m medclf.import_weights``: weights published elsewhere as a medclf weights file for ``--pretrained``.

Example::

    medclf-import-weights torchxrayvision ~/.torchxrayvision/nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-\
d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt
    python -m medclf.train --csv data/nih.csv --pretrained torchxrayvision:densenet121-res224-all
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medclf import __version__
from medclf.cli import lazy, run_settings_command
from medclf.config import ImportWeightsConfig

PROG = "python -m medclf.import_weights"
#: The sources of ``medclf-import-weights SOURCE FILE``, with what their files are.
SOURCES: dict[str, str] = {
    "torchxrayvision": "torchxrayvision's chest X-ray DenseNet121 weights (needs the torchxrayvision package)",
}
# Loaded after the flags are parsed, so that --help loads no torch.
_CONVERT = lazy("medclf.model.xrv_import", "convert_torchxrayvision")
_CACHED = lazy("medclf.model.xrv_import", "cached_weights_path")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medclf-import-weights SOURCE FILE [FLAGS]``; returns the exit status (0 ok, 2 bad input, 1
    environment failure such as a full disk)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SOURCES:
        _sources_parser().parse_args(args[:1])  # --help, --version, or a usage error naming the sources
        return 2
    source, flags = args[0], args[1:]
    if flags and not flags[0].startswith("-"):
        flags = ["--file", flags[0], *flags[1:]]  # FILE given as a positional argument
    description = (
        f"``{PROG} {source} FILE``: {SOURCES[source]} as a medclf weights file. Loading torchxrayvision's file "
        "unpickles it, which trusts it; the file written holds tensors and plain values only."
    )
    return run_settings_command(ImportWeightsConfig, flags, f"{PROG} {source}", description, _import)


def _import(settings: ImportWeightsConfig) -> None:
    out = settings.out or str(_CACHED(settings.name))
    _CONVERT(settings.file, out, settings.name, settings.sha256)


def _sources_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] SOURCE FILE [FLAGS ...]",
        description=f"{PROG} (medclf-import-weights): weights published elsewhere as a medclf weights file.",
        epilog="sources:\n" + "\n".join(f"  {k:<16} {v}" for k, v in SOURCES.items()) + f"\n\n'{PROG} SOURCE --help' "
        "lists the flags of one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medclf {__version__}")
    parser.add_argument("source", metavar="SOURCE", choices=list(SOURCES), help="where the weights come from")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
