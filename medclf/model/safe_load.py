"""Reading a ``.pt`` file without running code: ``torch.load(weights_only=True)`` behind a scan of its pickle
opcodes, so that any pickled Python object is refused (never executed) and a cut or foreign file is reported
as such."""

from __future__ import annotations

import errno
import pickle
import pickletools
import re
from pathlib import Path
from typing import Any

import torch

from medclf.errors import CheckpointError, describe_os_error

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since PyTorch 1.6
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of an old-style torch.save file (MAGIC_NUMBER)
_OBJECT_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})
_STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"})


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into a CheckpointError.

    A file holding pickled Python objects is refused (never executed); a truncated or foreign file is
    reported as such. ``what`` names the file in messages ("checkpoint", "pretrained weights").
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        _check_pickle_file(path, what)
        return torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        detail = _unpickling_detail(str(e))
        if "GLOBAL" in str(e):
            raise _refused(what, path, detail) from None
        raise _corrupt(what, path, detail) from None
    except OSError as e:
        if e.errno == errno.EINVAL:  # torch's zip reader on an archive cut short (its directory is missing)
            raise _corrupt(what, path, f"an incomplete zip archive: {describe_os_error(e)}") from None
        raise CheckpointError(f"cannot read {what} {path}: {describe_os_error(e)}") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... on a cut or foreign file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _corrupt(what, path, detail) from None


def _refused(what: str, path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"refused to load {what} {path}: it contains pickled Python objects, which could run code "
        f"({detail}). Only state_dicts and plain values are accepted; the file was not executed."
    )


def _corrupt(what: str, path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"cannot read {what} {path}: the file is truncated or corrupt ({detail})")


def _check_pickle_file(path: Path, what: str) -> None:
    """Refuse a file in pickle format that is not a complete old-style ``torch.save`` file.

    torch's zip format is left to ``torch.load``. An old-style torch file (its first pickle is torch's magic
    number) must hold its next three pickles whole; ``torch.load`` then refuses any object in them. Any other
    pickle (``pickle.dump``, any protocol) is refused without being loaded. Pickle opcodes are only read.
    """
    with open(path, "rb") as f:
        if f.read(4) == _ZIP_MAGIC:
            return
        f.seek(0)
        value, names, protocol, error = _scan_pickle(f)
        if error is None and value == _LEGACY_MAGIC:
            for _ in range(3):  # protocol version, system information, the saved object
                error = _scan_pickle(f)[3]
                if error is not None:
                    raise _corrupt(what, path, f"old-style torch file cut short: {error}")
            return
    # A cut pickle that names real globals is refused as such; text read as opcodes names no identifiers.
    if names and (error is None or all(_dotted(n.removeprefix("GLOBAL ")) for n in names)):
        raise _refused(what, path, f"a pickle file holding {', '.join(names[:3])}")
    if error is not None:
        raise _corrupt(what, path, error)
    raise _refused(what, path, f"a plain pickle file of protocol {protocol}, not a torch checkpoint")


def _scan_pickle(f: Any) -> tuple[Any, list[str], int, str | None]:
    """Read one pickle's opcodes from ``f`` without running them.

    Returns:
        The value when the pickle is a single number, the globals it names, its protocol, and an error
        text when it is cut short or not a pickle (else None).
    """
    names: list[str] = []
    strings: list[str] = []
    first, count, protocol = None, 0, 0
    try:
        for opcode, arg, _ in pickletools.genops(f):
            if opcode.name == "PROTO":
                protocol = int(arg)
            elif opcode.name in _STRING_OPCODES:
                strings.append(str(arg))
            elif opcode.name == "STACK_GLOBAL":
                names.append(f"GLOBAL {'.'.join(strings[-2:]) or '?'}")  # a memo fetch may hide the names
            elif opcode.name in _OBJECT_OPCODES:
                parts = str(arg).split(" ")  # GLOBAL and INST: "module name"; EXT*: a number
                names.append(f"GLOBAL {'.'.join(parts) if len(parts) == 2 else '?'}")
            if opcode.name not in ("PROTO", "FRAME", "STOP"):
                first, count = (arg if count == 0 else first), count + 1
    except (ValueError, EOFError, OverflowError, MemoryError) as e:  # genops raises ValueError on a cut file
        return None, names, protocol, str(e).strip() or type(e).__name__
    return (first if count == 1 else None), names, protocol, None


def _dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's long weights-only error (the blocked global or opcode)."""
    blocked = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if blocked:
        return f"GLOBAL {blocked.group(1)} is not allowed"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line.rstrip(".")
    return lines[-1] if lines else "unpickling error"
