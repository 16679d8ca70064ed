"""Reading, layering and saving the settings dataclasses of :mod:`medclf.config`: YAML/JSON settings
files, command-line layers over them, and plain-value copies for ``config.json`` and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from medclf.config.recipes import with_recipe
from medclf.errors import ConfigError

T = TypeVar("T")

#: Keys a run's config.json holds beside the settings (what produced the run); ignored when read back.
RECORD_KEYS = frozenset({"provenance", "model_selection"})


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type of each field of a settings dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def read_settings_file(path: str | Path, cls: type) -> dict[str, Any]:
    """Read a YAML or JSON settings file and check its keys against ``cls``.

    Keys may use dashes or underscores. Raises ConfigError naming the file and the unknown keys.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read settings file {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # json/yaml raise many types; all mean the same to the user
        raise ConfigError(f"cannot parse settings file {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a mapping of setting names to values")
    data = {str(k).replace("-", "_"): v for k, v in data.items() if k not in RECORD_KEYS}
    known = set(field_types(cls))
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"settings file {path}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}")
    return data


def make_settings(cls: type[T], *layers: dict[str, Any]) -> T:
    """Build settings from dictionaries, later layers overriding earlier ones.

    Unknown keys in a layer (for example from a checkpoint written by another version) are ignored.
    """
    types = field_types(cls)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: _coerce(k, v, types[k]) for k, v in layer.items() if k in types})
    if "recipe" in types:  # the recipe's settings (already typed) lie under every value given
        merged = with_recipe(merged)
    return cls(**merged)


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Convert a value read from a file to the field's type, or say which setting is wrong."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if isinstance(value, dict | list):
                raise ValueError
            return "" if value is None else str(value)
        if typing.get_origin(kind) is list:
            return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None
    return value


def load_settings(cls: type[T], path: str | Path) -> T:
    """Settings of type ``cls`` from a YAML/JSON file (the format of a run's ``config.json``)."""
    return make_settings(cls, read_settings_file(path, cls))


def settings_dict(settings: Any) -> dict[str, Any]:
    """Plain-value copy of settings, for JSON files and checkpoints."""
    return dataclasses.asdict(settings)
