"""Provenance: what produced a result (versions, date, command, git commit, device, file hashes), written
into ``config.json``, checkpoints, ``metrics.json`` and ``report.html`` so that a number can be traced back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str | None:
    """Hex SHA-256 of a file's bytes; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``folder`` (default: medclf's source), ``+dirty`` when it has
    uncommitted changes; None outside a checkout or without git."""
    where = Path(folder) if folder else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def device_description(device: Any = None) -> str:
    """``cuda: NVIDIA H200 (x 1)`` or ``cpu: <processor> (N cores)``."""
    import torch

    kind = getattr(device, "type", str(device) if device is not None else "")
    if (kind == "cuda" or not kind) and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()} (x {torch.cuda.device_count()})"
    return f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def provenance(
    manifests: Iterable[str | os.PathLike] = (), checkpoint: str | os.PathLike | None = None, device: Any = None
) -> dict[str, Any]:
    """Versions, date, command line, git commit, host, device and SHA-256 of the inputs.

    Args:
        manifests: The manifest CSV(s) read.
        checkpoint: The checkpoint read (validate, predict), if any.
        device: The torch device used.
    """
    import monai
    import numpy
    import torch

    from medclf import __version__

    out: dict[str, Any] = {
        "medclf": __version__,
        "python": platform.python_version(),
        # str(): torch's version is a str subclass, which a weights-only checkpoint would refuse to load
        "torch": str(torch.__version__),
        "monai": str(monai.__version__),
        "numpy": str(numpy.__version__),
        "cuda": str(torch.version.cuda) if torch.version.cuda else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
        "working_directory": os.getcwd(),
        "git_commit": git_commit(),
        "host": platform.node(),
        "platform": platform.platform(),
        "device": device_description(device),
        "manifests_sha256": {str(Path(p).resolve()): sha256_file(p) for p in manifests},
    }
    if checkpoint is not None:
        out["checkpoint_sha256"] = {str(Path(checkpoint).resolve()): sha256_file(checkpoint)}
    return out


def changed_manifests(trained: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """Manifests read now that were also read in training but whose contents differ since."""
    before = (trained or {}).get("manifests_sha256") or {}
    return [
        path for path, digest in now.get("manifests_sha256", {}).items() if path in before and before[path] != digest
    ]
