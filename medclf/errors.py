"""Exceptions that medclf raises for problems a user can fix.

Commands catch :class:`MedclfError` and print its message without a traceback, so every message must
name the file, row and column (or setting) at fault.
"""

from __future__ import annotations


class MedclfError(Exception):
    """Base class for errors caused by inputs or settings rather than by bugs."""


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
