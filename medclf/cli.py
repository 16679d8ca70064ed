"""Shared plumbing of the ``python -m medclf.X`` commands: flags from settings, logging, error exits."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import re
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from medclf import __version__
from medclf.config import HELP_GROUPS, field_types, make_settings, read_settings_file
from medclf.engine.signals import Interrupted, raise_on_signals
from medclf.errors import MedclfError, describe_os_error
from medclf.model.registry import model_names

T = TypeVar("T")
log = logging.getLogger("medclf")


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per field of the settings dataclass ``cls``, grouped as in
    docs/usage.md (``HELP_GROUPS``), plus ``--version``.

    Defaults are suppressed so that the caller can tell given flags from defaults and layer them over a
    settings file.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=_plain(description), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"medclf {__version__}")
    types = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    groups = HELP_GROUPS.get(cls.__name__, [])
    listed = {name for _, names in groups for name in names}
    for title, names in [*groups, ("options" if not groups else "other", [n for n in fields if n not in listed])]:
        if names:
            group = parser.add_argument_group(title)
            for name in names:
                group.add_argument("--" + name.replace("_", "-"), **_flag_options(fields[name], types[name]))
    return parser


def _flag_options(f: dataclasses.Field, kind: Any) -> dict[str, Any]:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    help_text = f.metadata.get("help", "")
    if f.metadata.get("required"):
        help_text += " (required)"
    elif default not in ("", None, []):
        shown = ",".join(default) if isinstance(default, list) else default
        help_text += f" (default: {shown})"
    # argparse %-formats help strings
    kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%"), "default": argparse.SUPPRESS, "dest": f.name}
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) is list:
        # extend: --csv a.csv --csv b.csv and --csv a.csv b.csv both give both
        kwargs.update(nargs="+", action="extend", metavar="PATH" if f.name == "csv" else "NAME")
    else:
        kwargs["type"] = kind
        if f.metadata.get("const") is not None:  # the value is optional: --mlflow or --mlflow URI
            kwargs.update(nargs="?", const=f.metadata["const"])
        # Model names come from the registry, which sits above the settings (and loads no torch).
        choices = f.metadata.get("choices") or (model_names() if f.name == "model" else None)
        if choices:
            kwargs["choices"] = choices
            if f.name == "split":
                kwargs["type"] = str.upper
    return kwargs


def _plain(text: str) -> str:
    """A docstring as plain text for ``--help``: no reStructuredText literals or ``::``."""
    return re.sub(r"``([^`]*)``", r"\1", text).replace("::", ":").strip()


def parse_flags(cls: type, argv: Sequence[str] | None, prog: str, description: str) -> dict[str, Any]:
    """Values given on the command line, over those of ``--config FILE`` if given."""
    parser = build_parser(cls, prog, description)
    given = vars(parser.parse_args(argv))
    layered: dict[str, Any] = {}
    if given.get("config"):
        try:
            layered.update(read_settings_file(given["config"], cls))
        except MedclfError as e:
            parser.error(str(e))
    layered.update(given)
    return layered


def settings_from_flags(cls: type[T], layers: Sequence[dict[str, Any]], prog: str) -> T:
    """Build settings from layers and check that every required field is set.

    Errors exit like argparse does (status 2, a one-line message).
    """
    try:
        settings = make_settings(cls, *layers)
    except MedclfError as e:
        _usage_error(prog, str(e))
    missing = [
        "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(cls)
        if f.metadata.get("required") and not getattr(settings, f.name)
    ]
    if missing:
        _usage_error(prog, f"the following arguments are required: {', '.join(missing)}")
    return settings


def _usage_error(prog: str, message: str) -> typing.NoReturn:
    sys.stderr.write(f"usage: {prog} --help\n{prog}: error: {message}\n")
    raise SystemExit(2)


class _TqdmHandler(logging.Handler):
    """Writes log lines through tqdm so that they do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # logging must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Plain messages on stdout for the ``medclf`` loggers, and quieter decoders.

    Called by the commands only: a library import leaves the process's logging and warnings alone.
    """
    # Harmless for 2-D radiographs, but printed once per image or worker; keep command output readable.
    warnings.filterwarnings("ignore", message=".*ImageOrientationPatient.*")
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    # MONAI logs a warning each time a pydicom reader is made on a machine without the GPU codec.
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    logger = logging.getLogger("medclf")
    for handler in list(logger.handlers):
        if isinstance(handler, _TqdmHandler):
            logger.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def run_command(body: Callable[[], int]) -> int:
    """Run a command body; a :class:`MedclfError` becomes one message and its ``exit_code`` (2 for bad input,
    1 for the environment, e.g. a full disk), as does an OSError that no check turned into one. SIGINT and
    SIGTERM become one message too, after the half-written files are removed (status 130 / 143)."""
    try:
        with raise_on_signals():
            return body()
    except MedclfError as e:
        log.error("error: %s", e)
        return e.exit_code
    except OSError as e:
        log.debug("traceback of the error below", exc_info=True)
        log.error("error: %s", _os_error_message(e))
        # A file where a folder is expected is a bad argument; anything else the environment's doing.
        return 2 if isinstance(e, FileExistsError | NotADirectoryError) else 1
    except Interrupted as e:
        log.error("error: %s", e)
        return e.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def _os_error_message(error: OSError) -> str:
    """``PATH: REASON (ERRNO)``; for a file where a folder is expected, which file that is."""
    where = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None) or "a file"
    if isinstance(error, FileExistsError | NotADirectoryError) and error.filename is not None:
        path = Path(os.fsdecode(error.filename))
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"cannot create {path}: {blocker} is a file, not a folder (it is left unchanged)"
    return f"{where}: {describe_os_error(error)}"


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` and calls its ``name`` only when called, so that a command's
    ``--help`` and ``--version`` load neither torch nor MONAI."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return call


def run_settings_command(
    cls: type[T], argv: Sequence[str] | None, prog: str, description: str, body: Callable[[T], object]
) -> int:
    """A whole command: logging, flags (over ``--config``) into ``cls``, then ``body(settings)``.

    Returns the exit status: 0 when ``body`` returns, 2 for bad input, 1 when a file cannot be written (see
    :func:`run_command`).
    """
    setup_logging()
    given = parse_flags(cls, argv, prog, description)

    def run() -> int:
        body(settings_from_flags(cls, [given], prog))
        return 0

    return run_command(run)
