"""Why an image could not be read, in plain words ("truncated or damaged PNG file") followed by the
decoder's own message, for the skipped-image warnings and errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".dcm": "DICOM", ".nii": "NIfTI", ".gz": "NIfTI",
            ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}  # fmt: skip
_TRUNCATED = ("unpack_from requires a buffer", "image file is truncated", "broken data stream", "truncated",
              "unexpected end", "end of file", "eof")  # fmt: skip


def plain_error(path: str, error: BaseException) -> str:
    """Why an image could not be read, in plain words first, then the decoder's own message.

    e.g. ``truncated or damaged PNG file (struct.error: unpack_from requires a buffer of ...)``.
    """
    raw = root_cause(error)
    kind = _FORMATS.get(Path(path).suffix.lower(), "image")
    lowered = raw.lower()
    errno_value = getattr(_innermost(error), "errno", None)
    if errno_value in (errno.ENOENT, errno.ENOTDIR):
        plain = "file not found"
    elif errno_value in (errno.EACCES, errno.EPERM):
        plain = "permission denied: the file exists but cannot be read"
    elif errno_value == errno.ELOOP:
        plain = "symbolic link loop"
    elif any(mark in lowered for mark in _TRUNCATED) or isinstance(_innermost(error), EOFError):
        plain = f"truncated or damaged {kind} file"
    elif "cannot identify image file" in lowered or "invaliddicomerror" in lowered:
        plain = "empty file" if _size(path) == 0 else f"not a readable {kind} file (unknown format or damaged header)"
    else:
        return raw
    return f"{plain} ({raw})"


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def root_cause(error: BaseException) -> str:
    """The innermost cause of an exception chain, as ``Type: message`` (MONAI wraps errors twice)."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    kind = type(error).__name__
    if kind.islower():  # e.g. struct.error from a truncated file
        kind = f"{type(error).__module__}.{kind}"
    return f"{kind}: {text[0] if text else ''}".rstrip(": ")
