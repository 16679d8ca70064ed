"""Exceptions that medclf raises for problems a user can fix.

Commands catch :class:`MedclfError` and print its message without a traceback, so every message must
name the file, row and column (or setting) at fault. The exit status is the error's ``exit_code``: 2 for
inputs and settings, 1 for the environment (:class:`StorageError`).
"""

from __future__ import annotations

import errno


class MedclfError(Exception):
    """Base class for errors caused by inputs or settings rather than by bugs."""

    #: Exit status of a command that stops on this error (2: bad input, as argparse uses).
    exit_code: int = 2


class ManifestError(MedclfError):
    """The CSV manifest cannot be used; ``problems`` lists every problem found."""

    def __init__(self, path: object, problems: list[str], limit: int = 50) -> None:
        self.path = str(path)
        self.problems = list(problems)
        shown = self.problems[:limit]
        more = len(self.problems) - len(shown)
        lines = [f"manifest {self.path}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more (see ManifestError.problems)")
        super().__init__("\n".join(lines))


class ConfigError(MedclfError):
    """A setting or a settings file is invalid."""


class CheckpointError(MedclfError):
    """A checkpoint is missing, unsafe, corrupt, or does not match the data."""


class ImageError(MedclfError):
    """One or more images cannot be read."""


class TrainingError(MedclfError):
    """Training cannot go on (non-finite loss, out of memory, ...)."""


class ComparisonError(MedclfError):
    """Two prediction tables cannot be compared (other images, no common labels, conflicting truth)."""


class ExportError(MedclfError):
    """An exported model does not reproduce medclf's probabilities, or a deployment file cannot be made."""


class StorageError(MedclfError):
    """A file or folder cannot be created or written (permissions, full disk, ...): the environment, not
    the inputs, is at fault, so commands exit with status 1."""

    exit_code = 1


class RunLockedError(ConfigError):
    """The run folder is in use by another medclf process."""


def describe_os_error(error: OSError) -> str:
    """The reason of an OSError without its paths, with the errno name: ``No space left on device (ENOSPC)``."""
    reason = error.strerror or str(error) or type(error).__name__
    name = errno.errorcode.get(error.errno) if isinstance(error.errno, int) else None
    return f"{reason} ({name})" if name else reason
