"""An OS lock on a run folder, so that two medclf processes never write into the same run.

The lock is ``fcntl.flock`` on ``.medclf.lock`` in the folder, which holds the PID, host and start time of
the process that has it. The operating system releases it when that process ends, however it ends, so a
killed run never leaves a stale lock; the file itself stays (removing it would race with a process that
has just opened it). On platforms without ``fcntl`` (Windows) folders are not locked.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from medclf.errors import RunLockedError, StorageError, describe_os_error

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = ".medclf.lock"
#: Files that show a folder holds a run (checkpoints or metrics).
RUN_MARKERS = ("last.pt", "best.pt", "metrics.csv")
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


@dataclass
class RunLock:
    """A held lock on a run folder (``fd`` is None where folders cannot be locked)."""

    path: Path
    fd: int | None = None

    def release(self) -> None:
        """Release the lock (closing the file releases it); a second call does nothing."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def acquire_run_lock(folder: str | os.PathLike) -> RunLock:
    """Lock ``folder`` (which must exist) for this process.

    Raises:
        RunLockedError: another process holds the lock; the message names it (PID, host, since when).
        StorageError: the lock file cannot be created or written.
    """
    path = Path(folder) / LOCK_NAME
    if fcntl is None:
        log.debug("no fcntl on this platform: %s is not locked against a second run", folder)
        return RunLock(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise StorageError(f"cannot create the lock file {path}: {describe_os_error(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno in _HELD:
            raise RunLockedError(
                f"run folder {folder} is in use by another medclf run ({holder}); wait for it to end, stop it, "
                "or choose another --out"
            ) from None
        # Some network file systems do not support flock: run, but say that the folder is not protected.
        log.warning("cannot lock %s (%s); a second run into it would not be stopped", folder, describe_os_error(e))
        return RunLock(path)
    lock = RunLock(path, fd)
    try:
        _write_holder(fd)
    except OSError as e:
        lock.release()
        raise StorageError(f"cannot write the lock file {path}: {describe_os_error(e)}") from None
    return lock


def _write_holder(fd: int) -> None:
    # Written in place, not atomically: the lock belongs to this open file, which a rename would replace.
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text + b"\n", 0)
    os.fsync(fd)


def _holder(fd: int) -> str:
    """``PID 123 on host h since 2025-01-01T10:00:00+00:00``, from the lock file of the holder."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"PID {int(info['pid'])} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):  # the holder is still writing it, or wrote another format
        return f"a process whose details are not yet in {LOCK_NAME}"
