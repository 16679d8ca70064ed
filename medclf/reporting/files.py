"""Crash-safe writers for every file medclf produces (except checkpoints): JSON, CSV, text, bytes,
figures. Each goes through :func:`atomic_write`, so a reader sees the old file or the new one, and a
failed write (full disk, no permission) is a :class:`~medclf.errors.StorageError` naming the file.

Text cells of CSV files are neutralised against spreadsheet formula injection (:func:`neutralise_cell`);
medclf's own readers undo it with :func:`restore_cell`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from medclf.errors import ConfigError, StorageError, describe_os_error

# A temporary of temporary_name(): its writer's PID, a tag of its host, an optional random tag.
_TEMPORARY = re.compile(r"\..+\.medclf-(?:tmp|old)-(\d+)-([0-9a-f]{4})(?:-[0-9a-f]+)?")
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFF:04x}"
# OWASP "CSV injection": a spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number ("-1", "+0.5", "-2e-3") is shown as a number, never run: left as it is.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is untouched. The temporary file is
    created with mode 0o666 so that the process umask applies, as for a plain ``open()``; its name
    (:func:`temporary_name`) carries this process's PID, so the next write into the folder removes it
    if this process is killed first (:func:`remove_stale_temporaries`).

    Raises:
        StorageError: the folder or the file cannot be created or written (e.g. the disk is full); the
            message names the file and says that the previous one, if any, is kept.
        ConfigError: a file stands where the folder of ``path`` is expected.
    """
    path = Path(path)
    make_folder(path.parent, what=f"the folder of {path.name}")
    remove_stale_temporaries(path.parent)
    tmp = path.parent / temporary_name(path.name, secrets.token_hex(6))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            raise _write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def temporary_name(name: str, tag: str = "", kind: str = "tmp") -> str:
    """The hidden name of a temporary beside ``name``: ``.NAME.medclf-tmp-PID-HOST[-TAG]``.

    The writer's PID and a tag of its host let :func:`remove_stale_temporaries` tell a dead writer's
    temporary from a live one's.
    """
    return f".{name}.medclf-{kind}-{os.getpid()}-{_HOST}" + (f"-{tag}" if tag else "")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (:func:`temporary_name`) in ``folder`` left by medclf processes of this host
    that no longer run (ended by SIGKILL or a power loss); returns what was removed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match.group(2) != _HOST or _running(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: a process of another user has this PID
        return True
    return True


def remove_created(created: Path | None) -> None:
    """Remove the folder that :func:`make_folder` created (None: it existed before; nothing is removed)."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)


def _write_error(path: Path, error: OSError) -> StorageError:
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
    return StorageError(f"cannot write {path}: {describe_os_error(error)}; {kept}")


def make_folder(folder: str | os.PathLike, what: str = "the folder") -> Path | None:
    """Create ``folder`` and its missing parents.

    Returns:
        The topmost folder this call created (to remove after a failed start), or None if it existed.

    Raises:
        ConfigError: a file stands where a folder is expected (``folder`` itself or a parent).
        StorageError: the folder cannot be created (no permission, read-only or full disk, ...).
    """
    folder = Path(folder)
    if folder.is_dir():
        return None
    if folder.exists() or folder.is_symlink():
        raise ConfigError(f"{what} {folder} is a file, not a folder; choose a folder (the file is left unchanged)")
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), folder)
        raise ConfigError(f"cannot create {what} {folder}: {blocker} is a file, not a folder") from None
    except OSError as e:
        raise StorageError(f"cannot create {what} {folder}: {describe_os_error(e)}; nothing was written") from None
    return top


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any) -> None:
    """Write strict JSON (NaN/inf become null) atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(_plain(data), f, indent=2, allow_nan=False)
        f.write("\n")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    torch = sys.modules.get("torch")  # no tensor exists unless torch is loaded; the CSV readers do not need it
    if isinstance(value, np.ndarray) or (torch is not None and isinstance(value, torch.Tensor)):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Write dict rows as CSV atomically; floats keep full precision, None is written empty, and text
    cells that a spreadsheet would run as a formula get a leading ``'`` (:func:`neutralise_cell`)."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else _cell(row.get(c)) for c in columns])


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return neutralise_cell(value)


def neutralise_cell(value: Any) -> Any:
    """A text cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return, prefixed with ``'``.

    This is OWASP's advice against CSV injection: a spreadsheet shows such a cell as text instead of
    running it. Numbers, and text that is a plain number (``-1``), are returned unchanged. Text that
    already starts with ``'`` before such a character gets one more, so that :func:`restore_cell` gives
    back exactly the original.
    """
    if isinstance(value, str) and value.lstrip("'").startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def restore_cell(text: str) -> str:
    """The cell text before :func:`neutralise_cell` (for medclf's own readers of its CSV files)."""
    if text.startswith("'") and text.lstrip("'").startswith(_FORMULA_START):
        return text[1:]
    return text


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a binary file (e.g. a rendered PNG) atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file (e.g. report.html) atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def save_figure(path: str | Path, figure: Any, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return path
