"""``python -m medclf.compare A B``: compare two models' validate predictions on the same images (B - A).

Example::

    python -m medclf.compare runs/exp1/best_test runs/exp2/best_test --out compare_exp1_vs_exp2
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from medclf.cli import lazy, run_settings_command
from medclf.config import CompareConfig, field_types

PROG = "python -m medclf.compare"
_WORKFLOW = lazy("medclf.workflows.compare", "compare")  # loaded after the flags are parsed


def positional_to_flags(argv: Sequence[str]) -> list[str]:
    """``A B [flags]`` (or positionals between flags) -> ``--a A --b B [flags]``.

    A token is a flag's value when it follows a flag that takes one (any but the boolean ones); the
    other tokens not starting with ``-`` fill ``--a`` and then ``--b``, unless those are given as flags.
    """
    types = field_types(CompareConfig)
    switches = {"-h", "--help"} | {
        f"--{p}{n.replace('_', '-')}" for n in types if types[n] is bool for p in ("", "no-")
    }
    flags, positionals, takes_value = [], [], False
    for token in argv:
        if takes_value:
            flags.append(token)
            takes_value = False
        elif token.startswith("-") and token != "-":
            flags.append(token)
            takes_value = "=" not in token and not any(s.startswith(token) for s in switches)
        else:
            positionals.append(token)
    given = {t.split("=")[0] for t in flags if t.startswith("--")}
    free = [name for name in ("--a", "--b") if name not in given]
    prefix = [item for name, value in zip(free, positionals, strict=False) for item in (name, value)]
    return prefix + positionals[len(free) :] + flags


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 2 bad input, 1 environment failure such as a full disk)."""
    argv = positional_to_flags(sys.argv[1:] if argv is None else argv)
    return run_settings_command(CompareConfig, argv, PROG, __doc__.split("\n\n")[0], _WORKFLOW)


if __name__ == "__main__":
    raise SystemExit(main())
