"""The subgroup spec (``sex,view,age=0-40,40-60,60-``) and each manifest row's group under it. Pure
functions; no I/O.

:func:`parse_subgroups` turns the spec into :class:`SubgroupSpec` objects; :func:`assign_groups` names the
group of every row of a manifest frame. The metrics per group are in :mod:`medclf.metrics.subgroups`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medclf.errors import ConfigError

MISSING = "(missing)"
OUTSIDE = "(outside bins)"
EXAMPLE = "sex,view,age=0-40,40-60,60-"

Bin = tuple[float | None, float | None]

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^(?P<lo>{_NUMBER})?\s*-\s*(?P<hi>{_NUMBER})?$")


@dataclass(frozen=True)
class SubgroupSpec:
    """One way of grouping the images: a manifest column and, for a numeric column, its bins.

    Attributes:
        column: The manifest column (any: ``sex``, ``view``, ``source``, ...).
        bins: Half-open ``[low, high)`` ranges in ascending order; ``None`` is an open end (allowed only as
            the first bin's low and the last bin's high). Empty: every distinct value is its own group.
    """

    column: str
    bins: tuple[Bin, ...] = ()

    def bin_names(self) -> list[str]:
        """Group names of the bins, in order: ``age 0-40``, ``age 60+``, ``age <40``."""
        return [_bin_name(self.column, low, high) for low, high in self.bins]


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bin_name(column: str, low: float | None, high: float | None) -> str:
    if high is None:
        return f"{column} {_number_text(low)}+"
    if low is None:
        return f"{column} <{_number_text(high)}"
    return f"{column} {_number_text(low)}-{_number_text(high)}"


def parse_subgroups(spec: str) -> list[SubgroupSpec]:
    """Parse a comma-separated subgroup spec such as ``sex,view,age=0-40,40-60,60-``.

    A plain token names a column whose distinct values are the groups. ``column=lo-hi`` starts a binned
    numeric column; the range tokens after it (``lo-hi``, ``lo-`` for lo and above, ``-hi`` for below hi)
    are its further bins. Bins are half-open ``[lo, hi)`` and must ascend without overlapping.

    Raises:
        ConfigError: empty items, a bin without a ``column=``, malformed/overlapping/unordered bins, or a
            column named twice.
    """
    tokens = [token.strip() for token in str(spec).split(",")]
    if not any(tokens):
        raise ConfigError(f"subgroups spec is empty: give columns such as {EXAMPLE!r}")
    columns: list[tuple[str, list[Bin]]] = []
    for token in tokens:
        if not token:
            raise ConfigError(f"subgroups {spec!r}: empty item (two commas in a row, or a comma at an end)")
        if "=" in token:
            column, _, first = token.partition("=")
            if not column.strip() or "=" in first:
                raise ConfigError(f"subgroups {spec!r}: {token!r} is not 'column=lo-hi' (e.g. 'age=0-40,40-60,60-')")
            columns.append((column.strip(), [_parse_bin(first.strip(), column.strip(), spec)]))
        elif token[0] in "0123456789.+-":  # looks like a range, not a column name
            if not columns or not columns[-1][1]:
                raise ConfigError(f"subgroups {spec!r}: bin {token!r} follows no 'column=' (e.g. 'age=0-40,40-60')")
            columns[-1][1].append(_parse_bin(token, columns[-1][0], spec))
        else:
            columns.append((token, []))
    names = [column for column, _ in columns]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"subgroups {spec!r}: column(s) named more than once: {', '.join(repeated)}")
    return [SubgroupSpec(column, _check_bins(column, bins, spec)) for column, bins in columns]


def _parse_bin(text: str, column: str, spec: str) -> Bin:
    match = _RANGE.match(text)
    if match is None or (match["lo"] is None and match["hi"] is None):
        raise ConfigError(
            f"subgroups {spec!r}: {text!r} is not a bin of {column!r}; write 'lo-hi', 'lo-' (lo and above) "
            "or '-hi' (below hi)"
        )
    return tuple(None if match[key] is None else float(match[key]) for key in ("lo", "hi"))  # type: ignore[return-value]


def _check_bins(column: str, bins: list[Bin], spec: str) -> tuple[Bin, ...]:
    """Each bin non-empty, open ends only at the outside, bins ascending without overlap."""
    for i, (low, high) in enumerate(bins):
        name = _bin_name(column, low, high)
        if low is not None and high is not None and not low < high:
            raise ConfigError(f"subgroups {spec!r}: bin {name!r} is empty (its low must be below its high)")
        if low is None and i > 0:
            raise ConfigError(f"subgroups {spec!r}: only the first bin of {column!r} may be open below")
        if high is None and i < len(bins) - 1:
            raise ConfigError(f"subgroups {spec!r}: only the last bin of {column!r} may be open above")
        if i > 0 and bins[i - 1][1] > low:
            raise ConfigError(
                f"subgroups {spec!r}: bins of {column!r} overlap or are out of order "
                f"({_bin_name(column, *bins[i - 1])!r} then {name!r}); list them ascending, e.g. 0-40,40-60,60-"
            )
    return tuple(bins)


def assign_groups(frame: pd.DataFrame, spec: SubgroupSpec) -> pd.Series:
    """Each row's group name under ``spec``, as a categorical Series with the groups in display order.

    Text columns: the value as text (``61.0`` read as a float becomes ``61``), blank/NaN -> ``(missing)``;
    groups sorted (numbers numerically), ``(missing)`` last. Binned columns: ``age 40-60``-style names in
    bin order (empty bins kept, so they are reported), then ``(outside bins)`` and ``(missing)`` when any
    row falls there.

    Raises:
        ConfigError: the column is absent, or a binned column holds a non-numeric value.
    """
    if spec.column not in frame.columns:
        available = ", ".join(str(c) for c in frame.columns)
        raise ConfigError(f"subgroup column {spec.column!r} is not in the manifest; its columns are: {available}")
    values = frame[spec.column]
    if not spec.bins:
        text = [group_text(v) for v in values]
        return pd.Series(pd.Categorical(text, categories=group_order(text)), index=frame.index, name=spec.column)
    numbers = _numeric(frame, spec.column)
    names = np.full(len(numbers), OUTSIDE, dtype=object)
    for name, (low, high) in zip(spec.bin_names(), spec.bins, strict=True):
        inside = np.ones(len(numbers), dtype=bool)
        if low is not None:
            inside &= numbers >= low
        if high is not None:
            inside &= numbers < high
        names[inside] = name
    names[np.isnan(numbers)] = MISSING
    extra = [name for name in (OUTSIDE, MISSING) if (names == name).any()]
    categories = spec.bin_names() + extra
    return pd.Series(pd.Categorical(names, categories=categories), index=frame.index, name=spec.column)


def group_text(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip() or MISSING


def group_order(names: Sequence[str]) -> list[str]:
    """Distinct names, numbers numerically before text alphabetically, ``(missing)`` last."""

    def key(name: str) -> tuple[int, float, str]:
        try:
            return 0, float(name), name
        except ValueError:
            return 1, 0.0, name

    present = sorted(set(names) - {MISSING}, key=key)
    return present + ([MISSING] if MISSING in set(names) else [])


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64, blank -> NaN; a ConfigError naming a row when some value is not a number."""
    values = frame[column]
    text = values.map(lambda v: "" if group_text(v) == MISSING else str(v).strip())
    numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(numbers) & (text != "").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f"CSV row {frame['csv_row'].iloc[i]}" if "csv_row" in frame.columns else f"row {frame.index[i]!r}"
        raise ConfigError(
            f"subgroup column {column!r} has bins but {int(bad.sum())} non-numeric value(s), e.g. "
            f"{values.iloc[i]!r} at {where}; name it without '=' to group by its values"
        )
    return numbers
