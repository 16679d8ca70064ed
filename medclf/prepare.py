"""``python -m medclf.prepare``: a medclf manifest from the official label files of a public data set.

Example::

    python -m medclf.prepare nih --data-entry Data_Entry_2017_v2020.csv.gz --images DIR --out data/nih.csv
    python -m medclf.prepare chexpert --help
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NamedTuple

from medclf import __version__

PROG = "python -m medclf.prepare"


class DataSet(NamedTuple):
    """A data set of ``medclf-prepare NAME``, by names so that nothing heavy loads before the flags parse."""

    title: str  #: what its ``--help`` says it reads the official label files of
    settings: str  #: its settings dataclass in :mod:`medclf.config`
    workflow: str  #: its function in :mod:`medclf.workflows.prepare`


#: The data sets of ``medclf-prepare NAME``: registering one is one line here.
DATA_SETS: dict[str, DataSet] = {
    "nih": DataSet("NIH ChestX-ray14", "PrepareNihConfig", "prepare_nih"),
    "chexpert": DataSet("CheXpert", "PrepareChexpertConfig", "prepare_chexpert"),
    "mimic-cxr": DataSet("MIMIC-CXR", "PrepareMimicCxrConfig", "prepare_mimic_cxr"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medclf-prepare NAME [FLAGS]``; returns the exit status (0 ok, 2 bad input, 1 environment failure
    such as a full disk). ``--help`` lists the data sets, ``NAME --help`` the flags of one."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in DATA_SETS:
        _parser().parse_args(args[:1])  # --help, --version, or a usage error that lists the data sets
        return 2
    return run_data_set(args[0], args[1:], f"{PROG} {args[0]}")


def run_data_set(name: str, argv: Sequence[str] | None, prog: str) -> int:
    """Parse ``argv`` into the settings of data set ``name`` and run its preparation, as the command ``prog``.

    ``medclf-prepare NAME`` and the older ``medclf-prepare-NAME`` aliases (with their own ``prog``) both
    end here; the workflow is imported only after the flags parse.
    """
    from medclf import config
    from medclf.cli import run_settings_command

    data_set = DATA_SETS[name]

    def body(settings: object) -> object:
        from medclf.workflows import prepare

        return getattr(prepare, data_set.workflow)(settings)

    description = f"``{prog}``: a medclf manifest from the official label files of {data_set.title}."
    return run_settings_command(getattr(config, data_set.settings), argv, prog, description, body)


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<10} {data_set.title}" for name, data_set in DATA_SETS.items())
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] NAME [FLAGS ...]",
        description=f"{PROG} (medclf-prepare): a medclf manifest from the official label files of a public data set.",
        epilog=f"data sets:\n{listing}\n\nFLAGS are those of the data set: '{PROG} NAME --help' lists them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medclf {__version__}")
    parser.add_argument("name", metavar="NAME", choices=list(DATA_SETS), help="the data set: " + ", ".join(DATA_SETS))
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
