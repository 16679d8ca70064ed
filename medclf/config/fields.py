"""What every settings dataclass is made of: fields with help, choices and bounds, and their checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any

from medclf.errors import ConfigError


def opt(
    default: Any, help: str, choices: tuple | None = None, required: bool = False, bounds: str = "", const: Any = None
) -> Any:
    """A settings field; ``bounds`` is its allowed range, e.g. ``"> 0"``, ``">= 2"``, ``"(0, 1)"``, ``"[0, 1]"``;
    ``const`` is the value of the flag given without one (``--mlflow`` alone)."""
    meta = {"help": help, "choices": choices, "required": required, "bounds": bounds, "const": const}
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_fields(settings: Any) -> None:
    """Choices and numeric ranges of every field, in one place; the message names the flag and file key."""
    for f in dataclasses.fields(settings):
        value, flag = getattr(settings, f.name), f"--{f.name.replace('_', '-')} ({f.name})"
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number; got {value}")
        bounds = f.metadata.get("bounds")
        if bounds and not _within(value, bounds):
            why = " (batch norm needs at least two images per batch)" if f.name == "batch_size" else ""
            raise ConfigError(f"{flag} must be {_bounds_text(bounds)}{why}; got {value}")


def _within(value: float, bounds: str) -> bool:
    if bounds.startswith("0 or "):
        return value == 0 or _within(value, bounds[5:])
    if bounds[0] in "([":
        low, high = (float(v) for v in bounds[1:-1].split(","))
        above = value > low if bounds[0] == "(" else value >= low
        below = value < high if bounds[-1] == ")" else value <= high
        return above and below
    op, limit = bounds.split()
    return value > float(limit) if op == ">" else value >= float(limit)


def _bounds_text(bounds: str) -> str:
    return f"in {bounds}" if bounds[0] in "([" else bounds


def parse_label_map(text: str) -> dict[str, str]:
    """``old=new,old2=new2`` -> ``{"old": "new", ...}``.

    Raises:
        ConfigError: for an entry without ``=`` or with an empty name.
    """
    mapping = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        old, sep, new = (part.strip() for part in entry.partition("="))
        if not sep or not old or not new:
            raise ConfigError(f"label_map entry {entry!r} is not old=new")
        mapping[old] = new
    return mapping


def as_paths(values: str | list[str]) -> list[str]:
    """One path or several as a list; paths are not split at commas (a file name may hold one)."""
    values = [values] if isinstance(values, str) else list(values)
    return [str(v) for v in values if str(v).strip()]


def split_names(values: list[str]) -> list[str]:
    names = [v.strip() for value in values for v in str(value).split(",")]
    return [n for n in names if n]
